"""The OPEVA simulator's own MLflow calls land in the run the controller opened for it.

The simulator does `mlflow.set_experiment(metadata.experiment_name)` then `mlflow.start_run()`, which resumes
`$MLFLOW_RUN_ID` only if that run is in the same experiment (else MLflow raises). The stand-in simulator image has no
MLflow client, so it writes the environment it was given to env.json and waits; the test makes exactly those calls
with the real MLflow client and that environment, then lets the job finish.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from clients.conftest import CONFIG, seed_folder, stack_env
from clients.simimage import build_simulator_image
from e2e.harness import SESSION, ControllerProcess, free_port, wait_for
from tracking_support import UI, final_run

pytestmark = pytest.mark.docker

JOB_CALLS = """
import json, os, sys
import mlflow
os.environ.update(json.loads(sys.argv[1]))
mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
mlflow.set_experiment(sys.argv[2])
with mlflow.start_run(run_name=os.environ.get("OPEVA_JOB_NAME")) as run:
    mlflow.log_metric("reward", 1.5, step=1)
    mlflow.set_tag("written_by", "the job")
    print(run.info.run_id)
"""


def as_job(env: dict[str, str], experiment: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in env.items() if k.startswith(("MLFLOW_", "OPEVA_"))}
    return subprocess.run(
        [sys.executable, "-c", JOB_CALLS, json.dumps(keep), experiment], capture_output=True, text=True, timeout=120
    )


def test_the_simulators_own_run_is_the_one_the_controller_opened(data, mlflow):
    build_simulator_image()
    seed_folder(data)
    experiment = f"sim-exp-{SESSION}"
    config = CONFIG.replace("citylearn-ppo", experiment).replace("test: {", "test: {wait_for_go: true, ")
    (data / "configs" / "tracked.yaml").write_text(config)
    (data / "configs" / "unnamed.yaml").write_text("test: {wait_for_go: true, episodes: 1}\n")
    env = stack_env(OPEVA_MLFLOW_UI=UI, OPEVA_MLFLOW_MIRROR_SECONDS="1", OPEVA_MLFLOW_RETRY_MAX_SECONDS="1")
    proc = ControllerProcess(data, "--mlflow-uri", mlflow.uri, port=free_port(), env=env, resync=1.0).start()
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        r = client.post("/run-simulation", json={"config_path": "tracked.yaml", "job_name": "tracked run"})
        job = r.json()["job_id"]
        env_file = data / "jobs" / job / "env.json"
        job_env = wait_for(lambda: env_file.exists() and json.loads(env_file.read_text()), timeout=60, what="env")
        assert job_env["MLFLOW_UI_BASE_URL"] == UI and job_env["OPEVA_JOB_NAME"] == "tracked run"
        calls = as_job(job_env, experiment)
        assert calls.returncode == 0, calls.stderr[-2000:]
        assert calls.stdout.split()[0] == job_env["MLFLOW_RUN_ID"], "start_run() resumed the controller's run"
        (data / "jobs" / job / "go").write_text("")
        wait_for(lambda: client.get(f"/status/{job}").json()["status"] == "finished", timeout=60, what="finished")

        [run] = final_run(mlflow, job, experiment=experiment)
        assert run["info"]["run_id"] == job_env["MLFLOW_RUN_ID"] and run["info"]["status"] == "FINISHED"
        assert run["metrics"]["reward"] == 1.5 and run["tags"]["written_by"] == "the job"
        info = client.get(f"/job-info/{job}").json()
        assert info["mlflow_run_id"] == job_env["MLFLOW_RUN_ID"]

        # a config that names no experiment: the job's experiment cannot be known, so no run is injected
        r = client.post("/run-simulation", json={"config_path": "unnamed.yaml"})
        other = r.json()["job_id"]
        env_file = data / "jobs" / other / "env.json"
        other_env = wait_for(lambda: env_file.exists() and json.loads(env_file.read_text()), timeout=60, what="env")
        assert "MLFLOW_RUN_ID" not in other_env
        (data / "jobs" / other / "go").write_text("")
        wait_for(lambda: client.get(f"/status/{other}").json()["status"] == "finished", timeout=60, what="finished")
    proc.kill()
