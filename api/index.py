"""The job list index: `DATA/job_track.json` (written by the controller), parsed once per change and queried in memory.

The file is re-read only when its mtime, size or inode change, so a page of `GET /jobs` costs a filter over a list in
memory, not one file per job. When the file does not exist yet (no controller ever ran on this folder) the index is
built from the per-job status files instead, and cached for a couple of seconds.

Read-your-writes: the controller rewrites the file every few seconds, so a job whose spec this API has just written
is listed from that write (phase Pending) until the file has it.
"""

from __future__ import annotations

import bisect
import heapq
import os
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from controller.selectors import Selector, labels_match
from controller.spec import JobManifest, is_valid_name
from controller.status import PHASES, SEED_STATUS, seed_word
from controller.store import DataStore, read_json

SCAN_TTL = 2.0
WAIT_PARSE = 0.05  # seconds: a parse that took longer is done in the background next time (see `snapshot`)
SUBMITTED_TTL = 60.0  # seconds a written job is listed before the controller has indexed it (no controller running)


def _entry(name: str, raw: Any) -> dict[str, Any]:
    """One index row in a fixed shape, whatever the file held (the seed wrote a bare container id per job)."""
    if not isinstance(raw, dict):
        return {
            "job_id": name,
            "name": name,
            "status": "unknown",
            "phase": None,
            "reason": None,
            "attempts": None,
            "labels": {},
            "updated_at": None,
            "container_id": raw if isinstance(raw, str) else None,
            "container_name": None,
            "queue_position": None,
            "submitted_at": None,
            "started_at": None,
            "finished_at": None,
            "outcomes": {},
        }
    phase = raw.get("phase") if isinstance(raw.get("phase"), str) else None
    labels = raw.get("labels") if isinstance(raw.get("labels"), dict) else {}
    status = raw.get("status")

    def opt_str(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    attempts = raw.get("attempts")
    position = raw.get("queue_position")
    return {
        "job_id": name,
        "name": name,
        "status": status if isinstance(status, str) else SEED_STATUS.get(phase or "", "unknown"),
        "phase": phase,
        "reason": opt_str("reason"),
        "attempts": attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
        "labels": {str(k): str(v) for k, v in labels.items()},
        "updated_at": opt_str("updated_at"),
        "container_id": opt_str("container_id"),
        "container_name": opt_str("container_name"),
        "queue_position": position if isinstance(position, int) and not isinstance(position, bool) else None,
        "submitted_at": opt_str("submitted_at"),
        "started_at": opt_str("started_at"),
        "finished_at": opt_str("finished_at"),
        "outcomes": _counts(raw.get("outcomes")),
    }


def _counts(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _entry_from_status(name: str, status: dict[str, Any]) -> dict[str, Any]:
    phase = status.get("phase")
    return _entry(
        name,
        {
            "status": seed_word(phase, status.get("stopping") is not None) if isinstance(phase, str) else "unknown",
            "phase": phase,
            "reason": status.get("reason"),
            "attempts": status.get("attempts"),
            "labels": status.get("labels"),
            "updated_at": status.get("updatedAt"),
            "container_id": status.get("containerId"),
            "container_name": status.get("containerName"),
            "queue_position": status.get("queuePosition"),
            "submitted_at": status.get("submittedAt"),
            "started_at": status.get("startedAt"),
            "finished_at": status.get("finishedAt"),
            "outcomes": _history_outcomes(status),
        },
    )


def _history_outcomes(status: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    history = status.get("history")
    for record in history if isinstance(history, list) else ():
        if isinstance(record, dict) and isinstance(record.get("outcome"), str):
            counts[record["outcome"]] = counts.get(record["outcome"], 0) + 1
    return counts


@dataclass
class Snapshot:
    """One parsed version of the index, sorted by name."""

    names: list[str] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    phase_counts: dict[str, int] = field(default_factory=dict)
    source: str = "empty"  # job_track | status-files | empty
    by_phase: dict[str | None, list[int]] = field(default_factory=dict)  # phase -> positions in entries
    _by_label: dict[tuple[str, str | None], list[int]] | None = None  # built on the first label query

    def with_label(self, key: str, value: str | None) -> list[int]:
        """Positions (ascending) of the entries that have label `key` (with `value`, unless None): a selector over
        100,000 jobs looks at the few that can match, not at every row."""
        by_label = self._by_label
        if by_label is None:  # two threads may both build it: the same result, either is kept
            by_label = {}
            for i, row in enumerate(self.entries):
                for k, v in row["labels"].items():
                    by_label.setdefault((k, v), []).append(i)
                    by_label.setdefault((k, None), []).append(i)
            self._by_label = by_label
        return by_label.get((key, value), [])


def _build(rows: dict[str, dict[str, Any]], source: str) -> Snapshot:
    names = sorted(rows)
    entries = [rows[n] for n in names]
    by_phase: dict[str | None, list[int]] = {}
    for i, row in enumerate(entries):
        by_phase.setdefault(row["phase"], []).append(i)
    counts = {p: len(by_phase.get(p, ())) for p in PHASES}
    return Snapshot(names, entries, counts, source, by_phase)


def _find(snap: Snapshot, name: str) -> dict[str, Any] | None:
    i = bisect.bisect_left(snap.names, name)
    return snap.entries[i] if i < len(snap.names) and snap.names[i] == name else None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int  # matching jobs, all pages together
    next_after: str | None  # the `continue` token for the next page, None on the last page


class JobIndex:
    """Cached, thread-safe view of all jobs for listing and counting."""

    def __init__(self, store: DataStore, scan_ttl: float = SCAN_TTL):
        self.store = store
        self.path = store.root / "job_track.json"
        self.scan_ttl = scan_ttl
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._snap = Snapshot()
        self._refresh_lock = threading.Lock()
        self._refreshing = False
        self._submitted: dict[str, tuple[dict[str, Any], float]] = {}  # name -> (row, when), not yet indexed
        self._submitted_lock = threading.Lock()
        self._parse_seconds = 0.0  # how long the last parse took

    # ---- written through this API, not indexed yet (a SpecListener) ---------------------------------------------
    def written(self, manifest: JobManifest) -> None:
        row = _entry(
            manifest.name,
            {"status": SEED_STATUS["Pending"], "phase": "Pending", "labels": dict(manifest.metadata.labels)},
        )
        with self._submitted_lock:
            self._submitted[manifest.name] = (row, time.monotonic())

    def deleted(self, name: str) -> None:
        with self._submitted_lock:
            self._submitted.pop(name, None)

    def _with_submitted(self, snap: Snapshot) -> Snapshot:
        now = time.monotonic()
        with self._submitted_lock:
            for name, (_, at) in list(self._submitted.items()):
                if _find(snap, name) is not None or now - at > SUBMITTED_TTL:
                    del self._submitted[name]
            extra = {name: row for name, (row, _) in self._submitted.items()}
        if not extra:
            return snap
        return _build(dict(zip(snap.names, snap.entries, strict=True)) | extra, snap.source)

    # ---- the index ----------------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The current version. When the file changed and parsing it took longer than WAIT_PARSE last time (a large
        folder), the previous version is returned while a background thread parses the new one, as with
        `snapshot_nowait`: a poll of the first page is not held up by a re-parse of 100,000 rows. The index is a few
        seconds behind the records by design; jobs written or deleted through this API show at once either way."""
        if self._parse_seconds > WAIT_PARSE:
            return self.snapshot_nowait()
        return self._current()

    def _current(self) -> Snapshot:
        snap = self._indexed()
        return self._with_submitted(snap) if self._submitted else snap

    def _indexed(self) -> Snapshot:
        key = self._source_key()
        if key == self._key:
            return self._snap
        with self._lock:
            key = self._source_key()
            if key != self._key:
                t0 = time.perf_counter()
                self._snap = self._load(key)
                self._key = key
                self._parse_seconds = time.perf_counter() - t0
            return self._snap

    def snapshot_nowait(self) -> Snapshot:
        """Like `snapshot`, but when the file changed since the last parse, the previous version is returned while a
        background thread parses the new one: a metrics scrape or a dashboard poll never waits for a re-parse of
        10,000 jobs (the next one sees the new version). Only the very first parse is waited for."""
        if self._key is None or self._source_key() == self._key:
            return self._current()
        with self._refresh_lock:
            if not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="index-refresh", daemon=True).start()
        return self._with_submitted(self._snap) if self._submitted else self._snap

    def _refresh(self) -> None:
        try:
            self._current()
        finally:
            with self._refresh_lock:
                self._refreshing = False

    def _source_key(self) -> tuple[Any, ...]:
        try:
            st = os.stat(self.path)
            return ("job_track", st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return ("scan", int(time.monotonic() / self.scan_ttl))

    def _load(self, key: tuple[Any, ...]) -> Snapshot:
        rows: dict[str, dict[str, Any]] = {}
        if key[0] == "job_track":
            data = read_json(self.path)
            if isinstance(data, dict):
                rows = {n: _entry(n, raw) for n, raw in data.items() if isinstance(n, str) and is_valid_name(n)}
            source = "job_track"
        else:
            for name in self.store.recorded_jobs():
                status = read_json(self.store.status_path(name))
                if isinstance(status, dict):
                    rows[name] = _entry_from_status(name, status)
            source = "status-files"
        return _build(rows, source)

    def get(self, name: str) -> dict[str, Any] | None:
        return _find(self.snapshot(), name)

    def query(
        self,
        phases: set[str] | None = None,
        labels: Selector | None = None,
        limit: int | None = None,
        after: str | None = None,
        snap: Snapshot | None = None,
    ) -> Page:
        """Jobs matching every filter, sorted by name, the page after `after` (a name, the `continue` token), in
        `snap` (default: the current version)."""
        snap = snap or self.snapshot()
        start = bisect.bisect_right(snap.names, after) if after else 0
        if not phases and not labels:
            total = len(snap.entries)
            end = len(snap.entries) if limit is None else min(len(snap.entries), start + limit)
            window = snap.entries[start:end]
            return Page(window, total, window[-1]["name"] if window and end < total else None)

        if not labels:  # phases only: merge their position lists, count without looking at rows
            lists = [snap.by_phase.get(p, []) for p in sorted(phases or ())]
            total = sum(len(positions) for positions in lists)
            merged = heapq.merge(*(islice(ps, bisect.bisect_left(ps, start), None) for ps in lists))
            picked: list[int] = list(islice(merged, None if limit is None else limit + 1))
            more = limit is not None and len(picked) > limit
            found = [snap.entries[i] for i in picked[:limit]]
            return Page(found, total, found[-1]["name"] if found and more else None)
        total = 0
        items: list[dict[str, Any]] = []
        more = False
        for i in min((snap.with_label(k, v) for k, v in labels), key=len):  # the rarest requirement's jobs
            row = snap.entries[i]
            if (phases and row["phase"] not in phases) or not labels_match(row["labels"], labels):
                continue
            total += 1
            if i < start:
                continue
            if limit is None or len(items) < limit:
                items.append(row)
            else:
                more = True
        return Page(items, total, items[-1]["name"] if items and more else None)
