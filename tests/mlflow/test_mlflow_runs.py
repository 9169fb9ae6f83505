"""One MLflow run per attempt, closed with the status the attempt earned: real controller, Docker and MLflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from e2e.harness import (
    containers,
    job_name,
    read_json_file,
    read_log,
    shell_spec,
    spec_doc,
    wait_for,
    wait_phase,
    write_spec,
)
from tracking_support import EXPERIMENT, PYTHON_IMAGE, UI, final_run

pytestmark = pytest.mark.docker

PROGRESS_THEN_RESULT = """
P=/data/jobs/$OPEVA_JOB_ID/progress
for i in 1 2 3; do
  printf '{"percent": %d, "step": %d, "stage": "train", "metrics": {"reward": %d.5, "loss": {"train": 0.%d}}}' \\
    $((i * 33)) $i $i $i > $P/.p.tmp
  mv $P/.p.tmp $P/progress.json
  sleep 1.2
done
echo '{"score": 0.9, "kpis": {"cost": 12}, "label": "x"}' > /data/jobs/$OPEVA_JOB_ID/results/result.json
echo "run id is $MLFLOW_RUN_ID"
"""


def test_success_closes_the_run_finished_with_tags_params_metrics_and_artifacts(data, mlflow, start_controller):
    start_controller()
    name = job_name("ok")
    labels = {"experiment": EXPERIMENT + "-label", "team": "grid"}
    write_spec(data, shell_spec(name, PROGRESS_THEN_RESULT, labels=labels, env={"SEED": "42", "API_TOKEN": "hunter2"}))
    st = wait_phase(data, name, "Succeeded", timeout=40)
    [run] = final_run(mlflow, name, EXPERIMENT + "-label")  # the label picks the experiment
    info, tags, params = run["info"], run["tags"], run["params"]
    assert info["status"] == "FINISHED" and info["run_name"] == f"{name}-a1"
    assert tags["opeva.job"] == name and tags["opeva.attempt"] == "1"
    assert tags["opeva.generation"] == st["observedGeneration"]
    assert tags["opeva.image"] == "opeva-test/busybox:1" and tags["opeva.container"] == st["containerName"]
    assert tags["team"] == "grid" and tags["opeva.outcome"] == "Succeeded" and tags["opeva.exitCode"] == "0"
    assert params["env.SEED"] == "42" and params["env.API_TOKEN"] == "***", "secret-looking values are masked"
    assert json.loads(params["args"]) == [PROGRESS_THEN_RESULT]

    run_id = info["run_id"]
    percent = mlflow.history(run_id, "percent")
    assert [(m["step"], m["value"]) for m in percent][-1] == (3, 99.0), percent
    assert len(percent) >= 2, "progress is mirrored while the job runs, not only at the end"
    assert mlflow.history(run_id, "reward")[-1]["value"] == 3.5
    assert mlflow.history(run_id, "loss/train")[-1]["value"] == pytest.approx(0.3)
    assert run["metrics"]["score"] == 0.9 and run["metrics"]["kpis/cost"] == 12, "result.json numbers"
    assert "stage" not in run["metrics"] and "label" not in run["metrics"]

    assert json.loads(mlflow.artifact_text(run_id, "results/result.json"))["score"] == 0.9
    log = mlflow.artifact_text(run_id, f"logs/{name}.log")
    assert f"run id is {run_id}" in log, "the container got MLFLOW_RUN_ID of its own run"
    assert log == read_log(data, name)

    job_info = read_json_file(data / "jobs" / name / "job_info.json")
    assert job_info["mlflow_run_id"] == run_id and job_info["mlflow_experiment_id"] == info["experiment_id"]
    assert job_info["mlflow_run_url"] == f"{UI}/#/experiments/{info['experiment_id']}/runs/{run_id}"
    wait_for(
        lambda: read_json_file(data / "jobs" / name / "job_info.json").get("mlflow_run_status") == "FINISHED",
        timeout=10,
        what="job_info.json shows the closed run",
    )
    wait_for(lambda: not list((data / ".opeva" / "mlflow-outbox").iterdir()), timeout=10, what="outbox drained")


def test_failure_closes_the_run_failed(data, mlflow, start_controller):
    start_controller()
    name = job_name("fail")
    write_spec(data, shell_spec(name, "echo about to fail; exit 3"))
    wait_phase(data, name, "Failed")
    [run] = final_run(mlflow, name)
    assert run["info"]["status"] == "FAILED"
    assert run["tags"]["opeva.outcome"] == "Failed" and run["tags"]["opeva.reason"] == "Error"
    assert run["tags"]["opeva.exitCode"] == "3"
    assert "about to fail" in mlflow.artifact_text(run["info"]["run_id"], f"logs/{name}.log")


def test_suspend_closes_the_run_killed(data, mlflow, start_controller):
    start_controller()
    name = job_name("stop")
    script = (
        'echo \'{"percent": 10, "metrics": {"reward": 1}}\' > /data/jobs/$OPEVA_JOB_ID/progress/progress.json; '
        "sleep 300"
    )
    doc = shell_spec(name, script, terminationGracePeriodSeconds=1, mlflow={"runName": "stoppable"})
    write_spec(data, doc)
    wait_phase(data, name, "Running")
    running = wait_for(
        lambda: [r for r in mlflow.runs_of_job(EXPERIMENT, name) if "percent" in r["metrics"]],
        timeout=15,
        what="progress mirrored while running",
    )
    assert running[0]["info"]["status"] == "RUNNING" and running[0]["info"]["run_name"] == "stoppable"
    doc["spec"]["suspend"] = True
    write_spec(data, doc)
    wait_phase(data, name, "Stopped", reason="Suspended", timeout=20)
    [run] = final_run(mlflow, name)
    assert run["info"]["status"] == "KILLED"
    assert run["tags"]["opeva.outcome"] == "Stopped" and run["tags"]["opeva.reason"] == "Suspended"
    assert run["metrics"]["percent"] == 10 and run["metrics"]["reward"] == 1


def test_interruption_kills_the_run_and_the_next_attempt_gets_its_own(data, mlflow, start_controller):
    start_controller()
    name = job_name("intr")
    script = '[ "$OPEVA_ATTEMPT" = 1 ] && sleep 300; echo attempt $OPEVA_ATTEMPT done'
    write_spec(data, shell_spec(name, script, terminationGracePeriodSeconds=1))
    st = wait_phase(data, name, "Running")
    wait_for(lambda: mlflow.runs_of_job(EXPERIMENT, name), timeout=10, what="run of attempt 1")
    subprocess.run(["docker", "rm", "-f", st["containerName"]], check=True, capture_output=True)
    st = wait_phase(data, name, "Succeeded", timeout=40)
    assert st["attempts"] == 2
    first, second = final_run(mlflow, name, count=2)
    assert (first["tags"]["opeva.attempt"], first["info"]["status"]) == ("1", "KILLED")
    assert first["tags"]["opeva.outcome"] == "Interrupted"
    assert (second["tags"]["opeva.attempt"], second["info"]["status"]) == ("2", "FINISHED")
    assert second["info"]["run_name"] == f"{name}-a2"
    log2 = mlflow.artifact_text(second["info"]["run_id"], f"logs/{name}.log")
    assert "attempt 2 done" in log2 and "attempt 1" not in log2.split("=====")[-1], "only the attempt's own log"
    info = read_json_file(data / "jobs" / name / "job_info.json")
    assert info["mlflow_run_id"] == second["info"]["run_id"] and info["mlflow_attempt"] == 2


def test_a_job_logs_into_the_run_the_controller_opened(data, mlflow, start_controller):
    start_controller()
    name = job_name("selflog")
    script = (
        "import json, os, time, urllib.request\n"
        "uri, run = os.environ['MLFLOW_TRACKING_URI'], os.environ['MLFLOW_RUN_ID']\n"
        "body = {'run_id': run, 'metrics': [{'key': 'from_job', 'value': 42, 'step': 7,\n"
        "        'timestamp': int(time.time() * 1000)}], 'tags': [{'key': 'written_by', 'value': 'the job'}]}\n"
        "req = urllib.request.Request(uri + '/api/2.0/mlflow/runs/log-batch', data=json.dumps(body).encode(),\n"
        "                             headers={'Content-Type': 'application/json'})\n"
        "print('logged', urllib.request.urlopen(req, timeout=10).status, os.environ['MLFLOW_EXPERIMENT_ID'])\n"
    )
    write_spec(data, spec_doc(name, image=PYTHON_IMAGE, command=["python3", "-c", script], network="host"))
    wait_phase(data, name, "Succeeded", timeout=40)
    [run] = final_run(mlflow, name)
    assert run["info"]["status"] == "FINISHED"
    assert run["metrics"]["from_job"] == 42 and run["tags"]["written_by"] == "the job"
    assert f"logged 200 {run['info']['experiment_id']}" in read_log(data, name)


def test_mlflow_disabled_for_a_job_means_no_run_and_no_env(data, mlflow, start_controller):
    start_controller()
    name = job_name("nomlflow")
    write_spec(
        data, shell_spec(name, 'echo "uri=[$MLFLOW_TRACKING_URI] run=[$MLFLOW_RUN_ID]"', mlflow={"enabled": False})
    )
    wait_phase(data, name, "Succeeded")
    assert "uri=[] run=[]" in read_log(data, name)
    assert mlflow.runs_of_job(EXPERIMENT, name) == []
    assert "mlflow_run_id" not in (read_json_file(data / "jobs" / name / "job_info.json") or {})
    wait_for(lambda: not containers(name), what="container removed")
    assert not list(Path(data / ".opeva" / "mlflow-outbox").iterdir())


def test_resource_samples_become_the_runs_system_metrics(data, mlflow, start_controller):
    start_controller()
    name = job_name("busy")
    write_spec(data, shell_spec(name, "i=0; while [ $i -lt 120000 ]; do i=$((i+1)); done; sleep 12"))
    wait_phase(data, name, "Succeeded", timeout=90)
    [run] = final_run(mlflow, name)
    run_id = run["info"]["run_id"]
    memory = mlflow.history(run_id, "system/system_memory_usage_megabytes")
    cpu = mlflow.history(run_id, "system/cpu_utilization_percentage")
    assert len(memory) >= 2 and all(m["value"] > 0 for m in memory), memory
    assert cpu and all(0 <= m["value"] <= 100 for m in cpu), cpu
    assert [m["step"] for m in sorted(memory, key=lambda m: m["step"])] == list(range(len(memory)))
    samples = (data / ".opeva" / "history" / name / "resources.jsonl").read_text().splitlines()
    assert len(memory) >= len(samples) - 1, "every sample taken while the run was open reached it"
