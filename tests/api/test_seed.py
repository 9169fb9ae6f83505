"""The seed's endpoints keep their shapes: run-simulation, status, result, progress, logs, stop, jobs, job-info."""

from __future__ import annotations

import json

import yaml

from controller.spec import is_valid_name, load_spec_file


def make_config(folder, rel="configs/ppo.yaml", content="experiment: {name: citylearn, run_name: ppo-42}\n"):
    path = folder.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_run_simulation_writes_a_spec_like_the_seed_ran_containers(api):
    make_config(api.folder)
    r = api.client.post(
        "/run-simulation",
        json={
            "config_path": "configs/ppo.yaml",
            "job_name": "PPO Seed #42!",
            "image_tag": "v2",
            "param1": "a",
            "seed": 42,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    name = body["job_id"]
    assert is_valid_name(name) and name.startswith("ppo-seed-42-")
    assert body["status"] == "queued" and body["phase"] == "Pending" and body["spec_file"] == f"{name}.yaml"
    loaded = load_spec_file(api.folder.specs / f"{name}.yaml", api.folder.specs)
    assert loaded.error is None
    spec = loaded.manifest.spec
    assert spec.image == "calof/opeva_simulator:v2"
    assert spec.command is None  # the image's entrypoint, as the seed ran it
    assert spec.args == ["--config", "/data/configs/ppo.yaml", "--job_id", name]
    assert spec.env == {"PARAM1": "a", "SEED": "42"}
    assert spec.configFile == "configs/ppo.yaml" and spec.logCapture is False
    assert spec.mlflow.experiment == "citylearn" and spec.mlflow.runName == "ppo-42"
    assert spec.terminationGracePeriodSeconds == 10, "POST /stop gives the seed's 10 s grace"
    assert [r["name"] for r in api.client.get("/jobs").json()] == [name], "listed as soon as it is written"


def test_run_simulation_with_config_file_and_image(api):
    make_config(api.folder, "configs/a.yml", "x: 1\n")
    r = api.client.post("/run-simulation", json={"config_file": "a.yml", "image": "reg.local/sim:1"})
    assert r.status_code == 200
    name = r.json()["job_id"]
    doc = yaml.safe_load((api.folder.specs / f"{name}.yaml").read_text())
    assert doc["spec"]["image"] == "reg.local/sim:1" and doc["spec"]["args"][1] == "/data/configs/a.yml"
    assert name.startswith("sim-")


def test_run_simulation_twice_gives_two_jobs(api):
    make_config(api.folder)
    ids = {
        api.client.post("/run-simulation", json={"config_path": "configs/ppo.yaml", "job_name": "x"}).json()["job_id"]
        for _ in range(2)
    }
    assert len(ids) == 2


def test_run_simulation_bad_input_is_422_with_a_reason(api):
    make_config(api.folder)
    cases = [
        ({}, "required"),
        ({"config_path": "configs/missing.yaml"}, "does not exist"),
        ({"config_path": "../../etc/passwd"}, "without '..'"),
        ({"config_path": "/etc/passwd"}, "not an absolute path"),
        ({"config_file": "../x"}, "without '..'"),
        ({"config_path": "/data/configs/missing.yaml"}, "'missing.yaml' does not exist"),  # the seed's /data
        ({"config_path": "configs/ppo.yaml", "config_file": "ppo.yaml"}, "not both"),
        ({"config_path": "configs/ppo.yaml", "bad key": "v"}, "environment variable"),
        ({"config_path": "configs/ppo.yaml", "image": ""}, "image"),
        ({"config_path": 5}, "config_path"),
    ]
    for body, words in cases:
        r = api.client.post("/run-simulation", json=body)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
    assert list(api.folder.specs.iterdir()) == []


def test_run_simulation_config_symlink_out_of_the_folder_is_refused(api, tmp_path):
    (tmp_path / "outside.yaml").write_text("a: 1\n")
    (api.folder.root / "configs").mkdir()
    (api.folder.root / "configs" / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    r = api.client.post("/run-simulation", json={"config_path": "configs/link.yaml"})
    assert r.status_code == 422 and "link" in r.json()["detail"]


def test_status_uses_the_seed_words_beside_the_phase(api):
    for phase, word in [
        ("Pending", "queued"),
        ("Running", "running"),
        ("Succeeded", "finished"),
        ("Failed", "failed"),
        ("Stopped", "stopped"),
    ]:
        api.folder.status("j1", phase=phase, reason="Completed" if phase == "Succeeded" else None)
        body = api.client.get("/status/j1").json()
        assert body["job_id"] == "j1" and body["status"] == word and body["phase"] == phase


def test_status_of_a_spec_not_yet_picked_up_is_queued(api):
    api.folder.spec("j1")
    assert api.client.get("/status/j1").json()["status"] == "queued"
    assert api.client.get("/status/nope").status_code == 404


def test_result_and_progress_keep_the_seed_placeholders(api):
    api.folder.status("j1")
    pending = api.client.get("/result/j1").json()
    assert {k: pending[k] for k in ("status", "message")} == {"status": "pending", "message": "Result not ready yet."}
    assert pending["simulation_data_available"] is False and pending["kpi_source"] == "unknown"
    assert api.client.get("/progress/j1").json() == {"progress": "No updates yet."}
    api.folder.job_file("j1", "results/result.json", json.dumps({"kpi": 0.9}))
    api.folder.job_file("j1", "progress/progress.json", json.dumps({"percent": 100}))
    assert api.client.get("/result/j1").json()["kpi"] == 0.9
    assert api.client.get("/progress/j1").json() == {"percent": 100}
    assert api.client.get("/result/nope").status_code == 404


def test_stop_suspends_the_spec(api):
    path = api.folder.spec("j1")
    r = api.client.post("/stop/j1")
    assert r.status_code == 200 and r.json() == {"job_id": "j1", "message": "stop requested", "action": "updated"}
    assert yaml.safe_load(path.read_text())["spec"]["suspend"] is True
    assert api.client.post("/stop/j1").json()["message"] == "already stopped"
    assert api.client.post("/stop/nope").status_code == 404


def test_job_info(api):
    api.folder.status("j1")
    assert api.client.get("/job-info/j1").json()["status"] == "running"  # known, not yet started
    api.folder.job_file("j1", "job_info.json", json.dumps({"image": "busybox", "container_name": "c"}))
    info = api.client.get("/job-info/j1").json()
    assert info["image"] == "busybox" and info["container_name"] == "c" and info["job_name"] == "j1"
    assert "not found" in api.client.get("/job-info/nope").json()["detail"]


def test_seed_job_list_reads_the_seeds_own_track_file(api):
    """A job_track.json left by the seed (job id -> container id) lists instead of failing."""
    (api.folder.root / "job_track.json").write_text(json.dumps({"0b7c5d3e": "abc123", "Not A Name": "x"}))
    items = api.client.get("/jobs").json()
    assert [(i["job_id"], i["container_id"], i["status"]) for i in items] == [("0b7c5d3e", "abc123", "unknown")]


# ---- health ------------------------------------------------------------------------------------------------------
def test_health_with_a_fresh_heartbeat(api):
    api.folder.heartbeat(age=1, docker=True, phases={"Running": 2, "Succeeded": 1})
    body = api.client.get("/health").json()
    assert body["status"] == "ok" and body["controller"]["alive"] is True and body["docker"] is True
    assert body["phases"]["Running"] == 2 and body["phases"]["Succeeded"] == 1 and body["controller"]["pid"] == 1234


def test_health_with_a_stale_heartbeat_is_degraded(api):
    api.folder.heartbeat(age=600)
    body = api.client.get("/health").json()
    assert api.client.get("/health").status_code == 200
    assert body["status"] == "degraded" and body["controller"]["alive"] is False and body["docker"] is None
    assert body["controller"]["heartbeatAge"] >= 600


def test_health_when_docker_is_down(api):
    api.folder.heartbeat(docker=False)
    body = api.client.get("/health").json()
    assert body["status"] == "degraded" and body["docker"] is False and body["controller"]["alive"] is True


def test_health_without_any_controller(api):
    body = api.client.get("/health").json()
    assert body["status"] == "degraded" and body["controller"]["heartbeatAge"] is None and body["jobs"] == 0
