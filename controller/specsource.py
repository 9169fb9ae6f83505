"""The specs folder as desired state: a cached, recursive scan that says which job names changed.

A file is re-read only when its (mtime, size, inode) changes, so a resync over thousands of specs costs one
directory walk. Files that settled jobs were last decided with (`prime`) are not even parsed at start while their
stamp is the same: they are parsed when their job is looked at. A file that does not parse and was written moments
ago is given a moment to be finished before it is reported, so an editor's non-atomic save does not flash an
InvalidSpec.

A file is taken only once its writer is done, so a slow copy whose first part happens to be a valid spec never
starts a run of that part. With inotify the watcher reports each write and each close-after-write (`file_event`):
a file written to and not yet closed waits for its close (a new file waits CREATED_GRACE for its first write to
be reported). A file renamed into place (write a temp file, then rename) has no write pending and is taken at once.
A folder that is only polled (network shares) reports no closes: there a file is taken once it has been left alone
for QUIET_SECONDS.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from .decide import Desired
from .settledindex import SpecStamp
from .spec import JobManifest, LoadedSpec, load_spec_file, walk_spec_files

log = structlog.get_logger("opeva.specs")

SETTLE_SECONDS = 0.5  # a broken file younger than this may still be being written
QUIET_SECONDS = 1.0  # polled folders: a file changed more recently than this may still be being written
OPEN_WRITE_LIMIT = 5.0  # inotify: a file left open this long after its last write is taken anyway
CREATED_GRACE = 0.25  # inotify: a new file with no write reported yet (its first write may be on its way)
MIN_RECHECK = 0.02  # the soonest another scan is asked for


@dataclass
class ScanResult:
    changed: set[str] = field(default_factory=set)  # names whose desired state changed
    rewritten_same: set[str] = field(default_factory=set)  # files saved again with identical content
    recheck_in: float | None = None  # a young broken file, or one still being written: scan again this soon

    @property
    def unsettled(self) -> bool:
        return self.recheck_in is not None

    def recheck(self, seconds: float) -> None:
        """Ask for another scan once the soonest waiting file may be whole (a moved-in file waits 0.25 s, not a
        fixed 0.5 s)."""
        seconds = max(seconds, MIN_RECHECK)
        self.recheck_in = seconds if self.recheck_in is None else min(self.recheck_in, seconds)


class SpecSource:
    """`provenance(root)`, when given, says where the folder's files come from (a git commit: controller/gitsource.py);
    each job's desired state carries it with the file's path and digest. `settle`: how long a young broken file is
    given to be finished before it counts."""

    def __init__(
        self,
        specs_dir: Path,
        data_dir: Path,
        provenance: Callable[[str], dict[str, str] | None] | None = None,
        settle: float = SETTLE_SECONDS,
    ):
        self.specs_dir = specs_dir
        self.data_dir = data_dir
        self.provenance = provenance
        self._origin: dict[str, str] | None = None  # the provenance of the folder last built
        self.settle = settle  # 0 for a git tree: its files are whole before the folder flips to them
        self._files: dict[str, tuple[tuple[int, int, int], LoadedSpec | None]] = {}  # None: not parsed yet
        self._desired: dict[str, Desired] = {}
        self._deferred: dict[str, str] = {}  # job name -> path of its spec file, not parsed yet
        self._known: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> (stamp, job name) from `prime`
        self._deferred_names: dict[str, str] = {}  # path -> job name, for files not parsed yet
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        # path -> (monotonic time, how long it may wait) of its last creation or write, until its writer closes it
        self._writing: dict[str, tuple[float, float]] = {}
        self._closes_reported = False  # inotify: wait for closes; else (polled) a quiet period
        self._quiet: float | None = None

    def watched(self, closes_reported: bool) -> None:
        """How the folder is watched: with inotify a file waits for its writer's close; polled, for quiet."""
        self._closes_reported = closes_reported
        self._quiet = None if closes_reported else QUIET_SECONDS

    def file_event(self, kind: str, path: str, dest: str | None = None) -> None:
        """A watcher saw `kind` (watchdog's event type) on a file: track which files a writer still has open."""
        if kind == "modified":
            self._writing[path] = (time.monotonic(), OPEN_WRITE_LIMIT)
        elif kind == "created":  # by open(): writes and a close follow; moved in from elsewhere: nothing follows
            self._writing[path] = (time.monotonic(), CREATED_GRACE)
        elif kind in ("closed", "deleted", "moved"):
            self._writing.pop(path, None)
            if dest is not None:
                self._writing.pop(dest, None)

    def _write_wait(self, path: str, mtime: float, now: float) -> float:
        """Seconds until the file may be taken as whole (0: now): its writer's close, else a quiet period."""
        if self._closes_reported:
            last = self._writing.get(path)
            return 0.0 if last is None else last[0] + last[1] - time.monotonic()
        return 0.0 if self._quiet is None else mtime + self._quiet - now

    def prime(self, known: dict[str, SpecStamp]) -> None:
        """Before the first scan: job name -> the spec file stamp it settled with. Such a file, found unchanged,
        is not parsed until its job is looked at."""
        root = str(self.specs_dir)
        self._known = {f"{root}/{rel}": ((m, size, ino), name) for name, (rel, m, size, ino) in known.items()}

    def desired(self, name: str) -> Desired:
        with self._lock:
            d = self._desired.get(name)
            path = self._deferred.get(name) if d is None else None
        if d is not None:
            return d
        return Desired(name) if path is None else self._parse_deferred(name, path)

    def _parse_deferred(self, name: str, path: str) -> Desired:
        loaded = load_spec_file(Path(path), self.specs_dir)
        d = self._desired_of(loaded, path[len(str(self.specs_dir)) + 1 :])
        with self._lock:
            entry = self._files.get(path)
            if self._deferred.get(name) == path and entry is not None and loaded.name == name:
                self._files[path] = (entry[0], loaded)
                self._desired[name] = d
                del self._deferred[name]
        return d if loaded.name == name else Desired(name)

    def names(self) -> set[str]:
        with self._lock:
            return set(self._desired) | set(self._deferred)

    def stamp(self, name: str) -> SpecStamp | None:
        """The job's spec file (relative path, mtime_ns, size, inode) as last scanned; None without one."""
        with self._lock:
            d = self._desired.get(name)
            path = os.path.join(str(self.specs_dir), d.spec_file) if d is not None and d.spec_file else None
            path = path or self._deferred.get(name)
            entry = self._files.get(path) if path else None
        if path is None or entry is None:
            return None
        return (path[len(str(self.specs_dir)) + 1 :], *entry[0])

    def scan(self) -> ScanResult:
        """One scan at a time (the watcher and the resync both scan), so an older view never replaces a newer."""
        with self._scan_lock:
            return self._scan()

    def _scan(self) -> ScanResult:
        result = ScanResult()
        seen: dict[str, tuple[tuple[int, int, int], LoadedSpec | None]] = {}
        now = time.time()
        touched = False  # any file added, changed or removed since the last scan
        # The folder may be a symlink that is flipped to another tree (git): resolve it once, so one scan reads one
        # tree whole, whatever happens to the link meanwhile.
        root = os.path.realpath(self.specs_dir) if self.provenance is not None else str(self.specs_dir)
        for entry in walk_spec_files(Path(root)):
            try:
                st = entry.stat()
            except OSError:
                continue
            path = entry.path
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            old = self._files.get(path)
            if old is not None and old[0] == sig:
                seen[path] = old
                continue
            known = self._known.pop(path, None)
            if old is None and known is not None and known[0] == sig:
                seen[path] = (sig, None)  # as its settled job last saw it: parsed when the job is looked at
                self._deferred_names[path] = known[1]
                continue
            wait = self._write_wait(path, st.st_mtime, now)
            if wait > 0:
                result.recheck(wait)
                if old is not None:
                    seen[path] = old
                continue
            loaded = load_spec_file(Path(path), Path(root))
            if loaded.error and now - st.st_mtime < self.settle:
                result.recheck(st.st_mtime + self.settle - now)
                if old is not None:
                    seen[path] = old
                continue
            touched = True
            if old is not None and old[1] is not None and old[1] == loaded:
                result.rewritten_same.add(loaded.name)
            seen[path] = (sig, loaded)
        touched = touched or seen.keys() != self._files.keys()
        # nothing touched: the names stay, only a configFile may have appeared or gone since
        if touched:
            desired, deferred = self._build(seen, root)
        else:
            desired, deferred = self._recheck_config(self._desired), self._deferred
        with self._lock:
            previous, previous_deferred = self._desired, self._deferred
            self._files = seen
            self._desired = desired
            self._deferred = deferred
        if desired is not previous or deferred is not previous_deferred:
            for name in set(previous) | set(desired) | set(previous_deferred) | set(deferred):
                if name in deferred and name not in previous and name not in previous_deferred:
                    continue  # first seen as its settled job last saw it (`prime`): no change
                if previous.get(name) != desired.get(name) or previous_deferred.get(name) != deferred.get(name):
                    result.changed.add(name)
        result.rewritten_same -= result.changed
        return result

    def _config_missing(self, m: JobManifest | None) -> str | None:
        if m is not None and m.spec.configFile and not (self.data_dir / m.spec.configFile).is_file():
            return f"configFile {m.spec.configFile} does not exist in the data folder"
        return None

    def _recheck_config(self, desired: dict[str, Desired]) -> dict[str, Desired]:
        """The same desired state, or a copy where a job's configFile appeared or went."""
        out = desired
        for name, d in desired.items():
            if d.manifest is not None and d.manifest.spec.configFile:
                missing = self._config_missing(d.manifest)
                if missing != d.config_missing:
                    out = dict(out) if out is desired else out
                    out[name] = dataclasses.replace(d, config_missing=missing)
        return out

    def _build(
        self, files: dict[str, tuple[tuple[int, int, int], LoadedSpec | None]], folder: str
    ) -> tuple[dict[str, Desired], dict[str, str]]:
        """Name -> desired state, and name -> path of files not parsed yet. Two files naming one job: the first
        path in sorted order wins, loudly."""
        out: dict[str, Desired] = {}
        deferred: dict[str, str] = {}
        root = len(folder) + 1
        self._origin = self.provenance(folder) if self.provenance is not None else None
        for path in sorted(files):
            loaded = files[path][1]
            rel = path[root:]
            name = loaded.name if loaded is not None else self._deferred_names[path]
            existing = out.get(name)
            if existing is not None or name in deferred:
                kept = existing.spec_file if existing is not None else deferred[name][root:]
                log.warning("duplicate_job_name", job=name, file=rel, kept=kept)
                continue
            if loaded is None:
                deferred[name] = path
            else:
                out[name] = self._desired_of(loaded, rel)
        return out, deferred

    def _desired_of(self, loaded: LoadedSpec, rel: str) -> Desired:
        return Desired(
            loaded.name,
            manifest=loaded.manifest,
            error=loaded.error,
            spec_file=rel,
            config_missing=self._config_missing(loaded.manifest),
            source=None
            if self._origin is None
            else {**self._origin, "path": os.path.join(self._origin["path"], rel), "digest": loaded.digest or ""},
        )


def job_names(folder: Path) -> set[str]:
    """The job names a folder's spec files define, read now (an invalid file counts under the name it gives)."""
    root = os.path.realpath(folder)
    return {load_spec_file(Path(entry.path), Path(root)).name for entry in walk_spec_files(root)}
