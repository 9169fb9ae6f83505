"""The MLflow progress mirror against a hostile job (issue 14, defect 4): real controller, Docker and MLflow.

A FIFO as progress.json wedged every mirror worker for good (and again after a restart) while /health said ok; a link
copied numbers from a host JSON file into the run, which every job can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e.harness import job_name, shell_spec, wait_phase, write_spec
from tracking_support import EXPERIMENT, final_run

pytestmark = pytest.mark.docker

GOOD = """
P=/data/jobs/$OPEVA_JOB_ID/progress
printf '{"percent": 50, "step": 1}' > $P/.p.tmp && mv $P/.p.tmp $P/progress.json
sleep 3
printf '{"percent": 100, "step": 2}' > $P/.p.tmp && mv $P/.p.tmp $P/progress.json
sleep 2
"""


def test_a_fifo_or_a_link_as_progress_does_not_wedge_or_leak(data: Path, mlflow, start_controller, tmp_path):
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"percent": 31337, "metrics": {"stolen": 42}}))
    start_controller()
    fifo, link, good = job_name("fifo"), job_name("link"), job_name("good")
    write_spec(data, shell_spec(fifo, "mkfifo /data/jobs/$OPEVA_JOB_ID/progress/progress.json && sleep 8"))
    write_spec(data, shell_spec(link, f"ln -s {host} /data/jobs/$OPEVA_JOB_ID/progress/progress.json && sleep 8"))
    wait_phase(data, fifo, "Running", timeout=30)
    wait_phase(data, link, "Running", timeout=30)
    write_spec(data, shell_spec(good, GOOD))
    wait_phase(data, good, "Succeeded", timeout=60)
    [run] = final_run(mlflow, good, EXPERIMENT)
    assert [m["value"] for m in mlflow.history(run["info"]["run_id"], "percent")][-1] == 100.0, "the mirror still works"
    wait_phase(data, link, "Succeeded", timeout=30)
    [stolen] = final_run(mlflow, link, EXPERIMENT)
    assert "stolen" not in stolen["metrics"] and stolen["metrics"].get("percent") != 31337
    wait_phase(data, fifo, "Succeeded", timeout=30)
    assert final_run(mlflow, fifo, EXPERIMENT), "the FIFO job's run was closed: no worker is stuck on it"
