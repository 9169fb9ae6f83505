"""`opeva get nodes`, `GET /nodes` and `/hosts` against a real `opeva run` on the single Docker engine: this machine is
the one node, with its resources and the job running on it; a placement that does not hold here refuses the job."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from e2e.harness import wait_for

from .conftest import TOKEN, Server
from .test_with_server import apply, job, wait_phase

pytestmark = pytest.mark.docker


def nodes(server: Server) -> list[dict]:
    result = server.cli("get", "nodes", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["items"]


def test_get_nodes_lists_this_machine_with_its_running_job(server: Server, tmp_path: Path):
    apply(server, tmp_path, job("nodes-busy", "sleep 300", {"suite": "nodes"}))
    wait_phase(server, "nodes-busy", phase="Running")
    rows = wait_for(lambda: (n := nodes(server)) and "nodes-busy" in n[0]["jobs"] and n, what="the job on the node")
    (node,) = rows
    assert (node["state"], node["availability"], node["role"], node["online"]) == ("ready", "active", "manager", True)
    assert node["cpus"] > 0 and node["memory"] > 0 and node["hostname"] == socket.gethostname()
    table = server.cli("get", "nodes").stdout
    assert table.split("\n")[0].split()[:4] == ["NAME", "ROLE", "STATE", "AVAILABILITY"]
    assert node["name"] in table and "nodes-busy" in table
    hosts = httpx.get(f"{server.url}/hosts", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert hosts["available_hosts"] == [hosts["available_hosts"][0]]
    assert "nodes-busy" in next(iter(hosts["hosts"].values()))["active_job_ids"]
    assert server.cli("delete", "nodes-busy").returncode == 0


def test_a_placement_that_does_not_hold_here_fails_the_job_with_the_reason(server: Server, tmp_path: Path):
    here = job(
        "nodes-here", "true", {"suite": "nodes"}, placement={"constraints": [f"node.hostname=={socket.gethostname()}"]}
    )
    away = job("nodes-away", "true", {"suite": "nodes"}, placement={"constraints": ["node.labels.gpu==true"]})
    apply(server, tmp_path, here, away)
    wait_phase(server, "nodes-here", phase="Succeeded")
    wait_phase(server, "nodes-away", phase="Failed")
    status = json.loads(server.cli("get", "nodes-away", "-o", "json").stdout)["status"]
    assert (
        status["reason"] == "CreateFailed"
        and "node.labels.gpu==true does not hold on this machine" in status["message"]
    )
