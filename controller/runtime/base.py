"""The one small interface between the controller and a container engine.

Everything the reconciler knows about containers arrives as `ContainerInfo`; everything it asks of the engine goes
through `Runtime`. A Swarm runtime can sit beside the Docker one by implementing the same methods.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

LABEL_JOB = "opeva.job"
LABEL_GENERATION = "opeva.generation"
LABEL_ATTEMPT = "opeva.attempt"
LABEL_RUN = "opeva.run"
LABEL_MANAGED = "opeva.managed"
LABEL_INSTANCE = "opeva.instance"
LABEL_LOG_CAPTURE = "opeva.logCapture"  # "false": the job writes its own log; nothing is captured
LABEL_SOURCE = "opeva.source"  # the run's provenance (git: repoURL, ref, commit, path, digest) as compact JSON


class EngineError(Exception):
    """Base of runtime errors."""


class RuntimeUnavailable(EngineError):
    """The engine does not answer; retried with backoff, never recorded as the job's failure."""


class ImageMissing(EngineError):
    """The image is not local and could not be pulled."""


class NameConflict(EngineError):
    """A container with this attempt's name already exists: someone created it first, so adopt it."""


class CreateRejected(EngineError):
    """The engine refused the container definition (bad network, bad mount, bad option)."""

    reason = "CreateFailed"  # the failed attempt's reason


@dataclass(frozen=True)
class Mount:
    source: str  # a path on the engine's host
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerRequest:
    name: str
    image: str
    labels: dict[str, str]
    env: dict[str, str]
    mounts: tuple[Mount, ...] = ()
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    working_dir: str | None = None
    network: str | None = None
    cpus: float | None = None
    memory: int | None = None
    gpu_ids: tuple[str, ...] = ()
    stop_grace: int = 30
    pull_policy: str = "IfNotPresent"  # Always | IfNotPresent | Never (Kubernetes' meaning); Always is done first
    init: bool = True  # an init process as PID 1 forwards signals to the job and reaps its children
    cap_add: tuple[str, ...] = ()  # every other capability is dropped, and no-new-privileges is set
    user: str | None = None  # uid[:gid] or a name; None = the image's user
    placement: tuple[str, ...] = ()  # Swarm constraints (controller/constraints.py), all of which must hold


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    job: str
    generation: str
    run: str
    attempt: int
    state: str  # created | running | paused | restarting | removing | exited | dead
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stop_grace: int | None = None  # seconds between SIGTERM and SIGKILL, as created
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    cpus: float | None = None  # as created (CPU quota), so reservations can be rebuilt after a restart
    memory: int | None = None  # memory limit in bytes, as created
    gpu_ids: tuple[str, ...] = ()  # GPU device ids of its device requests, as created
    node: str = ""  # the id of the node it runs on (Swarm); "" on a single engine
    # not started because the engine has no place for it yet (Swarm's "no suitable node"): our reason
    # (InsufficientCPU, InsufficientMemory, InsufficientGPU, Unschedulable); the engine's words are in `error`
    waiting: str | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "dead")

    @property
    def source(self) -> dict[str, str] | None:
        """The provenance it was created with (LABEL_SOURCE), or None."""
        try:
            value = json.loads(self.labels.get(LABEL_SOURCE) or "null")
        except ValueError:
            return None
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


@dataclass(frozen=True)
class ContainerStats:
    """Cumulative CPU time and current memory of a container; CPU use is the change between two samples."""

    cpu_seconds: float  # CPU time the container used since it started
    memory: int  # bytes in use, page cache not counted
    memory_limit: int | None = None


NODE_READY = "ready"
NODE_DOWN = "down"


@dataclass(frozen=True)
class NodeInfo:
    """One machine jobs can run on, as the engine reports it: a Swarm node, or this machine on a single engine."""

    id: str
    hostname: str
    state: str = NODE_READY  # ready | down | unknown | disconnected (Swarm's node states)
    availability: str = "active"  # active | pause | drain
    role: str = "manager"  # manager | worker
    labels: dict[str, str] = field(default_factory=dict)  # node labels (docker node update --label-add)
    engine_labels: dict[str, str] = field(default_factory=dict)  # the daemon's own labels (dockerd --label)
    cpus: float = 0.0
    memory: int = 0  # bytes
    gpus: tuple[str, ...] = ()  # GPU ids the node advertises (Swarm: its generic resources of the GPU kind)
    os: str = "linux"
    arch: str = ""
    address: str = ""
    message: str = ""  # Swarm's word on its state ("heartbeat failure")
    leader: bool = False
    engine_version: str = ""
    changed_at: datetime | None = None  # when the engine last changed the node's record (its state, say)

    @property
    def ready(self) -> bool:
        return self.state == NODE_READY

    @property
    def schedulable(self) -> bool:
        """Ready and active: new jobs may go there."""
        return self.ready and self.availability == "active"


@dataclass(frozen=True)
class EngineEvent:
    job: str
    action: str
    container: str


class Runtime(Protocol):
    def ping(self) -> bool: ...

    def daemon_started_at(self) -> datetime | None: ...

    def list(self) -> list[ContainerInfo]: ...

    def inspect(self, name: str) -> ContainerInfo | None: ...

    def create_and_start(self, req: ContainerRequest) -> ContainerInfo: ...

    def pull(self, image: str) -> str | None:
        """Pull `image` now (policy Always). None when pulled; a message when the registry could not be reached and
        the local image will be used; ImageMissing when there is neither."""
        ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, grace: int) -> None: ...

    def remove(self, name: str) -> None: ...

    def events(self) -> Iterator[EngineEvent]: ...

    def logs(self, name: str, since: float | None) -> Iterator[bytes]: ...

    def stats(self, name: str) -> ContainerStats | None:
        """One resource sample of a running container, or None when it is gone."""
        ...

    def nodes(self) -> Sequence[NodeInfo]:
        """The machines jobs can run on: Swarm's nodes, or this machine alone on a single engine."""
        ...


def parse_engine_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; the zero time means 'never'."""
    if not value or value.startswith("0001-01-01"):
        return None
    value = value.rstrip("Z")
    if "." in value:
        head, frac = value.split(".", 1)
        frac = "".join(ch for ch in frac if ch.isdigit())[:6]
        value = f"{head}.{frac}"
    if "+" in value[10:]:
        value = value[: 10 + value[10:].index("+")]
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def timestamp_ns(value: str) -> int:
    """Exact nanoseconds since the epoch from a Docker log timestamp, for cursor comparisons."""
    head, _, frac = value.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
