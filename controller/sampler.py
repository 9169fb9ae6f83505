"""What running jobs report and use, sampled while they run: the progress history and the resource history.

A job rewrites `progress/progress.json` as it goes, so only its latest value survives; the controller keeps the
history, one line per change it sees, in `DATA/.opeva/history/NAME/progress.jsonl` (out of the job's reach).
Every few seconds it also asks the engine for each running container's CPU and memory, and `nvidia-smi` (when the
machine has one) for the GPUs the job holds, and keeps a short history in `resources.jsonl` beside it; the latest
sample of each running job goes into the heartbeat for the API's /metrics.

Both files are bounded: past MAX_PROGRESS_POINTS the progress history is thinned to every other point (the whole
curve, coarser); the resource history keeps its newest MAX_RESOURCE_POINTS.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import metrics
from .hooks import call_hook
from .jobfiles import UnsafeFile, parse_job_json
from .jobpaths import PROGRESS_FILE
from .runtime.base import Runtime, RuntimeUnavailable
from .status import JobStatus, iso, utcnow
from .store import DataStore, atomic_write_bytes

log = structlog.get_logger("opeva.sampler")

PROGRESS_SECONDS = 1.0  # how often progress.json is looked at (a stat per running job)
RESOURCE_EVERY = 5  # resource samples every Nth progress look
MAX_PROGRESS_POINTS = 2000
MAX_RESOURCE_POINTS = 360  # 30 minutes at one sample every 5 s
MAX_PROGRESS_BYTES = 1024 * 1024
MAX_SERIES = 50  # numeric fields kept per progress point


def history_path(store: DataStore, name: str, kind: str) -> Path:
    """DATA/.opeva/history/NAME/KIND.jsonl (kind: progress or resources): in the controller's state, since a job
    can write its whole folder; removed with the job's record."""
    store.job_dir(name)  # validates the name
    return store.state_dir / "history" / name / f"{kind}.jsonl"


