"""The simulator's container contract, through /run-simulation as each client sends it, against the real engine."""

from __future__ import annotations

import json
import time

import pytest
from e2e.harness import read_events, read_status, wait_for

from .conftest import CONFIG, hostname

pytestmark = pytest.mark.docker

TERMINAL = ("finished", "failed", "stopped")


def wait_status(client, job_id: str, timeout: float = 90) -> str:
    def done():
        status = client.get(f"/status/{job_id}").json()["status"]
        return status if status in TERMINAL else None

    return wait_for(done, timeout=timeout, interval=0.3, what=f"{job_id} to end")


def submit(client, body: dict) -> str:
    r = client.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    info = client.get(f"/job-info/{job_id}")
    assert info.status_code == 200, "job-info answers as soon as the submission returns"
    return job_id


def inline_config() -> dict:
    import yaml

    return yaml.safe_load(CONFIG)


PAYLOADS = {
    "energaize_ui": {
        "config_path": "ppo.yaml",
        "job_name": "PPO seed 42",
        "submitted_by": "ana",
        "image_tag": "latest",
        "target_host": "",
    },
    "ai_manager_ui": {"config_path": "configs/ppo.yaml", "target_host": "HOST"},
    "algorithms_scripts": {
        "config": "INLINE",
        "save_as": "campaign-1.yaml",
        "job_name": "campaign 1",
        "submitted_by": "script",
        "image_tag": "latest",
        "target_worker_profile": "cpu",
        "deucalion_options": {"partition": "normal-x86"},
    },
}


@pytest.mark.parametrize("client_name", sorted(PAYLOADS))
def test_the_simulator_runs_to_finished_for_each_clients_payload(stack, client_name):
    proc, client = stack
    body = dict(PAYLOADS[client_name])
    if body.get("target_host") == "HOST":
        wait_for(lambda: client.get("/hosts").json()["hosts"], what="heartbeat with the host name")
        body["target_host"] = client.get("/hosts").json()["available_hosts"][0]
        assert body["target_host"] == hostname()
    if body.get("config") == "INLINE":
        body["config"] = inline_config()
    job_id = submit(client, body)
    assert wait_status(client, job_id) == "finished", proc.output()[-3000:]

    progress = client.get(f"/progress/{job_id}").json()
    assert progress["progress_pct"] == 100.0 and progress["status"] == "completed"
    result = client.get(f"/result/{job_id}").json()
    assert result["status"] == "completed" and result["simulation_data_available"] is True
    log = client.get(f"/logs/{job_id}").text
    assert "simulator starting" in log, "container output before the own log is served"
    assert "dataset /data/datasets/demo/schema.json with 2 buildings" in log, "dataset path resolved"
    assert "job completed" in log
    chunk = client.get(f"/logs-chunk/{job_id}", params={"tail_lines": 300}).json()
    assert chunk["available"] and "job completed" in chunk["text"]
    info = wait_for(
        lambda: (i := client.get(f"/job-info/{job_id}").json())["phase"] == "Succeeded" and i, what="job_info phase"
    )
    assert info["bundle_dir"] == f"/data/jobs/{job_id}/bundle", "the job's own keys are kept"
    assert info["container_id"] and info["exit_code"] == 0, "the controller's keys are there too"
    assert info["job_name"] == body.get("job_name", "citylearn-ppo-seed-42")
    assert info["run_name"] == info["job_name"], "OPEVA_JOB_NAME is the human name"
    assert info["resolved_config_available"] is True
    files = client.post("/simulation-data/index", json={"job_id": job_id}).json()["files"]
    assert files == ["exported_kpis.csv"]
    data = proc.data
    assert (data / "mlflow" / "mlruns").is_dir(), "the shared folder is writable for /run-simulation jobs"
    assert (data / "jobs" / job_id / "bundle" / "artifact_manifest.json").is_file()
    reasons = [e["reason"] for e in read_events(data, job_id)]
    assert "PullFailed" in reasons, "':latest' is pulled first; with no registry the local image is used"


def test_a_crash_before_the_simulator_opens_its_log_is_visible(stack):
    proc, client = stack
    (proc.data / "configs" / "crash.yaml").write_text(CONFIG.replace("test: {", "test: {crash_before_log: true, "))
    job_id = submit(client, {"config_path": "crash.yaml"})
    assert wait_status(client, job_id) == "failed"
    assert "fatal: crashing before the log file is open" in client.get(f"/logs/{job_id}").text
    chunk = client.get(f"/logs-chunk/{job_id}", params={"tail_lines": 300}).json()
    assert "crashing before the log" in chunk["text"]


def test_a_job_cannot_rewrite_the_controllers_records(stack):
    proc, client = stack
    config = CONFIG.replace("test: {", "test: {tamper_records: true, ")
    (proc.data / "configs" / "tamper.yaml").write_text(config)
    job_id = submit(client, {"config_path": "tamper.yaml"})
    assert wait_status(client, job_id) == "finished"
    log = client.get(f"/file-logs/{job_id}").text
    assert "tamper events.jsonl: refused" in log, "the history is read-only inside the container"
    status = client.get(f"/jobs/{job_id}").json()["status"]
    assert status["phase"] == "Succeeded" and "garbage" not in status, "the controller's record is out of reach"
    copy = read_status(proc.data, job_id)  # jobs/ID/status.json: a copy the job could scribble on, rewritten
    assert copy is not None and copy["phase"] == "Succeeded"
    events = (proc.data / "jobs" / job_id / "events.jsonl").read_text()
    assert all(json.loads(line) for line in events.splitlines())


def test_delete_stops_the_job_and_archives_its_files(stack):
    proc, client = stack
    (proc.data / "configs" / "slow.yaml").write_text(CONFIG.replace("sleep: 0.1", "sleep: 30"))
    job_id = submit(client, {"config_path": "slow.yaml"})
    wait_for(lambda: client.get(f"/status/{job_id}").json()["status"] == "running", timeout=60, what="running")
    assert client.delete(f"/job/{job_id}").status_code == 200
    assert job_id not in [j["job_id"] for j in client.get("/jobs").json()]
    archive = proc.data / "archive" / "deleted"
    wait_for(lambda: any(p.name.startswith(job_id) for p in archive.glob("*.tar.gz")), timeout=60, what="archive")
    wait_for(lambda: not (proc.data / "jobs" / job_id).exists(), what="job folder moved")
    assert client.get(f"/status/{job_id}").status_code == 404
    time.sleep(0.5)
