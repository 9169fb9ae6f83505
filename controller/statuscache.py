"""The recorded statuses in memory: read at start, then kept in step with every status write.

Jobs that are live (pending, running, or not settled yet) are held as `JobStatus` models. A settled job (finished
or stopped, no container, its last look asked for no other) is held as a `Settled` entry: the stamps of its files
and its job-list row. Its full status is read from disk only if something makes it worth a look again. At start the
settled index (`settledindex`) says which records need not be read at all.

Workers read a job's recorded status from here rather than from disk, and the heartbeat reads phase counts kept as
statuses change, so neither walks thousands of records. `index_dirty` tells the recorder the derived indexes are
stale.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from . import settledindex
from .jobrow import Row, track_row
from .settledindex import Settled, SpecStamp, StatusStamp
from .status import JobStatus
from .store import DataStore

log = structlog.get_logger("opeva.statuses")

SETTLED_PHASES = frozenset({"Succeeded", "Failed", "Stopped"})


def _stamp(path: str) -> StatusStamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class _Records:
    """Where a job's status record is: DATA/.opeva/status/NAME.json, or in a folder from before the record moved
    there, the copy in DATA/jobs/NAME/status.json (what `DataStore.read_status` reads)."""

    def __init__(self, store: DataStore):
        self.records = str(store.state_dir / "status")
        self.jobs = str(store.jobs_dir)

    def stamp(self, name: str) -> StatusStamp | None:
        stamp = _stamp(f"{self.records}/{name}.json")
        return stamp if stamp is not None else _stamp(f"{self.jobs}/{name}/status.json")


class StatusCache:
    def __init__(self, store: DataStore, context: dict[str, Any] | None = None):
        """`context`: the settings a settled job's decision depends on; an index made under others is not used."""
        self.store = store
        self.context = context or {}
        self._statuses: dict[str, JobStatus] = {}
        self._settled: dict[str, Settled] = {}
        self._phases: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._fresh = False  # every settled entry's status record was stamped just now (by `load`)
        self.index_dirty = threading.Event()

    # ---- start ------------------------------------------------------------------------------------------------
    def load(self) -> int:
        """Take each record from the settled index when its status record is unchanged, else read it; returns how
        many records there are."""
        index = settledindex.read(self.store.state_dir, self.context)
        live: dict[str, JobStatus] = {}
        settled: dict[str, Settled] = {}
        stale = 0
        records = _Records(self.store)
        for name in self.store.recorded_jobs():
            entry = index.get(name) if index is not None else None
            if entry is not None:
                if records.stamp(name) == entry.stamp:
                    settled[name] = entry
                    continue
                stale += 1
            st = self.store.read_status(name)
            if st is not None:
                live[name] = st
        with self._lock:
            self._statuses = live
            self._settled = settled
            self._fresh = True
            self._phases = Counter(st.phase for st in live.values())
            self._phases.update(e.phase for e in settled.values())
        log.info(
            "statuses_loaded",
            read=len(live),
            from_index=len(settled),
            stale_in_index=stale,
            index="missing or unusable" if index is None else "used",
        )
        if index is None or stale or len(settled) != len(index):  # else the indexes on disk still hold
            self.index_dirty.set()
        return len(live) + len(settled)

    def spec_stamps(self) -> dict[str, SpecStamp]:
        """Settled job -> the spec file stamp it settled with: those files need not be parsed until looked at."""
        with self._lock:
            return {name: e.spec for name, e in self._settled.items() if e.spec is not None}

    # ---- reads ------------------------------------------------------------------------------------------------
    def get(self, name: str) -> JobStatus | None:
        """A job's recorded status; a settled one is read from disk and becomes live (it is being looked at)."""
        with self._lock:
            st = self._statuses.get(name)
            if st is not None or name not in self._settled:
                return st
        st = self.store.read_status(name)
        with self._lock:
            entry = self._settled.pop(name, None)
            if st is not None:
                self._statuses[name] = st
                self._phases[st.phase] += 1
            if entry is not None:
                self._phases[entry.phase] -= 1
        return st

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._statuses or name in self._settled

    def names(self) -> set[str]:
        with self._lock:
            return set(self._statuses) | set(self._settled)

    def live(self) -> dict[str, JobStatus]:
        """The statuses held as models: every job not settled (all pending and running ones among them)."""
        with self._lock:
            return dict(self._statuses)

    def rows(self) -> Iterator[Row]:
        """Job-list rows of every job, sorted by name."""
        with self._lock:
            live = dict(self._statuses)
            settled = {name: e.row for name, e in self._settled.items()}
        for name in sorted(live.keys() | settled.keys()):
            st = live.get(name)
            yield track_row(st) if st is not None else settled[name]

    def phase_counts(self) -> dict[str, int]:
        """Jobs per phase, kept as statuses change: the heartbeat never walks thousands of records."""
        with self._lock:
            return {phase: n for phase, n in self._phases.items() if n}

    def quiet(self, spec_stamp: Callable[[str], SpecStamp | None], exclude: set[str]) -> set[str]:
        """Settled jobs whose status record and spec file are as they were when they settled: a look at them cannot
        decide anything new, so a full resync skips them. A changed one is left out (and so looked at).

        The status files were all just stamped by `load`, so the first call after it does not stat them again."""
        with self._lock:
            settled = list(self._settled.items())
            restat, self._fresh = not self._fresh, False
        records = _Records(self.store)
        out = set()
        for name, e in settled:
            if name in exclude or spec_stamp(name) != e.spec:
                continue
            if not restat or records.stamp(name) == e.stamp:
                out.add(name)
        return out

    # ---- writes -----------------------------------------------------------------------------------------------
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
            entry = self._settled.pop(name, None)
            if entry is not None:
                self._phases[entry.phase] -= 1
        self.index_dirty.set()

    def settle(self, name: str, spec: SpecStamp | None) -> None:
        """The job's last look asked for no other and it has no container: keep only its stamps and row."""
        with self._lock:
            st = self._statuses.get(name)
        if st is None or st.phase not in SETTLED_PHASES:
            return
        stamp = _Records(self.store).stamp(name)
        if stamp is None:
            return
        entry = Settled(stamp, spec, track_row(st))
        with self._lock:
            if self._statuses.get(name) is st:  # not rewritten meanwhile
                del self._statuses[name]
                self._settled[name] = entry
        self.index_dirty.set()

    def write_indexes(self) -> None:
        """job_track.json (the seed's job list) and the settled index, both derived from the records."""
        self.store.write_job_rows(self.rows())
        with self._lock:
            settled = dict(self._settled)
        settledindex.write(self.store.state_dir, self.context, settled)
