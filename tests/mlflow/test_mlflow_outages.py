"""MLflow away, the controller killed: jobs are never held up, and every run still ends closed with its metrics."""

from __future__ import annotations

import time

import pytest
from e2e.harness import job_name, read_json_file, read_log, shell_spec, wait_for, wait_phase, write_spec
from tracking_support import EXPERIMENT, final_run

pytestmark = pytest.mark.docker

# progress every 0.3 s until the test drops /data/go-NAME, then a result and exit 0
UNTIL_GO = """
P=/data/jobs/$OPEVA_JOB_ID/progress; i=0
echo "run=[$MLFLOW_RUN_ID]"
while [ ! -e /data/go-$OPEVA_JOB_ID ]; do
  i=$((i + 1))
  echo "{\\"step\\": $i, \\"percent\\": $i, \\"metrics\\": {\\"reward\\": $i}}" > $P/.p.tmp
  mv $P/.p.tmp $P/progress.json
  sleep 0.3
done
echo "{\\"steps\\": $i}" > /data/jobs/$OPEVA_JOB_ID/results/result.json
echo finished after $i steps
"""


def go(data, name: str) -> None:
    (data / f"go-{name}").touch()


def outbox_entries(data) -> list[dict]:
    root = data / ".opeva" / "mlflow-outbox"
    return [read_json_file(d / "entry.json") or {} for d in root.iterdir()] if root.exists() else []


def running_run(mlflow, name: str) -> dict:
    return wait_for(
        lambda: [r for r in mlflow.runs_of_job(EXPERIMENT, name) if r["info"]["status"] == "RUNNING"],
        timeout=15,
        what=f"a RUNNING run of {name}",
    )[0]


def assert_complete(mlflow, run: dict) -> None:
    """FINISHED, with the last progress step and the result's numbers."""
    steps = run["metrics"]["steps"]
    assert run["info"]["status"] == "FINISHED"
    last = mlflow.history(run["info"]["run_id"], "percent")[-1]
    assert (last["step"], last["value"], run["metrics"]["reward"]) == (steps, steps, steps)


def test_mlflow_stopped_during_a_job_then_started_gets_the_final_status_and_metrics(data, mlflow, start_controller):
    start_controller()
    name = job_name("outage")
    write_spec(data, shell_spec(name, UNTIL_GO))
    wait_phase(data, name, "Running")
    running_run(mlflow, name)
    mlflow.stop()
    time.sleep(2)  # progress goes on while MLflow is away
    go(data, name)
    wait_phase(data, name, "Succeeded", timeout=20)  # the job is not held up by MLflow
    wait_for(
        lambda: [(e.get("close") or {}).get("status") for e in outbox_entries(data)] == ["FINISHED"],
        timeout=5,
        what="the close waiting in the outbox",
    )
    mlflow.start()
    [run] = final_run(mlflow, name)
    assert_complete(mlflow, run)
    assert run["info"]["run_id"] in read_log(data, name)
    wait_for(lambda: not outbox_entries(data), timeout=10, what="outbox drained")


def test_controller_killed_after_the_exit_before_the_close_was_sent_closes_the_run_after_restart(
    data, mlflow, start_controller
):
    controller = start_controller()
    name = job_name("crash")
    write_spec(data, shell_spec(name, UNTIL_GO))
    wait_phase(data, name, "Running")
    running_run(mlflow, name)
    mlflow.stop()  # so the close cannot be sent before the kill
    go(data, name)
    wait_phase(data, name, "Succeeded", timeout=20)
    wait_for(lambda: [e for e in outbox_entries(data) if e.get("close")], timeout=10, what="close in the outbox")
    controller.kill()  # SIGKILL between "container exited" and "run closed"
    mlflow.start()
    assert mlflow.runs_of_job(EXPERIMENT, name)[0]["info"]["status"] == "RUNNING"
    start_controller()
    [run] = final_run(mlflow, name)
    assert_complete(mlflow, run)
    assert len(mlflow.runs_of_job(EXPERIMENT, name)) == 1


def test_a_job_that_ends_while_the_controller_is_down_gets_its_run_closed_after_restart(data, mlflow, start_controller):
    controller = start_controller()
    name = job_name("down")
    write_spec(data, shell_spec(name, UNTIL_GO))
    wait_phase(data, name, "Running")
    run = running_run(mlflow, name)
    controller.kill()
    go(data, name)
    time.sleep(1.5)  # the container exits while nobody watches
    start_controller()
    wait_phase(data, name, "Succeeded", timeout=20)
    [closed] = final_run(mlflow, name)
    assert closed["info"]["run_id"] == run["info"]["run_id"], "the same run, found again, not a second one"
    assert_complete(mlflow, closed)


def test_mlflow_down_when_a_job_starts_does_not_delay_it_and_the_run_is_created_later(data, mlflow, start_controller):
    mlflow.stop()
    start_controller()
    name = job_name("late")
    t0 = time.monotonic()
    write_spec(data, shell_spec(name, UNTIL_GO))
    wait_phase(data, name, "Running", timeout=10)
    assert time.monotonic() - t0 < 6, "a job does not wait for MLflow"
    wait_for(lambda: "run=[" in read_log(data, name), timeout=10, what="job output")
    assert "run=[]" in read_log(data, name), "no MLFLOW_RUN_ID when the run could not be opened in time"
    mlflow.start()
    run = running_run(mlflow, name)
    assert run["tags"]["opeva.attempt"] == "1"
    go(data, name)
    [closed] = final_run(mlflow, name)
    assert_complete(mlflow, closed)
    info = read_json_file(data / "jobs" / name / "job_info.json")
    assert info["mlflow_run_id"] == closed["info"]["run_id"]


def test_a_hanging_mlflow_delays_a_start_by_the_budget_at_most(data, mlflow, start_controller):
    start_controller()
    name = job_name("hang")
    mlflow.pause()
    try:
        t0 = time.monotonic()
        write_spec(data, shell_spec(name, UNTIL_GO))
        wait_phase(data, name, "Running", timeout=15)
        assert time.monotonic() - t0 < 8, "the run's creation may take 2.5 s of a start, no more"
        wait_for(lambda: "run=[" in read_log(data, name), timeout=10, what="job output")
        assert "run=[]" in read_log(data, name)
        go(data, name)
        wait_phase(data, name, "Succeeded", timeout=20)
    finally:
        mlflow.resume()
    runs = final_run(mlflow, name, timeout=60)
    assert [r["info"]["status"] for r in runs if "opeva.duplicateOf" not in r["tags"]] == ["FINISHED"]
    assert_complete(mlflow, next(r for r in runs if "opeva.duplicateOf" not in r["tags"]))
