"""The machines jobs run on, as the OPEVA clients see them, read from the controller's heartbeat.

The old backend had worker agents on several hosts, each sending heartbeats. Here the controller writes the nodes its
runtime reports into its heartbeat: on a single Docker engine that is this machine alone, and a submission's
`target_host` must name it; on Swarm it is every node, and `target_host` names the node the job must run on (it
becomes a placement constraint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.constraints import on_node
from controller.status import utcnow
from controller.store import DataStore

from .errors import CannotRunHere, UnknownHost
from .heartbeat import read_heartbeat

LOCAL_NAMES = frozenset({"local", "localhost"})
ANY_HOST = frozenset({"", "auto", "any"})
HPC_TARGETS = frozenset({"deucalion"})  # the old backend's Slurm target; it cannot run here


@dataclass(frozen=True)
class LocalHost:
    """The controller's machine, and the nodes of its runtime, from its last heartbeat."""

    name: str | None  # None: no controller has ever written a heartbeat here
    online: bool
    last_seen: float | None  # epoch seconds, as the old backend reported it
    gpus: tuple[str, ...] = ()
    capacity: dict[str, Any] = field(default_factory=dict)
    beat: dict[str, Any] = field(default_factory=dict)
    runtime: str = "docker"
    nodes: tuple[dict[str, Any], ...] = ()  # controller/nodes.py `node_rows`

    @classmethod
    def read(cls, store: DataStore) -> LocalHost:
        heartbeat = read_heartbeat(store)
        beat, age = heartbeat.data, heartbeat.age
        name = beat.get("host") if isinstance(beat.get("host"), str) else None
        summary = beat.get("capacity") if isinstance(beat.get("capacity"), dict) else {}
        capacity = summary.get("capacity") if isinstance(summary.get("capacity"), dict) else {}
        gpus = capacity.get("gpus") if isinstance(capacity.get("gpus"), list) else []
        nodes = beat.get("nodes") if isinstance(beat.get("nodes"), list) else []
        return cls(
            name=name,
            online=heartbeat.alive,
            last_seen=None if age is None else utcnow().timestamp() - age,
            gpus=tuple(str(g) for g in gpus),
            capacity=summary,
            beat=beat,
            runtime="swarm" if beat.get("runtime") == "swarm" else "docker",
            nodes=tuple(n for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)),
        )

    @property
    def clustered(self) -> bool:
        return self.runtime == "swarm"

    @property
    def names(self) -> frozenset[str]:
        return LOCAL_NAMES | ({self.name} if self.name else set())

    def node_online(self, node: dict[str, Any]) -> bool:
        return self.online and node.get("state") == "ready"

    def find_node(self, wanted: str) -> dict[str, Any] | None:
        """A node by the name /hosts shows, its host name when no other node shares it, or its id (or a prefix of
        12 or more characters)."""
        for key in ("name", "hostname"):
            found = [n for n in self.nodes if n.get(key) == wanted]
            if len(found) == 1:
                return found[0]
        if len(wanted) >= 12:
            found = [n for n in self.nodes if str(n.get("id", "")).startswith(wanted)]
            if len(found) == 1:
                return found[0]
        return None

    def check_target(self, target: str | None) -> str | None:
        """The host a submission asked for, checked: None for any host, else the node's (or this machine's) name."""
        wanted = (target or "").strip()
        if wanted.lower() in ANY_HOST:
            return None
        if wanted.lower() in HPC_TARGETS:
            where = "its Swarm nodes" if self.clustered else f"its own Docker engine ({self.name or 'local'})"
            raise CannotRunHere(
                f"target_host {wanted!r} is an HPC (Slurm) target; this service runs jobs only on {where}. "
                "Submit without target_host, or name one of /hosts."
            )
        if self.clustered:
            node = self.find_node(wanted)
            if node is None:
                names = sorted(str(n.get("name")) for n in self.nodes)
                raise UnknownHost(f"Unknown host {wanted!r}. Allowed: {names} (the Swarm nodes), or empty for any")
            return str(node["name"])
        if wanted not in self.names:
            raise UnknownHost(f"Unknown host {wanted!r}. Allowed: {sorted(self.names)}")
        return self.name or wanted

    def placement_for(self, target: str | None) -> list[str]:
        """The placement constraint a checked target means: on Swarm the node's host name (its id when the host
        name is shared); none on a single engine, where every job runs here anyway."""
        node = self.find_node(target) if target and self.clustered else None
        if node is None:
            return []
        shared = sum(1 for n in self.nodes if n.get("hostname") == node.get("hostname")) > 1
        return [on_node(node_id=str(node["id"])) if shared else on_node(hostname=str(node["hostname"]))]

    def gpus_for_target(self, target: str | None) -> tuple[str, ...]:
        """GPUs one job may get: this machine's; on Swarm the named node's, or with none named the most any one
        node has (a job runs on one node)."""
        if not self.clustered:
            return self.gpus
        node = self.find_node(target) if target else None
        candidates = [node] if node is not None else list(self.nodes)
        return max((tuple(str(g) for g in n.get("gpus") or []) for n in candidates), key=len, default=())
