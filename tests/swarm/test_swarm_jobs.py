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
    read_log,
    read_status,
    shell_spec,
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


def test_the_log_is_whole_across_a_restart_during_the_job_and_after_it_ended(data: Path, swarm_cluster: SwarmCluster):
    """Every line once, stdout and stderr, when the controller dies while a worker's task prints and comes back only
    after the task ended (its log is then read from the cursor, without following)."""
    engine = SwarmEngine(swarm_cluster)
    name = job_name("logcont")
    script = "i=1; while [ $i -le 60 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); sleep 0.05; done"
    doc = shell_spec(name, script, placement={"constraints": [swarm_cluster.constraint("n2")]})
    ctl = ControllerProcess(data, env=engine.env).start()
    write_spec(data, doc)
    wait_for(lambda: "out-10" in read_log(data, name), timeout=30, what="some output captured")
    ctl.kill()
    wait_for(lambda: [c["State"] for c in engine.containers(name)] == ["complete"], timeout=30, what="the task ended")
    assert engine.containers(name)[0]["NodeID"] == swarm_cluster.node("n2").node_id
    ctl = ControllerProcess(data, env=engine.env).start()
    st = wait_phase(data, name, "Succeeded", timeout=30)
    ctl.kill()
    assert st["attempts"] == 1
    body = [line for line in read_log(data, name).splitlines() if not line.startswith("=====")]
    assert sorted(body) == sorted([f"out-{i}" for i in range(1, 61)] + [f"err-{i}" for i in range(1, 61)])
    assert [b for b in body if b.startswith("out")] == [f"out-{i}" for i in range(1, 61)]  # each stream in order
