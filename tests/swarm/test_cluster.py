"""The harness itself: three Ready nodes that place by label, run the test image offline and leave no trace."""

from __future__ import annotations

import time

import docker
import pytest
from docker.types import RestartPolicy, ServiceMode

from .cluster import NODE_LABEL, SwarmCluster

pytestmark = pytest.mark.swarm


def test_three_ready_nodes_with_their_labels(swarm_cluster: SwarmCluster):
    assert swarm_cluster.node_states() == {"n1": "Ready", "n2": "Ready", "n3": "Ready"}
    client = docker.DockerClient(base_url=swarm_cluster.manager_url)
    labels = {n.attrs["ID"]: n.attrs["Spec"]["Labels"].get(NODE_LABEL) for n in client.nodes.list()}
    assert labels == {n.node_id: n.name for n in swarm_cluster.nodes}
    roles = {n.attrs["ID"]: n.attrs["Spec"]["Role"] for n in client.nodes.list()}
    assert roles[swarm_cluster.manager.node_id] == "manager"
    assert sorted(roles.values()) == ["manager", "worker", "worker"]


def test_a_job_placed_by_label_runs_on_that_node(swarm_cluster: SwarmCluster):
    client = docker.DockerClient(base_url=swarm_cluster.manager_url)
    service = client.services.create(
        "opeva-test/busybox:latest",
        ["sh", "-c", "echo placed; exit 3"],
        name=f"harness-{int(time.time() * 1000)}",
        mode=ServiceMode("replicated-job", replicas=1),
        restart_policy=RestartPolicy(condition="none"),
        constraints=[swarm_cluster.constraint("n3")],
        networks=[],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            tasks = service.tasks()
            if tasks and tasks[0]["Status"]["State"] in ("complete", "failed", "rejected"):
                break
            assert time.monotonic() < deadline, f"task not done: {tasks}"
            time.sleep(0.1)
        task = tasks[0]
        assert task["Status"]["State"] == "failed"
        assert task["Status"]["ContainerStatus"]["ExitCode"] == 3
        assert task["NodeID"] == swarm_cluster.node("n3").node_id
        assert b"placed" in b"".join(service.logs(stdout=True, stderr=True))
    finally:
        service.remove()
