"""An in-memory `Runtime` for fast reconciler tests: containers are dicts, nothing runs.

It keeps the engine's contract where the reconciler depends on it: names are unique (a second create of one name is
a `NameConflict`), a missing image is `ImageMissing`, a stopped container exits with 143, `inspect` of an unknown
name is None. A test moves time on by calling `exit` or `output`. It never stands in for the engine in end-to-end
tests.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from controller.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_GENERATION,
    LABEL_JOB,
    LABEL_RUN,
    ContainerInfo,
    ContainerRequest,
    EngineEvent,
    ImageMissing,
    NameConflict,
    NodeInfo,
    RuntimeUnavailable,
)


def _now() -> datetime:
    return datetime.now(UTC)


class FakeRuntime:
    def __init__(self, images: frozenset[str] | None = None, started_at: datetime | None = None):
        """`images`: the images that exist (None: every image does)."""
        self.images = images
        self.started_at = started_at or _now()
        self.containers: dict[str, ContainerInfo] = {}
        self.requests: dict[str, ContainerRequest] = {}
        self.output_of: dict[str, list[bytes]] = {}
        self.creates: list[str] = []  # every name a create was asked for, conflicts included
        self.pulls: list[str] = []  # images pulled first (imagePullPolicy Always)
        self.fail_after_create = False  # the next create makes the container, then the engine goes away
        self._lock = threading.Lock()

    # ---- what a test does ---------------------------------------------------------------------------------
    def exit(self, name: str, code: int) -> None:
        with self._lock:
            c = self.containers[name]
            self.containers[name] = dataclasses.replace(c, state="exited", exit_code=code, finished_at=_now())

    def output(self, name: str, line: str) -> None:
        stamp = _now().strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        self.output_of.setdefault(name, []).append(f"{stamp} {line}\n".encode())

    # ---- the Runtime protocol -----------------------------------------------------------------------------
    def ping(self) -> bool:
        return True

    def daemon_started_at(self) -> datetime | None:
        return self.started_at

    def list(self) -> list[ContainerInfo]:
        with self._lock:
            return list(self.containers.values())

    def inspect(self, name: str) -> ContainerInfo | None:
        with self._lock:
            return self.containers.get(name)

    def pull(self, image: str) -> str | None:
        """No registry: an image that exists is used as it is (with a note, as the Docker runtime gives)."""
        if self.images is not None and image not in self.images:
            raise ImageMissing(f"no such image: {image}")
        self.pulls.append(image)
        return f"could not pull {image} (no registry); using the local image"

    def create_and_start(self, req: ContainerRequest) -> ContainerInfo:
        with self._lock:
            self.creates.append(req.name)
            if req.name in self.containers:
                raise NameConflict(req.name)
            if self.images is not None and req.image not in self.images:
                raise ImageMissing(f"no such image: {req.image}")
            now = _now()
            info = ContainerInfo(
                id=f"fake-{len(self.creates)}",
                name=req.name,
                job=req.labels[LABEL_JOB],
                generation=req.labels[LABEL_GENERATION],
                run=req.labels[LABEL_RUN],
                attempt=int(req.labels[LABEL_ATTEMPT]),
                state="running",
                created_at=now,
                started_at=now,
                stop_grace=req.stop_grace,
                labels=dict(req.labels),
                cpus=req.cpus,
                memory=req.memory,
                gpu_ids=req.gpu_ids,
            )
            self.containers[req.name] = info
            self.requests[req.name] = req
            if self.fail_after_create:
                self.fail_after_create = False
                raise RuntimeUnavailable("the engine went away after the create")
            return info

    def start(self, name: str) -> None:
        with self._lock:
            c = self.containers[name]
            self.containers[name] = dataclasses.replace(c, state="running", started_at=_now())

    def stop(self, name: str, grace: int) -> None:
        if (c := self.inspect(name)) is not None and c.running:
            self.exit(name, 143)

    def remove(self, name: str) -> None:
        with self._lock:
            self.containers.pop(name, None)

    def events(self) -> Iterator[EngineEvent]:
        return iter(())

    def logs(self, name: str, since: float | None) -> Iterator[bytes]:
        yield from list(self.output_of.get(name, []))

    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(id="fake", hostname="fake", cpus=4.0, memory=2**32)]
