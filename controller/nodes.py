"""The nodes jobs run on, as the controller follows them: which are lost to their attempts, which it refuses (they do
not see the data folder), and what capacity the rest add up to.

Swarm keeps a task of a node that stopped answering `Running` for as long as a day. The controller instead takes a
node that has been down for longer than the settle time (or that was drained) as lost: the decision learns that as a
fact (`Facts.lost_nodes`), records the attempt there as interrupted and runs the job again elsewhere. The pure
parts (`lost_nodes`, `node_rows`) take values; `NodeWatch` keeps the little state (since when a node is down, the
probe's verdicts) and is refreshed by the controller's node loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from .capacity import Capacity
from .constraints import exclude_node
from .runtime.base import ContainerInfo, NodeInfo, Runtime, RuntimeUnavailable
from .status import iso, utcnow

log = structlog.get_logger("opeva.nodes")

DEFAULT_SETTLE = 30.0  # seconds a node stays down before its attempts are given up
PROBE_RETRY_SECONDS = 60.0  # a node that failed the data-folder probe is tried again this often


class DataProbe(Protocol):
    """Checks which nodes see the data folder (controller/runtime/swarmnodes.py does it with one task per node)."""

    def __call__(self, nodes: list[NodeInfo]) -> dict[str, str | None]:
        """Node id -> None when the node sees the folder, else why not."""
        ...


def node_label(n: NodeInfo) -> str:
    return f"{n.hostname} ({n.id[:12]})" if n.hostname else n.id[:12]


def lost_nodes(
    nodes: Iterable[NodeInfo], down_since: Mapping[str, datetime], now: datetime, settle: float
) -> dict[str, str]:
    """Nodes whose attempts are given up without them (node id -> why): down for `settle` seconds or more."""
    out = {}
    for n in nodes:
        if not n.ready and n.id in down_since and (now - down_since[n.id]).total_seconds() >= settle:
            said = f": {n.message}" if n.message else ""
            out[n.id] = f"node {node_label(n)} has been {n.state} since {iso(down_since[n.id])}{said}"
    return out


def drained_nodes(nodes: Iterable[NodeInfo]) -> dict[str, str]:
    """Nodes drained by an operator (node id -> why). Swarm moves no job task off them (20.10): the controller stops
    the attempt there and runs the job again elsewhere."""
    return {n.id: f"node {node_label(n)} was drained" for n in nodes if n.availability == "drain" and n.ready}


def node_names(nodes: list[NodeInfo]) -> dict[str, str]:
    """Node id -> the name clients see (`/hosts`, target_host): the host name, or `HOST-ID` when several nodes
    share one host name."""
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.hostname] = counts.get(n.hostname, 0) + 1
    return {n.id: n.hostname if counts[n.hostname] == 1 else f"{n.hostname}-{n.id[:12]}" for n in nodes}


@dataclass
class NodeState:
    """What the controller knows of the nodes at one moment."""

    nodes: list[NodeInfo] = field(default_factory=list)
    down_since: dict[str, datetime] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    drained: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # node id -> why the data-folder probe failed
    probed: dict[str, datetime] = field(default_factory=dict)  # node id -> when it was last probed


def node_rows(state: NodeState, containers: Iterable[ContainerInfo], runtime: str) -> list[dict[str, Any]]:
    """The nodes as the heartbeat carries them to the API (`/hosts`, `/nodes`), with the jobs running on each."""
    nodes = state.nodes
    names = node_names(nodes)
    only = nodes[0].id if len(nodes) == 1 else ""
    jobs: dict[str, list[str]] = {}
    for c in containers:
        if c.running and c.job:
            jobs.setdefault(c.node or only, []).append(c.job)
    rows = []
    for n in nodes:
        conditions = []
        if runtime == "swarm":
            refused = state.refused.get(n.id)
            conditions.append(
                {
                    "type": "DataFolder",
                    "status": "Unknown" if n.id not in state.probed else "False" if refused else "True",
                    "message": refused or ("sees the data folder" if n.id in state.probed else "not checked yet"),
                }
            )
        rows.append(
            {
                "id": n.id,
                "name": names[n.id],
                "hostname": n.hostname,
                "role": n.role,
                "leader": n.leader,
                "state": n.state,
                "availability": n.availability,
                "message": n.message,
                "address": n.address,
                "labels": dict(n.labels),
                "engineLabels": dict(n.engine_labels),
                "cpus": n.cpus,
                "memory": n.memory,
                "gpus": list(n.gpus),
                "engineVersion": n.engine_version,
                "downSince": iso(state.down_since.get(n.id)),
                "lost": state.lost.get(n.id) or state.drained.get(n.id),
                "schedulable": n.schedulable and n.id not in state.refused,
                "conditions": conditions,
                "jobs": sorted(jobs.get(n.id, [])),
            }
        )
    return rows


class NodeWatch:
    """The nodes, refreshed by the controller's node loop; thread-safe reads for the reconciler and the heartbeat.

    `capacity_of` turns the usable nodes into the scheduler's capacity (None: the capacity is this machine's,
    detected once, as on a single engine); `probe` checks new nodes for the data folder (None: not checked)."""

    def __init__(
        self,
        runtime: Runtime,
        kind: str = "docker",
        settle: float = DEFAULT_SETTLE,
        capacity_of: Callable[[list[NodeInfo], set[str]], Capacity] | None = None,
        probe: DataProbe | None = None,
    ):
        self.runtime = runtime
        self.kind = kind
        self.settle = settle
        self.capacity_of = capacity_of
        self.probe = probe
        self._state = NodeState()
        self._lock = threading.Lock()

    @property
    def state(self) -> NodeState:
        return self._state

    def lost(self) -> dict[str, str]:
        return self._state.lost

    def drained(self) -> dict[str, str]:
        return self._state.drained

    def exclusions(self) -> tuple[str, ...]:
        """Constraints keeping jobs off the nodes the probe refused."""
        return tuple(exclude_node(node) for node in sorted(self._state.refused))

    def refresh(self, now: datetime | None = None) -> tuple[set[str], Capacity | None]:
        """List the nodes again: the nodes newly lost or drained, and the capacity when it is to be replaced (else
        None). An engine that does not answer changes nothing (its outage is the loop's business)."""
        now = now or utcnow()
        try:
            nodes = list(self.runtime.nodes())
        except RuntimeUnavailable:
            return set(), None
        with self._lock:
            old = self._state
            returned = {n.id for n in nodes if n.ready and n.id in old.down_since}
            down_since = {}
            for n in nodes:
                if not n.ready:
                    seen = old.down_since.get(n.id, now)
                    down_since[n.id] = min(seen, n.changed_at) if n.changed_at else seen
            state = NodeState(
                nodes=nodes,
                down_since=down_since,
                lost=lost_nodes(nodes, down_since, now, self.settle),
                drained=drained_nodes(nodes),
                refused={k: v for k, v in old.refused.items() if any(n.id == k for n in nodes)},
                # a node that comes back (a reboot, a restarted daemon) is checked again: its mounts may have changed
                probed={k: v for k, v in old.probed.items() if any(n.id == k for n in nodes) and k not in returned},
            )
            self._probe(state, now)
            self._state = state
        for node, why in state.lost.items():
            if node not in old.lost:
                log.warning("node_lost", node=node, message=why)
        for node in old.lost:
            if node not in state.lost and any(n.id == node for n in nodes):
                log.info("node_back", node=node)
        capacity = self.capacity_of(nodes, set(state.refused)) if self.capacity_of is not None else None
        return (set(state.lost) - set(old.lost)) | (set(state.drained) - set(old.drained)), capacity

    def _probe(self, state: NodeState, now: datetime) -> None:
        """Ready nodes not checked yet (new, or back from being down), and refused ones again after a while, run the
        data-folder probe."""
        if self.probe is None:
            return
        due = [
            n
            for n in state.nodes
            if n.ready
            and (
                n.id not in state.probed
                or (n.id in state.refused and (now - state.probed[n.id]).total_seconds() >= PROBE_RETRY_SECONDS)
            )
        ]
        if not due:
            return
        verdicts = self.probe(due)
        for n in due:
            if n.id not in verdicts:
                continue  # not answered (the engine went away): tried again next time
            why = verdicts[n.id]
            state.probed[n.id] = now
            if why is None:
                if state.refused.pop(n.id, None) is not None:
                    log.info("node_data_folder_ok", node=n.id, hostname=n.hostname)
            else:
                if n.id not in state.refused:
                    log.error(
                        "node_data_folder_missing",
                        node=n.id,
                        hostname=n.hostname,
                        message=f"node {node_label(n)} does not see the data folder; no job is placed there: {why}",
                    )
                state.refused[n.id] = why

    def rows(self, containers: Iterable[ContainerInfo]) -> list[dict[str, Any]]:
        return node_rows(self._state, containers, self.kind)

    def jobs_on(self, nodes: set[str], containers: Iterable[ContainerInfo]) -> set[str]:
        """Jobs with a live container on one of `nodes`."""
        return {c.job for c in containers if c.job and c.node in nodes and (c.running or c.state == "created")}
