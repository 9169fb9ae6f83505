"""The rows of `GET /jobs`, kept as encoded JSON and rebuilt only when what they are made of changes.

A row is the index row plus the job's info (the controller's record in `.opeva/jobinfo/NAME.json`, the job's own
`job_info.json` and whether `config.resolved.yaml` exists) plus durations. Building one reads two files, so a listing
of 10,000 jobs that rebuilt every row on every poll cost seconds; here an unchanged row costs a dictionary look-up.

When a row is rebuilt:
- its index row changed (a new `job_track.json` brings a new phase, attempt, times...);
- its controller record changed: records are renamed into `.opeva/jobinfo/`, which moves that folder's mtime, so
  while the folder's stamp is the one a row was checked under, no record is stat'ed at all;
- for a running job (its container may write), its own `job_info.json` or `config.resolved.yaml` changed (both
  stat'ed on every listing; a pending or finished job has no container, and a finished job's last writes came before
  the index showed its final phase);
- its durations run on (no `finished_at` yet): recomputed once per LIVE_TICK seconds, not per request.
A file or folder changed less than RACY_SECONDS ago is not trusted by its stamp (a second write within the same
timestamp tick would keep it), so the row is checked again next time, as git does for racily clean files.

The array of a listing is kept too: while the index version, the query, the records folder and the running jobs' own
files are as they were, it is served without looking at any row, and its tag (for the ETag) stays the same.
Memory is bounded: past MAX_ROWS cached rows the oldest are dropped (rebuilt when asked for).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from controller.jobpaths import JOB_INFO_FILE
from controller.status import FINAL_PHASES
from controller.store import DataStore

from .seedviews import RESOLVED_CONFIG

LIVE_TICK = 5.0  # open durations (a job not finished) advance in steps of this many seconds
RACY_SECONDS = 1.0
MAX_ROWS = 20_000
MAX_LISTINGS = 4  # arrays kept (each as large as its rows): a few queries polled at once

Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode), None when missing
UNTRUSTED = (-1, -1, -1)  # never equal to a real stamp


def stamp(path: str) -> Stamp:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _settled(s: Stamp, now_ns: int) -> bool:
    """True when a stamp can be trusted to move with the next change (not written within the racy window)."""
    return s is None or now_ns - s[0] > RACY_SECONDS * 1e9


def _may_write(row: dict[str, Any]) -> bool:
    """A job whose container may be writing its own files: Running (a pending job has none yet; it is listed as
    Running, and rebuilt, once the controller indexed its start)."""
    return row.get("phase") not in FINAL_PHASES and row.get("phase") != "Pending"


@dataclass
class _Row:
    name: str
    source: dict[str, Any]  # the index row it was built from
    record: Stamp
    own: tuple[Stamp, Stamp]  # the job's job_info.json and config.resolved.yaml (checked only while not finished)
    checked_under: Stamp  # the records folder's stamp this row's record was last checked under
    tick: int | None  # the LIVE_TICK its open durations were computed in; None when they do not run on
    data: bytes
    still: bool  # nothing but the index row and the record can change it (no container, durations not running on)


@dataclass
class _Listing:
    source: weakref.ref[Any]  # not kept alive here: an index version of 100,000 rows is large
    trusted: Stamp
    version: int
    tick: int | None  # set when a row's durations run on: the array is good for this tick only
    watched: list[tuple[str, tuple[Stamp, Stamp]]]  # running jobs' own files, as they were
    body: bytes
    tag: str


class ListRows:
    """Encoded list rows, one per job, thread-safe; `build(row)` makes a row's object (the expensive part)."""

    def __init__(self, store: DataStore, build: Callable[[dict[str, Any]], dict[str, Any]], max_rows: int = MAX_ROWS):
        self.store = store
        self.build = build
        self.max_rows = max_rows
        self._records = str(store.state_dir / "jobinfo")
        self._jobs = str(store.jobs_dir)
        self._rows: dict[str, _Row] = {}
        self._listings: dict[Hashable, _Listing] = {}  # the last arrays built, by query
        self._lock = threading.Lock()
        self._version = 0
        self._nonce = secrets.token_hex(4)  # versions of another process (or an earlier one) never match ours

    def listing(self, source: object, key: Hashable, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
        """The JSON array of these rows, and a tag that changes whenever the array does.

        `source` (the index version the rows come from, compared by identity) and `key` (the query) name the listing:
        while they, the records folder and the version stay the same, and no running job's own files moved, the
        array built last time is returned without looking at each row."""
        now_ns = time.time_ns()
        tick = int(now_ns / 1e9 / LIVE_TICK)
        folder = stamp(self._records)
        trusted = folder if _settled(folder, now_ns) else UNTRUSTED
        with self._lock:
            last = self._listings.get(key)
            if (
                last is not None
                and last.source() is source
                and last.trusted == trusted
                and last.version == self._version
                and last.tick in (None, tick)
                and all(self._own(name) == own for name, own in last.watched)
            ):
                return last.body, last.tag
            parts = self._encoded(rows, trusted, tick, now_ns)
            body = b"[" + b",".join(parts) + b"]"
            h = hashlib.blake2b(f"{self._nonce}.{self._version}".encode(), digest_size=12)
            h.update("\n".join(row["name"] for row in rows).encode())
            self._listings.pop(key, None)
            cached = [self._rows.get(row["name"]) for row in rows] if trusted is not UNTRUSTED else [None]
            if all(c is not None and c.checked_under == trusted for c in cached):  # nothing racy in it
                watched = [(c.name, c.own) for c in cached if c is not None and not c.still]
                ticking = any(c is not None and c.tick is not None for c in cached)
                self._listings[key] = _Listing(
                    weakref.ref(source), trusted, self._version, tick if ticking else None, watched, body, h.hexdigest()
                )
                while len(self._listings) > MAX_LISTINGS:
                    del self._listings[next(iter(self._listings))]
            return body, h.hexdigest()

    def _encoded(self, rows: list[dict[str, Any]], trusted: Stamp, tick: int, now_ns: int) -> list[bytes]:
        """Each row's JSON, from the cache where nothing it is made of changed (`_version` moves if any changed)."""
        out: list[bytes] = []
        get, append = self._rows.get, out.append
        for row in rows:
            name = row["name"]
            c = get(name)
            if c is not None and c.source is row and c.still and c.checked_under == trusted:
                append(c.data)  # the common case: a settled row, nothing changed in the records folder
            elif c is not None and self._fresh(c, row, trusted, tick, now_ns):
                append(c.data)
            else:
                append(self._rebuild(name, row, c, trusted, tick, now_ns).data)
        self._trim()
        return out

    def _fresh(self, c: _Row, row: dict[str, Any], trusted: Stamp, tick: int, now_ns: int) -> bool:
        if c.source is not row and c.source != row:
            return False
        if c.tick is not None and c.tick != tick:
            return False
        if trusted is UNTRUSTED or c.checked_under != trusted:
            record = stamp(self._record_path(row["name"]))
            if record != c.record or not _settled(record, now_ns):
                return False
            c.checked_under = trusted
        if not c.still and _may_write(row) and self._own(row["name"]) != c.own:
            return False
        c.source = row  # the same content in a newer index version: compare by identity next time
        return True

    def _rebuild(
        self, name: str, row: dict[str, Any], old: _Row | None, trusted: Stamp, tick: int, now_ns: int
    ) -> _Row:
        record = stamp(self._record_path(name))
        own = self._own(name)  # stamped before reading, so a write during the read is seen next time
        item = self.build(row)
        data = json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        info = item.get("job_info") or {}
        running_on = not info.get("finished_at") and bool(info.get("submitted_at") or info.get("started_at"))
        settled = _settled(record, now_ns) and all(_settled(s, now_ns) for s in own)
        still = not running_on and not _may_write(row)
        new = _Row(name, row, record, own, trusted, tick if running_on else None, data, still)
        if not settled:
            new.record = new.checked_under = UNTRUSTED  # checked (and rebuilt) on the next listing
        if old is None or old.data != data:
            self._version += 1
        self._rows.pop(name, None)
        self._rows[name] = new  # at the end: the oldest rows are dropped first
        return new

    def _record_path(self, name: str) -> str:
        return f"{self._records}/{name}.json"

    def _own(self, name: str) -> tuple[Stamp, Stamp]:
        folder = f"{self._jobs}/{name}"
        return stamp(f"{folder}/{JOB_INFO_FILE}"), stamp(f"{folder}/{RESOLVED_CONFIG}")

    def _trim(self) -> None:
        excess = len(self._rows) - self.max_rows
        if excess > 0:
            for name in list(self._rows)[:excess]:
                del self._rows[name]
