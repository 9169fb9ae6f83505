"""The settled-jobs index: DATA/.opeva/settled-index.json, so a restart need not read every finished job's record.

A settled job is one whose last look asked for no other (finished or stopped, no container). For each, the index
keeps the stamp of its status record (mtime, size), the stamp of its spec file at the time it settled, and its row of
the job list. At start a job whose status record still has the recorded stamp is taken from the index without being
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

VERSION = 2
FILE = "settled-index.json"
LABELS, OUTCOMES = TRACK_FIELDS.index("labels"), TRACK_FIELDS.index("outcomes")
StatusStamp = tuple[int, int]  # the status record (mtime_ns, size)
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
    """Label sets and outcome counts repeat across thousands of jobs: each distinct one is written once, in a table,
    and rows refer to it by position (smaller file, faster start, one shared dict of each in memory)."""
    tables: dict[int, dict[str, int]] = {LABELS: {}, OUTCOMES: {}}
    shared: dict[int, list[Any]] = {LABELS: [], OUTCOMES: []}
    by_id: dict[tuple[int, int], int] = {}  # rows share their dicts: each shared one is encoded once, not per row

    def ref(col: int, value: dict) -> int:
        i = by_id.get((col, id(value)))  # the rows keep every dict alive while this runs: an id is never reused
        if i is not None:
            return i
        key = json.dumps(value, sort_keys=True)
        i = tables[col].get(key)
        if i is None:
            i = tables[col][key] = len(shared[col])
            shared[col].append(value)
        by_id[(col, id(value))] = i
        return i

    jobs = []
    for e in settled.values():
        row = list(e.row)
        row[LABELS], row[OUTCOMES] = ref(LABELS, row[LABELS]), ref(OUTCOMES, row[OUTCOMES])
        jobs.append([*e.stamp, list(e.spec) if e.spec else None, *row])
    body = {
        "version": VERSION,
        "context": context,
        "fields": TRACK_FIELDS,
        "labels": shared[LABELS],
        "outcomes": shared[OUTCOMES],
        "jobs": jobs,
    }
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
        labels, outcomes = body["labels"], body["outcomes"]
        out: dict[str, Settled] = {}
        width = len(TRACK_FIELDS) + 3
        for item in body["jobs"]:
            if len(item) != width or not isinstance(item[3], str):
                raise ValueError(f"bad entry {item[:4]!r}")
            mtime, size, spec, *row = item
            row[LABELS], row[OUTCOMES] = labels[row[LABELS]], outcomes[row[OUTCOMES]]
            out[row[0]] = Settled((mtime, size), tuple(spec) if spec else None, tuple(row))
        return out
    except (KeyError, TypeError, ValueError, IndexError) as err:
        log.warning("settled_index_unreadable", file=str(path), error=str(err), action="every record is read")
        return None
