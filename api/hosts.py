"""This machine as the OPEVA clients see it: one host, described by the controller's heartbeat.

The old backend had worker agents on several hosts, each sending heartbeats; here the controller runs jobs on its own
engine, so `/hosts` lists this machine (named by the heartbeat), and a submission's `target_host` must name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.status import utcnow
from controller.store import DataStore

from .errors import CannotRunHere, UnknownHost
from .heartbeat import read_heartbeat

LOCAL_NAMES = frozenset({"local", "localhost"})
ANY_HOST = frozenset({"", "auto", "any"})
HPC_TARGETS = frozenset({"deucalion"})  # the old backend's Slurm target; it cannot run here


@dataclass(frozen=True)
class LocalHost:
    """The controller's machine, from its last heartbeat."""

    name: str | None  # None: no controller has ever written a heartbeat here
    online: bool
    last_seen: float | None  # epoch seconds, as the old backend reported it
    gpus: tuple[str, ...] = ()
    capacity: dict[str, Any] = field(default_factory=dict)
    beat: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, store: DataStore) -> LocalHost:
        heartbeat = read_heartbeat(store)
        beat, age = heartbeat.data, heartbeat.age
        name = beat.get("host") if isinstance(beat.get("host"), str) else None
        summary = beat.get("capacity") if isinstance(beat.get("capacity"), dict) else {}
        capacity = summary.get("capacity") if isinstance(summary.get("capacity"), dict) else {}
        gpus = capacity.get("gpus") if isinstance(capacity.get("gpus"), list) else []
        return cls(
            name=name,
            online=heartbeat.alive,
            last_seen=None if age is None else utcnow().timestamp() - age,
            gpus=tuple(str(g) for g in gpus),
            capacity=summary,
            beat=beat,
        )

    @property
    def names(self) -> frozenset[str]:
        return LOCAL_NAMES | ({self.name} if self.name else set())

    def check_target(self, target: str | None) -> str | None:
        """The host a submission asked for, checked: None for any host, else this machine's name."""
        wanted = (target or "").strip()
        if wanted.lower() in ANY_HOST:
            return None
        if wanted.lower() in HPC_TARGETS:
            raise CannotRunHere(
                f"target_host {wanted!r} is an HPC (Slurm) target; this service runs jobs only on its own Docker "
                f"engine ({self.name or 'local'}). Submit without target_host, or to {self.name or 'local'!r}."
            )
        if wanted not in self.names:
            raise UnknownHost(f"Unknown host {wanted!r}. Allowed: {sorted(self.names)}")
        return self.name or wanted
