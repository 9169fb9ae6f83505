"""The recorded statuses in memory: read once at start, then kept in step with every status write.

Workers read a job's recorded status from here rather than from disk, and the heartbeat reads phase counts kept as
statuses change, so neither walks thousands of records. `index_dirty` tells the recorder the derived index is stale.
"""

from __future__ import annotations

import threading
from collections import Counter

from .status import JobStatus
from .store import DataStore


class StatusCache:
    def __init__(self, store: DataStore):
        self.store = store
        self._statuses: dict[str, JobStatus] = {}
        self._phases: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.index_dirty = threading.Event()

    def load(self) -> int:
        """Read every recorded status; returns how many were readable."""
        loaded = {}
        for name in self.store.recorded_jobs():
            st = self.store.read_status(name)
            if st is not None:
                loaded[name] = st
        with self._lock:
            self._statuses = loaded
            self._phases = Counter(st.phase for st in loaded.values())
        self.index_dirty.set()
        return len(loaded)

    def get(self, name: str) -> JobStatus | None:
        with self._lock:
            return self._statuses.get(name)

    def all(self) -> dict[str, JobStatus]:
        with self._lock:
            return dict(self._statuses)

    def phase_counts(self) -> dict[str, int]:
        """Jobs per phase, kept as statuses change: the heartbeat never walks thousands of records."""
        with self._lock:
            return {phase: n for phase, n in self._phases.items() if n}

    def put(self, new: JobStatus, old: JobStatus | None) -> None:
        """`new` was written over `old` (None: a new record)."""
        with self._lock:
            self._statuses[new.name] = new
            self._phases[new.phase] += 1
            if old is not None:
                self._phases[old.phase] -= 1
        self.index_dirty.set()

    def drop(self, name: str) -> None:
        """The record was collected."""
        with self._lock:
            st = self._statuses.pop(name, None)
            if st is not None:
                self._phases[st.phase] -= 1
        self.index_dirty.set()
