"""Swarm's nodes for the controller: the node list as `NodeInfo`, and the start-up check that every node sees the
shared data folder (one short probe task per node).

The probe: the controller writes a marker with a fresh nonce under DATA/.opeva/probe; a replicated-job task pinned to
each node bind-mounts that folder from the node's own disk, checks that it reads the same marker, and answers with a
file the controller must then see. A node whose folder is missing, or is another folder (a local directory instead
of the NFS mount), fails; the controller keeps jobs off it.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from docker import errors as derr
from docker.types import ContainerSpec, Placement, RestartPolicy, ServiceMode, TaskTemplate
from docker.types import Mount as DockerMount

from .base import NodeInfo, RuntimeUnavailable, parse_engine_time

LABEL_PROBE = "opeva.probe"  # on probe services: the data folder's id (never a job's labels, so never listed as one)
PROBE_TIMEOUT = 30.0
PROBE_POLL = 0.3
PROBE_FAILED_EXIT = 3
TERMINAL_TASK_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})


def generic_ids(resources: list[dict[str, Any]] | None, kind: str) -> tuple[str, ...]:
    """The ids a node advertises for one generic-resource kind: named ones (`NVIDIA-GPU=GPU-1a2b`) as named,
    a discrete count (`NVIDIA-GPU=2`) as 0..N-1."""
    ids: list[str] = []
    for r in resources or []:
        named, discrete = r.get("NamedResourceSpec"), r.get("DiscreteResourceSpec")
        if named and named.get("Kind") == kind:
            ids.append(str(named.get("Value")))
        elif discrete and discrete.get("Kind") == kind:
            ids.extend(str(i) for i in range(int(discrete.get("Value") or 0)))
    return tuple(ids)


def node_info(attrs: dict[str, Any], gpu_kind: str) -> NodeInfo:
    """A node as `GET /nodes` describes it."""
    spec, desc, status = attrs.get("Spec") or {}, attrs.get("Description") or {}, attrs.get("Status") or {}
    res, platform, engine = desc.get("Resources") or {}, desc.get("Platform") or {}, desc.get("Engine") or {}
    return NodeInfo(
        id=attrs["ID"],
        hostname=desc.get("Hostname") or "",
        state=status.get("State") or "unknown",
        availability=spec.get("Availability") or "active",
        role=spec.get("Role") or "worker",
        labels=dict(spec.get("Labels") or {}),
        engine_labels=dict(engine.get("Labels") or {}),
        cpus=(res.get("NanoCPUs") or 0) / 1e9,
        memory=int(res.get("MemoryBytes") or 0),
        gpus=generic_ids(res.get("GenericResources"), gpu_kind),
        os=platform.get("OS") or "linux",
        arch=platform.get("Architecture") or "",
        address=status.get("Addr") or "",
        message=status.get("Message") or "",
        leader=bool((attrs.get("ManagerStatus") or {}).get("Leader")),
        engine_version=engine.get("EngineVersion") or "",
        changed_at=parse_engine_time(attrs.get("UpdatedAt")),
    )


def swarm_nodes(api: Any, gpu_kind: str) -> list[NodeInfo]:
    """Every node of the swarm (the engine must be a manager)."""
    try:
        listed = api.nodes()
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        raise RuntimeUnavailable(f"Docker engine unreachable: {err}") from err
    except derr.APIError as err:
        raise RuntimeUnavailable(f"list nodes: {err.explanation or err}") from err
    return sorted((node_info(n, gpu_kind) for n in listed), key=lambda n: (n.role != "manager", n.hostname, n.id))


class SwarmDataProbe:
    """`probe(nodes)` -> node id -> None (sees the data folder) or why not. See the module docstring."""

    def __init__(self, api: Any, data_dir: Path, host_data_dir: Path, image: str, instance: str):
        self.api = api
        self.local = data_dir / ".opeva" / "probe"  # as the controller sees it
        self.remote = host_data_dir / ".opeva" / "probe"  # as every node must see it
        self.image = image
        self.instance = instance

    def __call__(self, nodes: list[NodeInfo]) -> dict[str, str | None]:
        if not nodes:
            return {}
        self.local.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(8)
        marker = self.local / nonce
        marker.write_text(nonce)
        try:
            with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
                verdicts = dict(zip((n.id for n in nodes), pool.map(lambda n: self._one(n, nonce), nodes), strict=True))
        finally:
            marker.unlink(missing_ok=True)
            for n in nodes:
                (self.local / f"{nonce}.{n.id}").unlink(missing_ok=True)
        return {node: why for node, (answered, why) in verdicts.items() if answered}

    def _one(self, node: NodeInfo, nonce: str) -> tuple[bool, str | None]:
        """(answered, why not): answered is False when the engine itself could not be asked."""
        name = f"opeva-probe-{self.instance}-{node.id[:12]}-{nonce[:8]}"
        script = (
            f'test "$(cat /probe/{nonce} 2>/dev/null)" = {nonce} || exit {PROBE_FAILED_EXIT}; '
            f"echo {node.id} > /probe/{nonce}.{node.id}"
        )
        template = TaskTemplate(
            ContainerSpec(
                self.image,
                command=["sh", "-c", script],
                mounts=[DockerMount(target="/probe", source=str(self.remote), type="bind")],
            ),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=[f"node.id=={node.id}"]),
        )
        try:
            self.api.create_service(
                template, name=name, labels={LABEL_PROBE: self.instance}, mode=ServiceMode("replicated-job", replicas=1)
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, derr.APIError):
            return False, None
        try:
            task = self._wait(name)
        finally:
            try:
                self.api.remove_service(name)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, derr.APIError):
                pass
        return True, self._verdict(node, nonce, task)

    def _wait(self, service: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + PROBE_TIMEOUT
        task = None
        while time.monotonic() < deadline:
            tasks = self.api.tasks(filters={"service": service})
            task = tasks[0] if tasks else None
            if task is not None and (task.get("Status") or {}).get("State") in TERMINAL_TASK_STATES:
                return task
            time.sleep(PROBE_POLL)
        return task

    def _verdict(self, node: NodeInfo, nonce: str, task: dict[str, Any] | None) -> str | None:
        status = (task or {}).get("Status") or {}
        state = status.get("State")
        answer = self.local / f"{nonce}.{node.id}"
        if state == "complete" and answer.is_file() and answer.read_text().strip() == node.id:
            return None
        where = f"{self.remote} on node {node.hostname or node.id}"
        if state == "complete":
            return f"the probe wrote its answer under {where}, and the controller does not see it: another folder"
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        if state == "failed" and exit_code == PROBE_FAILED_EXIT:
            return f"{where} is another folder: the controller's marker is not there (mount the shared folder there)"
        if state in TERMINAL_TASK_STATES:
            return f"the probe task could not run there ({state}): {status.get('Err') or status.get('Message') or '?'}"
        return f"the probe task did not finish within {PROBE_TIMEOUT:g} s (state {state or 'not created'})"
