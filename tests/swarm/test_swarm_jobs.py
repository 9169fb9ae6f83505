"""Swarm-only behaviour of `opeva run --runtime swarm` on the real 3-node swarm (the cases shared with Docker are
parametrized over both engines in tests/e2e)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e.engines import SwarmEngine
from e2e.harness import (
    ControllerProcess,
    job_name,
    read_events,
    read_status,
    spec_doc,
    wait_for,
    wait_phase,
    write_spec,
)

from .cluster import SwarmCluster

pytestmark = pytest.mark.swarm


def test_a_job_no_node_can_hold_waits_pending_with_swarms_reason(data: Path, swarm_cluster: SwarmCluster):
    engine = SwarmEngine(swarm_cluster)
    name = job_name("toobig")
    # the controller's own capacity figure is raised so that only Swarm can say no: every node has ~24 GiB
    ctl = ControllerProcess(data, "--memory", "4000Gi", env=engine.env).start()
    path = write_spec(data, spec_doc(name, command=["true"], resources={"memory": "1000Gi"}))
    st = wait_phase(data, name, "Pending", reason="InsufficientMemory", timeout=30)
    assert "no suitable node" in st["message"] and "insufficient resources" in st["message"]
    pending = next(c for c in st["conditions"] if c["type"] == "Pending")
    assert (pending["status"], pending["reason"]) == ("True", "InsufficientMemory")
    assert [e["reason"] for e in read_events(data, name)].count("Waiting") == 1
    time.sleep(3)  # it keeps waiting: no attempt is counted, nothing runs
    st = read_status(data, name)
    assert (st["phase"], st["reason"], st["attempts"], st["failures"]) == ("Pending", "InsufficientMemory", 1, 0)
    assert [c["State"] for c in engine.containers(name)] == ["pending"]

    path.unlink()  # a waiting job is given up like any other: its service goes
    wait_phase(data, name, "Stopped", reason="SpecDeleted", timeout=20)
    wait_for(lambda: not engine.containers(name), timeout=20, what="the waiting service removed")
    ctl.kill()
