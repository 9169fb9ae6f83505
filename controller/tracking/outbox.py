"""The MLflow outbox: what the controller still owes MLflow, kept in DATA/.opeva/mlflow-outbox/ across restarts.

Layout: one folder per attempt that has (or will have) an MLflow run.

    mlflow-outbox/JOB.RUNKEY.aN.XXXXXX/entry.json     the attempt: identity, run id once known, mirror state, close
    mlflow-outbox/JOB.RUNKEY.aN.XXXXXX/ops/00000001.json   params and metric snapshots, sent in this order
    mlflow-outbox/JOB.RUNKEY.aN.XXXXXX/result.json    a copy of the attempt's result.json, taken when it ended

Every file is written temp + fsync + rename (controller.store), so a crash leaves the old file or the new one.
`entry.json` is written before anything is asked of MLflow (intent first, like status.json), and its `close`
section is written in one write with everything the close needs, so an attempt is either open or closing, never
half-closed. A folder is deleted once MLflow confirmed the run's final status.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ..store import atomic_write_json, read_json

log = structlog.get_logger("opeva.mlflow")

OUTBOX_DIR = "mlflow-outbox"


@dataclass
class Entry:
    """One attempt's MLflow run, from "about to start" to "final status confirmed by MLflow"."""

    id: str  # the folder name
    job: str
    attempt: int
    generation: str
    run_key: str  # decide.run_key(generation, spec runId): one run of the job
    spec_run_id: str | None
    container: str
    experiment: str
    run_name: str
    tags: dict[str, str]
    created_ms: int
    prior_records: int  # history records naming this container when the attempt started (an earlier run's)
    log_offsets: dict[str, int]  # log file name -> its size when the attempt started
    experiment_id: str | None = None
    run_id: str | None = None
    artifact_uri: str | None = None
    step: int = 0  # the last step used for mirrored metrics
    mirror_sig: str | None = None  # the last mirrored values, to send only changes
    close: dict[str, Any] | None = None  # set once: status, end time, final metrics, artifacts, steps done
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def closing(self) -> bool:
        return self.close is not None

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__ if f != "lock"}))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        known = {f for f in cls.__dataclass_fields__ if f != "lock"}
        return cls(**{k: v for k, v in doc.items() if k in known})


class Outbox:
    """The entries in memory, mirrored to disk on every change. Thread-safe."""

    def __init__(self, state_dir: Path):
        self.data_root = state_dir.parent  # DATA/.opeva -> DATA: the root the artifacts are opened beneath
        self.root = state_dir / OUTBOX_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._seq: dict[str, int] = {}

    # ---- loading ----------------------------------------------------------------------------------------------
    def load(self) -> int:
        entries: dict[str, Entry] = {}
        seq: dict[str, int] = {}
        for d in sorted(self.root.iterdir()) if self.root.exists() else []:
            if not d.is_dir() or d.name.startswith("."):
                continue
            doc = read_json(d / "entry.json")
            try:
                entry = Entry.from_json(doc) if isinstance(doc, dict) else None
            except TypeError:
                entry = None
            if entry is None or entry.id != d.name:
                # entry.json is written before anything is asked of MLflow: without it there is nothing to send
                log.warning("mlflow_outbox_entry_unreadable", folder=str(d), action="removed")
                shutil.rmtree(d, ignore_errors=True)
                continue
            entries[entry.id] = entry
            seq[entry.id] = max((int(p.stem) for p in self._op_files(d)), default=0)
        with self._lock:
            self._entries, self._seq = entries, seq
        return len(entries)

    # ---- entries ----------------------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: (e.created_ms, e.id))

    def get(self, entry_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(entry_id)

    def find_open(self, job: str, run_key: str, attempt: int, container: str) -> Entry | None:
        """The open entry of an attempt: one whose run is not closing yet."""
        with self._lock:
            for e in self._entries.values():
                if (e.job, e.run_key, e.attempt, e.container) == (job, run_key, attempt, container) and not e.closing:
                    return e
        return None

    def closing_run_ids(self) -> set[str]:
        with self._lock:
            return {e.run_id for e in self._entries.values() if e.closing and e.run_id}

    def add(self, entry: Entry) -> None:
        with self._lock:
            d = self.root / entry.id
            (d / "ops").mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / "entry.json", entry.to_json())
            self._entries[entry.id] = entry
            self._seq[entry.id] = 0

    def save(self, entry: Entry) -> None:
        with self._lock:
            if entry.id in self._entries:
                atomic_write_json(self.root / entry.id / "entry.json", entry.to_json())

    def remove(self, entry: Entry) -> None:
        with self._lock:
            self._entries.pop(entry.id, None)
            self._seq.pop(entry.id, None)
            shutil.rmtree(self.root / entry.id, ignore_errors=True)

    def path(self, entry: Entry, name: str) -> Path:
        return self.root / entry.id / name

    # ---- operations -------------------------------------------------------------------------------------------
    def append(self, entry: Entry, op: dict[str, Any]) -> None:
        """Queue one operation after all earlier ones of this attempt."""
        with self._lock:
            if entry.id not in self._entries:
                return
            n = self._seq.get(entry.id, 0) + 1
            self._seq[entry.id] = n
            atomic_write_json(self.root / entry.id / "ops" / f"{n:08d}.json", op)

    def pending(self, entry: Entry) -> list[tuple[Path, dict[str, Any]]]:
        """The queued operations of an entry, oldest first; unreadable ones are dropped with a warning."""
        out = []
        for p in self._op_files(self.root / entry.id):
            doc = read_json(p)
            if isinstance(doc, dict):
                out.append((p, doc))
            else:
                log.warning("mlflow_outbox_op_unreadable", file=str(p))
                _unlink(p)
        return out

    def pending_count(self, entry: Entry) -> int:
        return len(self._op_files(self.root / entry.id))

    def done(self, files: list[Path]) -> None:
        for p in files:
            _unlink(p)

    @staticmethod
    def _op_files(d: Path) -> list[Path]:
        try:
            names = os.listdir(d / "ops")
        except OSError:
            return []
        return [d / "ops" / n for n in sorted(names) if n.endswith(".json") and n[:-5].isdigit()]


def new_entry_id(job: str, run_key: str, attempt: int) -> str:
    return f"{job}.{run_key}.a{attempt}.{os.urandom(3).hex()}"


def now_ms() -> int:
    return int(time.time() * 1000)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
