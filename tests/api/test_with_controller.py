"""The API against a real `opeva run` (controller + API in one process) and a real Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.harness import ControllerProcess, cleanup_containers, free_port, job_name, shell_spec, wait_for

pytestmark = pytest.mark.docker

TOKEN = "e2e-token"


def spec(name: str, script: str, **extra: Any) -> dict:
    return shell_spec(name, script, terminationGracePeriodSeconds=1, **extra)


@pytest.fixture(scope="module")
def opeva(docker_engine, tmp_path_factory) -> Iterator[httpx.Client]:
    """A real `opeva run` (controller + API, with a token) from the shared harness, and a client for it."""
    data: Path = tmp_path_factory.mktemp("e2e-api") / "data"
    ctl = ControllerProcess(data, port=free_port(), env={"OPEVA_API_TOKEN": TOKEN}).start()
    client = httpx.Client(base_url=ctl.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    try:
        wait_for(lambda: client.get("/health").json()["docker"], 30, what="the controller to see Docker")
        yield client
    finally:
        client.close()
        ctl.stop()
        cleanup_containers()


def phase_of(client: httpx.Client, name: str) -> str | None:
    status = client.get(f"/jobs/{name}").json().get("status") or {}
    return status.get("phase")


def wait_phase(client: httpx.Client, name: str, phase: str, timeout: float = 30) -> dict:
    def check():
        status = client.get(f"/jobs/{name}").json().get("status") or {}
        return status if status.get("phase") == phase else None

    try:
        return wait_for(check, timeout, what=f"{name} to be {phase}")
    except AssertionError as err:
        raise AssertionError(f"{err}; job: {client.get(f'/jobs/{name}').json()}") from None


def test_apply_then_follow_the_log_until_the_job_ends(opeva):
    name = job_name("count")
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.4; done"
    assert opeva.put(f"/jobs/{name}", json=spec(name, script)).status_code == 201
    wait_for(lambda: phase_of(opeva, name) in ("Running", "Succeeded"), 30, what=f"{name} to start")
    with opeva.stream("GET", f"/jobs/{name}/logs", params={"follow": "true"}, timeout=60) as r:
        lines = [line for line in r.iter_lines()]
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {i}" for i in range(1, 6)]
    status = wait_phase(opeva, name, "Succeeded")
    assert status["reason"] == "Completed"
    assert opeva.get(f"/status/{name}").json()["status"] == "finished"
    wait_for(
        lambda: name in [j["name"] for j in opeva.get("/jobs", params={"phase": "Succeeded"}).json()],
        10,
        what="the index to list the job",
    )
    info = opeva.get(f"/job-info/{name}").json()
    assert info["image"] == "opeva-test/busybox:1" and info["container_name"].endswith("-1")
    assert [e["reason"] for e in opeva.get(f"/jobs/{name}/events").json()][:1] == ["Accepted"]

    run_id = opeva.post(f"/jobs/{name}/rerun").json()["runId"]
    wait_for(lambda: (opeva.get(f"/jobs/{name}").json()["status"] or {}).get("runId") == run_id, 30, what="the rerun")
    wait_phase(opeva, name, "Succeeded")
    assert opeva.get(f"/logs/{name}").text.count("line 5") == 2  # the log keeps every attempt


def test_stop_resume_and_delete_through_the_api(opeva):
    name = job_name("sleeper")
    assert opeva.post("/jobs", json=spec(name, "echo started; sleep 300")).status_code == 201
    wait_phase(opeva, name, "Running")
    assert opeva.post(f"/jobs/{name}/stop").json()["action"] == "updated"
    assert wait_phase(opeva, name, "Stopped")["reason"] in ("Suspended", "StoppedByUser")
    assert opeva.post(f"/stop/{name}").json()["message"] == "already stopped"
    assert opeva.post(f"/jobs/{name}/resume").json()["suspend"] is False
    wait_phase(opeva, name, "Running")
    wait_for(
        lambda: opeva.get("/health").json()["phases"].get("Running", 0) >= 1,
        15,
        what="the heartbeat to count the running job",
    )
    assert opeva.get("/health").json()["status"] == "ok"
    assert opeva.delete(f"/jobs/{name}").json()["action"] == "deleted"
    assert wait_phase(opeva, name, "Stopped")["reason"] == "SpecDeleted"
    assert opeva.get(f"/jobs/{name}").json()["spec"] is None  # the record stays after the spec is gone


def test_an_invalid_spec_is_refused_before_the_controller_sees_it(opeva):
    name = job_name("invalid")
    r = opeva.put(f"/jobs/{name}", json={**spec(name, "true"), "extra": 1})
    assert r.status_code == 422 and "extra: unknown field" in r.json()["detail"]
    assert opeva.get(f"/jobs/{name}").status_code == 404


def test_apply_then_list_never_misses(opeva):
    """Read-your-writes: once PUT or POST /jobs returns, GET /jobs lists the job (50 times in a row)."""
    tag = job_name("ryw")
    for i in range(50):
        name = job_name(f"ryw-{i}")
        doc = spec(name, "true", suspend=True)
        doc["metadata"]["labels"]["ryw"] = tag
        r = opeva.post("/jobs", json=doc) if i % 2 else opeva.put(f"/jobs/{name}", json=doc)
        assert r.status_code == 201, r.text
        listed = {row["name"] for row in opeva.get("/jobs", params={"label": f"ryw={tag}"}).json()}
        assert name in listed, f"write {i} not listed"
        assert len(listed) == i + 1
    for i in range(50):
        opeva.delete(f"/jobs/{job_name(f'ryw-{i}')}")