def progress_values(doc: Any) -> dict[str, float]:
    """The numbers in a progress document, nested keys joined by dots (`metrics.reward`), at most MAX_SERIES."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if len(out) >= MAX_SERIES:
            return
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            if math.isfinite(value):
                out[prefix] = float(value)
        elif isinstance(value, dict) and depth < 3:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)

    if isinstance(doc, dict):
        walk("", doc, 0)
    return out


@dataclass
class _Seen:
    progress_key: tuple[int, int] | None = None
    progress_values: dict[str, float] | None = None
    progress_lines: int | None = None
    resource_lines: int | None = None
    cpu: tuple[float, float] | None = None  # (monotonic time, cpu seconds) of the last sample
    container: str | None = None


@dataclass
class Sampler:
    """Samples the running jobs from its own thread; `latest` holds the newest resource sample per running job."""

    store: DataStore
    runtime: Runtime
    running: Callable[[], list[JobStatus]]
    on_sample: Callable[[str, str, dict[str, Any]], None] | None = None  # e.g. MLflow system metrics
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _tick: int = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_SECONDS):
            try:
                self.sample(resources=self._tick % RESOURCE_EVERY == 0)
            except Exception:
                log.exception("sample_failed")
            self._tick += 1

    def sample(self, resources: bool = True) -> None:
        jobs = [s for s in self.running() if s.phase == "Running" and s.containerName]
        gpus = gpu_usage() if resources and any(s.gpuIds for s in jobs) else {}
        latest = {}
        for st in jobs:
            seen = self._seen.setdefault(st.name, _Seen())
            self._progress(st.name, seen)
            if resources:
                sample = self._resources(st, seen, gpus)
                if sample is not None:
                    latest[st.name] = sample
            elif st.name in self.latest:
                latest[st.name] = self.latest[st.name]
        names = {s.name for s in jobs}
        for gone in set(self._seen) - names:
            del self._seen[gone]
        self.latest = latest

    # ---- progress ---------------------------------------------------------------------------------------------
    def _progress(self, name: str, seen: _Seen) -> None:
        path = self.store.progress_path(name)
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == seen.progress_key or st.st_size > MAX_PROGRESS_BYTES:
            return
        seen.progress_key = key
        try:
            f = self.store.open_job_file(path, MAX_PROGRESS_BYTES)  # the job wrote it: see jobfiles
        except OSError:  # UnsafeFile included
            return
        if f is None:
            return
        with f:
            raw = f.read(MAX_PROGRESS_BYTES + 1)
        try:
            doc = parse_job_json(raw, PROGRESS_FILE)
        except UnsafeFile:
            seen.progress_key = None  # half written (or nested too deep): look again next time
            return
        values = progress_values(doc)
        if not values or values == seen.progress_values:
            return
        target = history_path(self.store, name, "progress")
        if seen.progress_values is None:
            last = _last_line(target)
            if last is not None and last.get("values") == values:
                seen.progress_values = values
                return
        seen.progress_values = values
        point: dict[str, Any] = {"time": iso(utcnow()), "values": values}
        if isinstance(doc, dict) and isinstance(doc.get("stage"), str):
            point["stage"] = doc["stage"][:200]
        seen.progress_lines = _append(target, point, seen.progress_lines)
        if seen.progress_lines > MAX_PROGRESS_POINTS:
            seen.progress_lines = _rewrite(target, lambda lines: lines[::2])

    # ---- resources --------------------------------------------------------------------------------------------
    def _resources(self, st: JobStatus, seen: _Seen, gpus: dict[str, dict[str, float]]) -> dict[str, Any] | None:
        container = st.containerName or ""
        try:
            stats = self.runtime.stats(container)
        except RuntimeUnavailable:
            metrics.SAMPLES.labels("error").inc()
            return None
        if stats is None:
            return None
        metrics.SAMPLES.labels("ok").inc()
        now = time.monotonic()
        cpu = None
        if seen.cpu is not None and seen.container == container and now > seen.cpu[0]:
            cpu = max(0.0, (stats.cpu_seconds - seen.cpu[1]) / (now - seen.cpu[0]))
        seen.cpu, seen.container = (now, stats.cpu_seconds), container
        sample: dict[str, Any] = {"time": iso(utcnow()), "cpu": None if cpu is None else round(cpu, 4)}
        sample["memory"] = stats.memory
        held = [gpus[g] for g in st.gpuIds if g in gpus]
        if held:
            sample["gpu"] = round(sum(g["utilization"] for g in held) / len(held), 1)
            sample["gpuMemory"] = int(sum(g["memory"] for g in held))
        target = history_path(self.store, st.name, "resources")
        seen.resource_lines = _append(target, sample, seen.resource_lines)
        if seen.resource_lines > 2 * MAX_RESOURCE_POINTS:
            seen.resource_lines = _rewrite(target, lambda lines: lines[-MAX_RESOURCE_POINTS:])
        if self.on_sample is not None:
            call_hook(self.on_sample, st.name, container, sample)
        return {**sample, "container": container, "gpus": len(st.gpuIds)}


def gpu_usage() -> dict[str, dict[str, float]]:
    """GPU index and UUID -> utilization (%) and memory in use (bytes), from nvidia-smi; empty without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,uuid,utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    usage: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            row = {"utilization": float(parts[2]), "memory": float(parts[3]) * 1024 * 1024}
        except ValueError:
            continue
        usage[parts[0]] = usage[parts[1]] = row
    return usage


def read_history(store: DataStore, name: str, kind: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The points of a history file, oldest first (the last `limit`); a line cut short is skipped."""
    try:
        lines = history_path(store, name, kind).read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[-limit:] if limit else lines:
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict):
            out.append(point)
    return out


def _append(path: Path, point: dict[str, Any], lines: int | None) -> int:
    """Append one line; returns the file's line count (counted once, then kept in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if lines is None:
        try:
            lines = path.read_bytes().count(b"\n")
        except OSError:
            lines = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(point, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)
    return lines + 1


def _rewrite(path: Path, keep: Callable[[list[bytes]], list[bytes]]) -> int:
    lines = keep([ln for ln in path.read_bytes().splitlines() if ln.strip()])
    atomic_write_bytes(path, b"".join(ln + b"\n" for ln in lines), durable=False)
    return len(lines)


def _last_line(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
            tail = f.read().splitlines()
        return json.loads(tail[-1]) if tail else None
    except (OSError, ValueError):
        return None
