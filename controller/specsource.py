"""The specs folder as desired state: a cached, recursive scan that says which job names changed.

A file is re-read only when its (mtime, size, inode) changes, so a resync over thousands of specs costs one
directory walk. A file that does not parse and was written moments ago is given a moment to be finished before it
is reported, so an editor's non-atomic save does not flash an InvalidSpec.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from .decide import Desired
from .spec import LoadedSpec, is_spec_file, load_spec_file

log = structlog.get_logger("opeva.specs")

SETTLE_SECONDS = 0.5  # a broken file younger than this may still be being written


@dataclass
class ScanResult:
    changed: set[str] = field(default_factory=set)  # names whose desired state changed
    rewritten_same: set[str] = field(default_factory=set)  # files saved again with identical content
    unsettled: bool = False  # a young broken file: scan again shortly


class SpecSource:
    def __init__(self, specs_dir: Path, data_dir: Path):
        self.specs_dir = specs_dir
        self.data_dir = data_dir
        self._files: dict[Path, tuple[tuple[int, int, int], LoadedSpec]] = {}
        self._desired: dict[str, Desired] = {}
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()

    def desired(self, name: str) -> Desired:
        with self._lock:
            return self._desired.get(name) or Desired(name)

    def names(self) -> set[str]:
        with self._lock:
            return set(self._desired)

    def scan(self) -> ScanResult:
        """One scan at a time (the watcher and the resync both scan), so an older view never replaces a newer."""
        with self._scan_lock:
            return self._scan()

    def _scan(self) -> ScanResult:
        result = ScanResult()
        seen: dict[Path, tuple[tuple[int, int, int], LoadedSpec]] = {}
        now = time.time()
        for path in self._walk():
            try:
                st = path.stat()
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            old = self._files.get(path)
            if old is not None and old[0] == sig:
                seen[path] = old
                continue
            loaded = load_spec_file(path, self.specs_dir)
            if loaded.error and now - st.st_mtime < SETTLE_SECONDS:
                result.unsettled = True
                if old is not None:
                    seen[path] = old
                continue
            if old is not None and old[1] == loaded:
                result.rewritten_same.add(loaded.name)
            seen[path] = (sig, loaded)
        desired = self._build(seen)
        with self._lock:
            previous = self._desired
            self._files = seen
            self._desired = desired
        for name in set(previous) | set(desired):
            if previous.get(name) != desired.get(name):
                result.changed.add(name)
        result.rewritten_same -= result.changed
        return result

    def _walk(self):
        """Spec files under the folder; hidden folders are not entered, symlinked folders not followed."""
        for dirpath, dirnames, filenames in os.walk(self.specs_dir, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            base = Path(dirpath)
            for fn in filenames:
                if is_spec_file(Path(fn)):
                    yield base / fn

    def _build(self, files: dict[Path, tuple[tuple[int, int, int], LoadedSpec]]) -> dict[str, Desired]:
        """Name -> desired state. Two files naming one job: the first path in sorted order wins, loudly."""
        out: dict[str, Desired] = {}
        for path in sorted(files):
            loaded = files[path][1]
            rel = str(path.relative_to(self.specs_dir))
            existing = out.get(loaded.name)
            if existing is not None:
                log.warning("duplicate_job_name", job=loaded.name, file=rel, kept=existing.spec_file)
                continue
            config_missing = None
            m = loaded.manifest
            if m is not None and m.spec.configFile and not (self.data_dir / m.spec.configFile).is_file():
                config_missing = f"configFile {m.spec.configFile} does not exist in the data folder"
            out[loaded.name] = Desired(loaded.name, manifest=m, error=loaded.error, spec_file=rel,
                                       config_missing=config_missing)
        return out
