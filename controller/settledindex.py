"""The settled-jobs index: DATA/.opeva/settled-index.json, so a restart need not read every finished job's record.

A settled job is one whose last look asked for no other (finished or stopped, no container). For each, the index
keeps the stamp of its status.json (mtime, size), the stamp of its spec file at the time it settled, and its row of
the job list. At start a job whose status.json still has the recorded stamp is taken from the index without being
read; any other is read as usual. The index is derived, never the truth: a missing, unreadable, foreign or
mismatching index is ignored (every record is read) and written again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import structlog

from .jobrow import TRACK_FIELDS, Row
from .store import atomic_write_bytes

log = structlog.get_logger("opeva.index")

VERSION = 1
FILE = "settled-index.json"
StatusStamp = tuple[int, int]  # status.json (mtime_ns, size)
SpecStamp = tuple[str, int, int, int]  # spec file relative to the specs folder, (mtime_ns, size, inode)


class Settled:
    """One settled job in memory: its stamps and its list row, nothing else."""

    __slots__ = ("stamp", "spec", "row")

    def __init__(self, stamp: StatusStamp, spec: SpecStamp | None, row: Row):
        self.stamp = stamp
        self.spec = spec
        self.row = row

    @property
    def phase(self) -> str:
        return self.row[4]


def write(state_dir: Path, context: dict[str, Any], settled: dict[str, Settled]) -> None:
    jobs = [[name, *e.stamp, list(e.spec) if e.spec else None, *e.row[1:]] for name, e in settled.items()]
    body = {"version": VERSION, "context": context, "fields": TRACK_FIELDS, "jobs": jobs}
    atomic_write_bytes(state_dir / FILE, json.dumps(body, separators=(",", ":")).encode())


def read(state_dir: Path, context: dict[str, Any]) -> dict[str, Settled] | None:
    """The index, or None when it is missing, unreadable, of another version or made under other settings."""
    path = state_dir / FILE
    try:
        body = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("settled_index_unreadable", file=str(path), error=str(err), action="every record is read")
        return None
    try:
        if body["version"] != VERSION or list(body["fields"]) != list(TRACK_FIELDS):
            raise ValueError("another version")
        if body["context"] != context:
            log.info("settled_index_stale", reason="settings changed", action="every record is read")
            return None
        labels: dict[tuple, dict] = {}
        out: dict[str, Settled] = {}
        n = len(TRACK_FIELDS)
        for item in body["jobs"]:
            name, mtime, size, spec, *rest = item
            if len(rest) != n - 1 or not isinstance(name, str):
                raise ValueError(f"bad entry for {name!r}")
            row = (name, *rest)
            key = tuple(sorted(row[8].items()))  # many jobs share one label set: keep one dict of each
            row = (*row[:8], labels.setdefault(key, row[8]), *row[9:])
            out[name] = Settled((int(mtime), int(size)), tuple(spec) if spec else None, row)
        return out
    except (KeyError, TypeError, ValueError) as err:
        log.warning("settled_index_unreadable", file=str(path), error=str(err), action="every record is read")
        return None
