"""What the engine last told us about managed containers, by job.

Filled by a full list at each resync and kept fresh by engine events and our own actions. An entry updated after a
list began is kept even if the list missed it, so a resync racing a create never hides the new container.
"""

from __future__ import annotations

import threading
import time

from .runtime.base import ContainerInfo


class ContainerCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, tuple[float, ContainerInfo | None]] = {}

    def update(self, info: ContainerInfo) -> None:
        with self._lock:
            self._by_name[info.name] = (time.monotonic(), info)

    def drop(self, name: str) -> None:
        with self._lock:
            self._by_name[name] = (time.monotonic(), None)

    def replace_all(self, listed: list[ContainerInfo], started: float) -> None:
        """Replace with a full list taken from `started` on; newer individual updates win."""
        fresh: dict[str, tuple[float, ContainerInfo | None]] = {c.name: (started, c) for c in listed}
        with self._lock:
            for name, (stamp, info) in self._by_name.items():
                if stamp > started:
                    fresh[name] = (stamp, info)
            self._by_name = {k: v for k, v in fresh.items() if v[1] is not None or v[0] > started}

    def get(self, name: str) -> ContainerInfo | None:
        with self._lock:
            entry = self._by_name.get(name)
            return entry[1] if entry else None

    def for_job(self, job: str) -> list[ContainerInfo]:
        with self._lock:
            return sorted(
                (info for _, info in self._by_name.values() if info is not None and info.job == job),
                key=lambda c: c.attempt,
            )

    def all(self) -> list[ContainerInfo]:
        """Every container known, in no order (one pass: it is asked every few seconds)."""
        with self._lock:
            return [info for _, info in self._by_name.values() if info is not None]

    def jobs(self) -> set[str]:
        with self._lock:
            return {info.job for _, info in self._by_name.values() if info is not None}
