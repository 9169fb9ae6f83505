"""The API against a real `opeva run` (controller + API in one process) and a real Docker engine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

pytestmark = pytest.mark.docker

IMAGE = "opeva-test/busybox:latest"
SESSION = uuid.uuid4().hex[:6]
TOKEN = "e2e-token"


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec(name: str, script: str, **extra: Any) -> dict:
    return {"apiVersion": "opeva/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"opeva-test": SESSION}},
            "spec": {"image": IMAGE, "command": ["sh", "-c"], "args": [script], "network": "none",
                     "terminationGracePeriodSeconds": 1, **extra}}


@pytest.fixture(scope="module")
def opeva(docker_engine, tmp_path_factory) -> Iterator[httpx.Client]:
    data: Path = tmp_path_factory.mktemp("e2e-api") / "data"
    port = free_port()
    log = open(data.parent / "opeva.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--data", str(data), "--port", str(port),
                             "--resync", "2"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OPEVA_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30)

    def alive():
        if proc.poll() is not None:
            raise AssertionError(f"opeva run exited: {(data.parent / 'opeva.log').read_text()[-2000:]}")
        try:
            body = client.get("/health").json()
        except httpx.HTTPError:
            return None
        return body["controller"]["alive"] and body["docker"]

    try:
        wait_for(alive, 30, "opeva run to answer /health with a live controller and Docker")
        yield client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=opeva-test={SESSION}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def phase_of(client: httpx.Client, name: str) -> str | None:
    status = client.get(f"/jobs/{name}").json().get("status") or {}
    return status.get("phase")


def wait_phase(client: httpx.Client, name: str, phase: str, timeout: float = 30) -> dict:
    def check():
        status = client.get(f"/jobs/{name}").json().get("status") or {}
        return status if status.get("phase") == phase else None

    try:
        return wait_for(check, timeout, f"{name} to be {phase}")
    except AssertionError as err:
        raise AssertionError(f"{err}; job: {client.get(f'/jobs/{name}').json()}") from None


def test_apply_then_follow_the_log_until_the_job_ends(opeva):
    name = f"count-{SESSION}"
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.4; done"
    assert opeva.put(f"/jobs/{name}", json=spec(name, script)).status_code == 201
    wait_for(lambda: phase_of(opeva, name) in ("Running", "Succeeded"), 30, f"{name} to start")
    with opeva.stream("GET", f"/jobs/{name}/logs", params={"follow": "true"}, timeout=60) as r:
        lines = [line for line in r.iter_lines()]
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {i}" for i in range(1, 6)]
    status = wait_phase(opeva, name, "Succeeded")
    assert status["reason"] == "Completed"
    assert opeva.get(f"/status/{name}").json()["status"] == "finished"
    wait_for(lambda: name in [j["name"] for j in opeva.get("/jobs", params={"phase": "Succeeded"}).json()], 10,
             "the index to list the job")
    # /job-info is not checked here: the controller does not write job_info.json yet (test_seed.py covers the route)
    assert [e["reason"] for e in opeva.get(f"/jobs/{name}/events").json()][:1] == ["Accepted"]

    run_id = opeva.post(f"/jobs/{name}/rerun").json()["runId"]
    wait_for(lambda: (opeva.get(f"/jobs/{name}").json()["status"] or {}).get("runId") == run_id, 30, "the rerun")
    wait_phase(opeva, name, "Succeeded")
    assert opeva.get(f"/logs/{name}").text.count("line 5") == 2  # the log keeps every attempt


def test_stop_resume_and_delete_through_the_api(opeva):
    name = f"sleeper-{SESSION}"
    assert opeva.post("/jobs", json=spec(name, "echo started; sleep 300")).status_code == 201
    wait_phase(opeva, name, "Running")
    assert opeva.post(f"/jobs/{name}/stop").json()["action"] == "updated"
    assert wait_phase(opeva, name, "Stopped")["reason"] in ("Suspended", "StoppedByUser")
    assert opeva.post(f"/stop/{name}").json()["message"] == "already stopped"
    assert opeva.post(f"/jobs/{name}/resume").json()["suspend"] is False
    wait_phase(opeva, name, "Running")
    wait_for(lambda: opeva.get("/health").json()["phases"].get("Running", 0) >= 1, 15,
             "the heartbeat to count the running job")
    assert opeva.get("/health").json()["status"] == "ok"
    assert opeva.delete(f"/jobs/{name}").json()["action"] == "deleted"
    assert wait_phase(opeva, name, "Stopped")["reason"] == "SpecDeleted"
    assert opeva.get(f"/jobs/{name}").json()["spec"] is None  # the record stays after the spec is gone


def test_an_invalid_spec_is_refused_before_the_controller_sees_it(opeva):
    name = f"invalid-{SESSION}"
    r = opeva.put(f"/jobs/{name}", json={**spec(name, "true"), "extra": 1})
    assert r.status_code == 422 and "extra: unknown field" in r.json()["detail"]
    assert opeva.get(f"/jobs/{name}").status_code == 404
