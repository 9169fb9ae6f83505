"""The calls the OPEVA group's clients make (energaize_ui, ai-manager-ui, the Algorithms scripts), with the old
backend's shapes, over a real HTTP server. The data folder stands in for the controller (see conftest.py)."""

from __future__ import annotations

import json
import os

import yaml

from controller.spec import load_spec_file

CONFIG = """metadata:
  experiment_name: citylearn-ppo
  run_name: seed-42
simulator:
  dataset_path: ./datasets/citylearn_challenge_2022/schema.json
algorithm: {name: PPO}
"""


def make_config(folder, name="ppo.yaml", content=CONFIG):
    path = folder.root / "configs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def spec_of(api, job_id):
    loaded = load_spec_file(api.folder.specs / f"{job_id}.yaml", api.folder.specs)
    assert loaded.error is None, loaded.error
    return loaded.manifest


# ---- experiment configs ------------------------------------------------------------------------------------------
def test_configs_are_listed_read_created_updated_and_deleted(api):
    assert api.client.get("/experiment-configs").json() == []
    make_config(api.folder)
    (api.folder.root / "configs" / "notes.txt").write_text("x")
    assert api.client.get("/experiment-configs").json() == ["ppo.yaml"]
    r = api.client.get("/experiment-config/ppo.yaml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/yaml") and r.text == CONFIG
    r = api.client.post("/experiment-config/create", json={"file_name": "a2c.yml", "yaml_content": "x: 1\n"})
    assert r.json() == {"message": "Config saved", "file": "a2c.yml"}
    r = api.client.post("/experiment-config/create", json={"file_name": "a2c.yml", "yaml_content": "x: 2\n"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert api.client.put("/experiment-config/a2c.yml", json={"yaml_content": "x: 3\n"}).status_code == 200
    assert (api.folder.root / "configs" / "a2c.yml").read_text() == "x: 3\n"
    assert api.client.put("/experiment-config/nope.yaml", json={"yaml_content": "x: 3\n"}).status_code == 404
    assert api.client.delete("/experiment-config/a2c.yml").status_code == 200
    assert api.client.get("/experiment-configs").json() == ["ppo.yaml"]
    assert api.client.get("/experiment-config/a2c.yml").status_code == 404


def test_config_names_and_contents_that_are_refused(api, tmp_path):
    make_config(api.folder)
    (tmp_path / "secret.yaml").write_text("password: x\n")
    (api.folder.root / "configs" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    (api.folder.root / "configs" / "dirlink").symlink_to(tmp_path)
    assert api.client.get("/experiment-config/link.yaml").status_code == 422
    assert api.client.get("/experiment-config/dirlink/secret.yaml").status_code == 422
    assert "link.yaml" not in api.client.get("/experiment-configs").json()
    for bad in ("../x.yaml", ".hidden.yaml", "x.txt"):
        r = api.client.post("/experiment-config/create", json={"file_name": bad, "yaml_content": "a: 1\n"})
        assert r.status_code == 422, (bad, r.text)
    cases = [
        ("not: [valid", "not valid YAML"),
        ("- a list\n", "mapping"),
        ("a: &x [1, 2]\nb: *x\n", "aliases"),
    ]
    for content, words in cases:
        r = api.client.post("/experiment-config/create", json={"file_name": "bad.yaml", "yaml_content": content})
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    big = "k: " + "x" * 300_000 + "\n"
    r = api.client.post("/experiment-config/create", json={"file_name": "big.yaml", "yaml_content": big})
    assert r.status_code == 413
    assert (tmp_path / "secret.yaml").read_text() == "password: x\n"
    assert sorted(os.listdir(api.folder.root / "configs")) == ["dirlink", "link.yaml", "ppo.yaml"]


# ---- submissions as the clients send them --------------------------------------------------------------------------
def test_energaize_submission_with_a_bare_config_name(api):
    make_config(api.folder)
    body = {
        "config_path": "ppo.yaml",
        "job_name": "PPO seed 42",
        "submitted_by": "ana",
        "image_tag": "v1.2",
        "target_host": "",
    }
    r = api.client.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    job = out["job_id"]
    assert out["status"] == "queued" and out["job_name"] == "PPO seed 42"
    assert out["image"] == "calof/opeva_simulator:v1.2" and out["image_tag"] == "v1.2"
    m = spec_of(api, job)
    assert m.spec.image == "calof/opeva_simulator:v1.2" and m.spec.logCapture is False
    assert m.spec.args == ["--config", f"/data/jobs/{job}/config.resolved.yaml", "--job_id", job]
    assert m.spec.mlflow.experiment == "citylearn-ppo" and m.spec.mlflow.runName == "seed-42"
    assert m.metadata.annotations["opeva/submitted-by"] == "ana"
    assert "SUBMITTED_BY" not in m.spec.env and "JOB_NAME" not in m.spec.env
    resolved = yaml.safe_load((api.folder.root / "jobs" / job / "config.resolved.yaml").read_text())
    assert resolved["simulator"]["dataset_path"] == "/data/datasets/citylearn_challenge_2022/schema.json"
    # read-your-writes: job-info answers at once, with what the UIs show
    info = api.client.get(f"/job-info/{job}").json()
    assert info["job_name"] == "PPO seed 42" and info["submitted_by"] == "ana"
    assert info["config_path"] == "configs/ppo.yaml" and info["experiment_name"] == "citylearn-ppo"
    assert info["run_name"] == "seed-42" and info["image"] == "calof/opeva_simulator:v1.2"
    assert info["resolved_config_available"] is True and info["status"] == "queued"
    assert info["attempt_number"] == 0 and info["requeue_count"] == 0 and "queue_wait_seconds" in info
    text = api.client.get(f"/job-resolved-config/{job}")
    assert text.status_code == 200 and "/data/datasets/citylearn_challenge_2022" in text.text


def test_ai_manager_ui_submission_with_the_configs_prefix_and_no_dataset_rewrite(api):
    make_config(api.folder, "plain.yaml", "experiment: {name: legacy-exp, run_name: r1}\n")
    r = api.client.post("/run-simulation", json={"config_path": "configs/plain.yaml", "target_host": "local"})
    assert r.status_code == 200, r.text
    m = spec_of(api, r.json()["job_id"])
    assert m.spec.args[1] == "/data/configs/plain.yaml" and m.spec.configFile == "configs/plain.yaml"
    assert m.spec.mlflow.experiment == "legacy-exp"  # the legacy experiment.name
    info = api.client.get(f"/job-info/{r.json()['job_id']}").json()
    assert info["job_name"] == "legacy-exp-r1" and info["resolved_config_available"] is False


def test_scripts_submission_with_an_inline_config_and_save_as(api):
    config = yaml.safe_load(CONFIG)
    body = {
        "config": config,
        "save_as": "campaign-1.yaml",
        "job_name": "campaign 1",
        "submitted_by": "script",
        "image_tag": "latest",
        "deucalion_options": {"partition": "normal-x86"},
    }
    r = api.client.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    assert yaml.safe_load((api.folder.root / "configs" / "campaign-1.yaml").read_text()) == config
    info = api.client.get(f"/job-info/{r.json()['job_id']}").json()
    assert info["deucalion_options"] == {"partition": "normal-x86"} and info["config_path"] == "configs/campaign-1.yaml"
    again = api.client.post("/run-simulation", json={**body, "config": {"metadata": {"experiment_name": "other"}}})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert yaml.safe_load((api.folder.root / "configs" / "campaign-1.yaml").read_text()) == config
    replaced = api.client.post("/run-simulation", json={**body, "config": {"x": 1}, "overwrite": True})
    assert replaced.status_code == 200
    assert yaml.safe_load((api.folder.root / "configs" / "campaign-1.yaml").read_text()) == {"x": 1}


def test_bad_submissions_get_a_clear_4xx_and_write_nothing(api, tmp_path):
    make_config(api.folder)
    (tmp_path / "out.yaml").write_text("a: 1\n")
    (api.folder.root / "configs" / "escape.yaml").symlink_to(tmp_path / "out.yaml")
    cases = [
        ({"config_path": "../specs/x.yaml"}, 422, "'..'"),
        ({"config_path": "/etc/passwd"}, 422, "absolute"),
        ({"config_path": "escape.yaml"}, 422, "link"),
        ({"config_path": "missing.yaml"}, 422, "does not exist"),
        ({"config": {"a": 1}, "save_as": "../x.yaml"}, 422, "'..'"),
        ({"config": {"a": "x" * 300_000}, "save_as": "big.yaml"}, 413, "limited"),
        ({"config_path": "ppo.yaml", "target_host": "gpu-server-9"}, 400, "Unknown host"),
        ({"config_path": "ppo.yaml", "target_host": "deucalion"}, 422, "HPC"),
        ({"config_path": "ppo.yaml", "target_worker_profile": "gpu"}, 422, "GPUs"),
        ({"config_path": "ppo.yaml", "image_tag": "a/b:c"}, 422, "image_tag"),
        ({"config_path": "ppo.yaml", "config": {"a": 1}}, 422, "not both"),
        ({}, 422, "required"),
    ]
    for body, code, words in cases:
        r = api.client.post("/run-simulation", json=body)
        assert r.status_code == code and words in r.json()["detail"], (body, r.status_code, r.text)
    assert list(api.folder.specs.iterdir()) == []
    assert sorted(os.listdir(api.folder.root / "configs")) == ["escape.yaml", "ppo.yaml"]


def test_target_host_and_gpus_follow_the_controller_heartbeat(api):
    make_config(api.folder)
    hb = api.folder.store.state_dir / "heartbeat.json"
    api.folder.heartbeat()
    beat = json.loads(hb.read_text())
    beat.update(host="lab-vm", capacity={"capacity": {"cpus": 8, "gpus": ["0", "1"]}, "used": {}, "waiting": 0})
    hb.write_text(json.dumps(beat))
    hosts = api.client.get("/hosts").json()
    assert hosts["available_hosts"] == ["lab-vm"] and hosts["hosts"]["lab-vm"]["online"] is True
    assert hosts["hosts"]["lab-vm"]["info"]["gpu_count"] == 2
    r = api.client.post("/run-simulation", json={"config_path": "ppo.yaml", "target_host": "lab-vm"})
    assert r.status_code == 200 and r.json()["host"] == "lab-vm"
    assert spec_of(api, r.json()["job_id"]).spec.resources.gpus == 2  # all of them, as the old workers did
    cpu = api.client.post("/run-simulation", json={"config_path": "ppo.yaml", "target_worker_profile": "cpu"})
    assert spec_of(api, cpu.json()["job_id"]).spec.resources.gpus is None


# ---- reads: list, queue, logs, results, simulation data ---------------------------------------------------------
def test_list_items_carry_the_fields_the_uis_show(api):
    make_config(api.folder)
    job = api.client.post("/run-simulation", json={"config_path": "ppo.yaml", "job_name": "J", "submitted_by": "u"})
    job_id = job.json()["job_id"]
    st = api.folder.status(job_id, phase="Pending", queuePosition=1)
    api.folder.track([st])
    items = api.client.get("/jobs").json()
    (item,) = items
    assert item["job_id"] == job_id and item["status"] == "queued"
    assert item["job_info"]["job_name"] == "J" and item["job_info"]["submitted_by"] == "u"
    assert item["job_meta"]["submitted_by"] == "u" and item["requeue_count"] == 0
    assert "total_duration_seconds" in item and "attempt_number" in item
    queue = api.client.get("/queue").json()
    assert [q["job_id"] for q in queue] == [job_id] and queue[0]["submitted_by"] == "u"


def test_logs_chunk_serves_container_output_then_the_jobs_own_log(api):
    api.folder.status("j1")
    assert api.client.get("/logs-chunk/j1", params={"tail_lines": 300}).json()["available"] is False
    api.folder.job_file("j1", "logs/j1.stdout.log", "boot 1\nboot 2\n")
    first = api.client.get("/logs-chunk/j1", params={"tail_lines": 300}).json()
    assert first["text"] == "boot 1\nboot 2\n" and first["available"] is True and first["next_offset"] == 14
    api.folder.job_file("j1", "logs/j1.log", "epoch 1\nepoch 2\n")
    nxt = api.client.get("/logs-chunk/j1", params={"offset": first["next_offset"], "tail_lines": 300}).json()
    assert nxt["text"] == "epoch 1\nepoch 2\n" and nxt["next_offset"] == 30 and nxt["truncated"] is False
    tail = api.client.get("/logs-chunk/j1", params={"tail_lines": 1}).json()
    assert tail["text"] == "epoch 2\n" and tail["truncated"] is True
    assert api.client.get("/logs/j1").text == "boot 1\nboot 2\nepoch 1\nepoch 2\n"
    assert api.client.get("/file-logs/j1").text == "epoch 1\nepoch 2\n"
    assert api.client.get("/logs-chunk/nope").status_code == 404


def test_result_and_simulation_data(api):
    api.folder.status("j1", phase="Succeeded")
    api.folder.job_file("j1", "results/result.json", json.dumps({"status": "completed"}))
    csv = "timestamp,value\n2022-01-01T00:00:00,1\n2022-01-02T00:00:00,2\n"
    api.folder.job_file("j1", "results/simulation_data/session-a/exported_kpis.csv", csv)
    result = api.client.get("/result/j1").json()
    assert result["status"] == "completed" and result["simulation_data_available"] is True
    assert result["simulation_data_session_default"] == "session-a"
    index = api.client.post("/simulation-data/index", json={"job_id": "j1", "session": "latest"}).json()
    assert index["files"] == ["exported_kpis.csv"] and index["available_days"] == ["2022-01-01", "2022-01-02"]
    r = api.client.post("/simulation-data/file", json={"job_id": "j1", "relative_path": "exported_kpis.csv"})
    assert r.status_code == 200 and r.text == csv and r.headers["content-type"].startswith("text/csv")
    for bad in ("../../../status.json", "/etc/passwd"):
        r = api.client.post("/simulation-data/file", json={"job_id": "j1", "relative_path": bad})
        assert r.status_code == 422, r.text
    os.symlink("/etc", api.folder.store.job_dir("j1") / "results" / "simulation_data" / "session-a" / "etc")
    r = api.client.post("/simulation-data/file", json={"job_id": "j1", "relative_path": "etc/passwd"})
    assert r.status_code in (404, 409)


# ---- delete and operations ---------------------------------------------------------------------------------------
def test_delete_stops_the_job_and_removes_it_from_every_listing(api):
    api.folder.spec("j1")
    st = api.folder.status("j1")
    api.folder.track([st])
    r = api.client.delete("/job/j1")
    assert r.status_code == 200 and r.json()["message"] == "Job j1 deleted successfully"
    assert not (api.folder.specs / "j1.yaml").exists()  # the controller stops it
    assert api.folder.store.is_deleted("j1")
    assert api.client.get("/jobs").json() == [] and api.client.get("/jobs").headers["X-Total-Count"] == "0"
    assert api.client.get("/status/j1").status_code == 404
    assert api.client.delete("/job/j1").status_code == 404
    assert api.folder.store.job_dir("j1").is_dir()  # files stay until the controller archives them
    api.folder.spec("j1")  # written again: a job again
    assert api.client.put("/jobs/j1", content=(api.folder.specs / "j1.yaml").read_bytes()).status_code == 200
    assert not api.folder.store.is_deleted("j1")


def test_ops_stop_cancel_fail_suspend_and_requeue_starts_a_new_run(api):
    for verb in ("stop", "cancel", "fail"):
        path = api.folder.spec(f"j-{verb}")
        api.folder.status(f"j-{verb}", phase="Running")
        r = api.client.post(f"/ops/jobs/j-{verb}/{verb}", json={"reason": "x"})
        assert r.status_code == 200 and "message" in r.json()
        assert yaml.safe_load(path.read_text())["spec"]["suspend"] is True
    path = api.folder.spec("j2")
    api.folder.status("j2", phase="Running")
    assert api.client.post("/ops/jobs/j2/requeue", json={}).status_code == 409
    assert api.client.post("/ops/jobs/j2/requeue", json={"force": True}).status_code == 200
    assert yaml.safe_load(path.read_text())["spec"]["runId"]
    api.folder.spec("q1")
    api.folder.status("q1", phase="Pending")
    api.folder.track([api.folder.store.read_status("q1"), api.folder.status("done", phase="Succeeded")])
    api.folder.spec("done")
    assert api.client.post("/ops/queue/cleanup", json={"force": False}).json() == {"removed": [], "count": 0}
    assert api.client.post("/ops/queue/cleanup", json={"force": True}).json()["removed"] == ["q1"]
    out = api.client.post("/ops/jobs/cleanup", json={"keep": []}).json()
    assert out["removed"] == ["done"] and api.folder.store.is_deleted("done")


def test_a_job_garbling_its_job_info_does_not_lose_the_controllers_keys(api):
    api.folder.status("j1")
    api.folder.store.write_job_info("j1", {"image": "busybox", "job_name": "human"})
    path = api.folder.store.job_dir("j1") / "job_info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "bundle_dir": "/data/jobs/j1/bundle"}))
    api.folder.store.write_job_info("j1", {"container_id": "c1"})
    info = api.client.get("/job-info/j1").json()
    assert info["bundle_dir"] == "/data/jobs/j1/bundle" and info["container_id"] == "c1" and info["image"] == "busybox"
    path.write_text("[not a mapping")
    api.folder.store.write_job_info("j1", {"phase": "Running"})
    info = api.client.get("/job-info/j1").json()
    assert info["image"] == "busybox" and info["phase"] == "Running" and info["job_name"] == "human"
