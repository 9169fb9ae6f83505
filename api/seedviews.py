"""Read views in the old backend's shapes: job_info with the fields the UIs show, list rows with durations, the
queue, this host, log chunks, a job's simulation data.

Everything here reads the data folder; files a job wrote are opened without following links (api/jobfiles.py).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.jobfiles import open_beneath
from controller.status import SEED_STATUS, parse_iso
from controller.store import DataStore

from .errors import InvalidInput, NotFound
from .hosts import LocalHost

RESOLVED_CONFIG = "config.resolved.yaml"
CHUNK_TAIL_DEFAULT = 200
CHUNK_MAX_BYTES = 262144
SIM_SCAN_BYTES = 64 * 1024 * 1024  # CSV bytes read to find the days a session covers
SIM_FILE_BYTES = 32 * 1024 * 1024  # largest simulation data file served or scanned


def durations(info: dict[str, Any], now: datetime) -> dict[str, float | None]:
    """Queue wait, run and total durations in seconds, from the times in job_info (open spans end now)."""
    submitted, started, finished = (parse_iso(info.get(k)) for k in ("submitted_at", "started_at", "finished_at"))

    def span(a: datetime | None, b: datetime | None) -> float | None:
        return None if a is None else round(max(0.0, ((b or now) - a).total_seconds()), 3)

    return {
        "queue_wait_seconds": span(submitted, started or finished),
        "run_duration_seconds": span(started, finished),
        "total_duration_seconds": span(submitted, finished),
    }


def job_info_view(store: DataStore, name: str, info: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """job_info as the UIs read it: the recorded keys, plus the ones the old backend added when serving it."""
    out = dict(info)
    out.setdefault("job_id", name)
    out.setdefault("job_name", name)
    if row is not None and row.get("status") not in (None, "unknown"):
        out["status"] = row["status"]
    for key in ("submitted_at", "started_at", "finished_at"):
        if row is not None and row.get(key) and not out.get(key):
            out[key] = row[key]
    if "mlflow_run_id" in out:
        out.setdefault("mlflow_experiment_id", out.get("mlflow_experiment_id"))
    available = _is_regular(store.job_dir(name) / RESOLVED_CONFIG)
    out["resolved_config_available"] = available
    if available:
        out["resolved_config_file"] = RESOLVED_CONFIG
    attempts = row.get("attempts") if row else out.get("attempt")
    attempt_number = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    out["attempt_number"] = attempt_number
    out["requeue_count"] = max(0, attempt_number - 1)
    out.update(durations(out, datetime.now(UTC)))
    return out


def list_extras(view: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The old list row's keys beside `job_id`, `status` and `job_info` (times from the index row when it has them)."""
    keys = ("submitted_at", "started_at", "finished_at")
    meta_keys = ("job_name", "submitted_by", "target_host", "config_path", "experiment_name", "run_name", "image")
    return {
        **{k: row.get(k) or view.get(k) for k in keys},
        **{k: view[k] for k in ("queue_wait_seconds", "run_duration_seconds", "total_duration_seconds")},
        "requeue_count": view["requeue_count"],
        "attempt_number": view["attempt_number"],
        "job_meta": {k: view.get(k) for k in meta_keys},
    }


def list_item(store: DataStore, row: dict[str, Any]) -> dict[str, Any]:
    """One `GET /jobs` item: the index row, the job's info as the UIs read it, and the old backend's row keys."""
    view = job_info_view(store, row["name"], store.read_job_info(row["name"]) or {}, row)
    return {**row, "job_info": view, **list_extras(view, row)}


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# ---- queue and hosts -------------------------------------------------------------------------------------------
def queue_rows(rows: list[dict[str, Any]], infos: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs waiting to run, in the order they will start (their queue position, then name)."""
    waiting = [r for r in rows if r.get("phase") == "Pending"]
    waiting.sort(key=lambda r: (r.get("queue_position") is None, r.get("queue_position") or 0, r["name"]))
    out = []
    for r in waiting:
        info = infos.get(r["name"], {})
        host = info.get("target_host")
        out.append(
            {
                "job_id": r["name"],
                "enqueued_at": info.get("submitted_at"),
                "preferred_host": host,
                "require_host": bool(host),
                "submitted_by": info.get("submitted_by"),
                "queue_position": r.get("queue_position"),
            }
        )
    return out


def hosts_view(host: LocalHost, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`{available_hosts, hosts}` as the old backend answered: this machine as the only host, or each Swarm node."""
    if host.clustered:
        return _nodes_as_hosts(host)
    name = host.name or "local"
    running = sorted(r["name"] for r in rows if r.get("phase") == "Running")
    capacity = host.capacity.get("capacity") if isinstance(host.capacity.get("capacity"), dict) else {}
    return {
        "available_hosts": [name],
        "hosts": {
            name: {
                "online": host.online,
                "last_seen": host.last_seen,
                "info": {
                    "hostname": name,
                    "docker": host.beat.get("docker"),
                    "cpus": capacity.get("cpus"),
                    "memory": capacity.get("memory"),
                    "gpus": list(host.gpus),
                    "gpu_count": len(host.gpus),
                    "used": host.capacity.get("used"),
                    "waiting": host.capacity.get("waiting"),
                },
                "running": len(running),
                "active_job_ids": running,
                "current_job_id": running[0] if running else None,
                "current_job_status": SEED_STATUS["Running"] if running else None,
            }
        },
    }


def _nodes_as_hosts(host: LocalHost) -> dict[str, Any]:
    """Each Swarm node as one of the old backend's hosts; the available ones are those new jobs may go to."""
    hosts = {}
    for n in host.nodes:
        jobs = [str(j) for j in n.get("jobs") or []]
        gpus = list(n.get("gpus") or [])
        hosts[str(n["name"])] = {
            "online": host.node_online(n),
            "last_seen": host.last_seen,
            "info": {
                "hostname": n.get("hostname"),
                "node_id": n["id"],
                "role": n.get("role"),
                "state": n.get("state"),
                "availability": n.get("availability"),
                "message": n.get("message"),
                "labels": n.get("labels") or {},
                "engine_labels": n.get("engineLabels") or {},
                "cpus": n.get("cpus"),
                "memory": n.get("memory"),
                "gpus": gpus,
                "gpu_count": len(gpus),
                "conditions": n.get("conditions") or [],
            },
            "running": len(jobs),
            "active_job_ids": jobs,
            "current_job_id": jobs[0] if jobs else None,
            "current_job_status": SEED_STATUS["Running"] if jobs else None,
        }
    available = [str(n["name"]) for n in host.nodes if host.node_online(n) and n.get("schedulable")]
    return {"available_hosts": available, "hosts": hosts}


# ---- simulation data -------------------------------------------------------------------------------------------
def _rel_parts(value: str, what: str) -> tuple[str, ...]:
    text = (value or "").replace("\\", "/").strip()
    if not text or text.startswith("/") or "\x00" in text:
        raise InvalidInput(f"{what} must be a relative path inside the job's folder")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise InvalidInput(f"{what} {value!r} must be a relative path inside the job's folder, without '..'")
    return parts


def _listdir(fd: int) -> list[tuple[str, os.stat_result]]:
    out = []
    for entry in os.listdir(fd):
        try:
            out.append((entry, os.stat(entry, dir_fd=fd, follow_symlinks=False)))
        except OSError:
            continue
    return out


class SimulationData:
    """DATA/jobs/ID/results/simulation_data/<session>/...csv, as the old backend indexed and served it."""

    ROOT = ("results", "simulation_data")

    def __init__(self, store: DataStore, name: str):
        self.store = store
        self.name = name
        self.job_dir = store.job_dir(name)

    def _session(self, session: str | None) -> tuple[str, tuple[str, ...]] | None:
        fd = open_beneath(self.job_dir, self.ROOT, directory=True)
        if fd is None:
            return None
        try:
            dirs = sorted(((n, s) for n, s in _listdir(fd) if stat.S_ISDIR(s.st_mode)), key=lambda e: e[1].st_mtime)
        finally:
            os.close(fd)
        if not session or session == "latest":
            return (dirs[-1][0], self.ROOT + (dirs[-1][0],)) if dirs else ("root", self.ROOT)
        if session == "root":
            return "root", self.ROOT
        _rel_parts(session, "session")
        if session not in {n for n, _ in dirs}:
            raise NotFound(f"simulation session {session!r} not found for job {self.name!r}")
        return session, self.ROOT + (session,)

    def summary(self) -> dict[str, Any]:
        """The keys the old backend added to /result: is there simulation data, which session, where."""
        try:
            found = self._session("latest")
        except Exception:
            found = None
        return {
            "simulation_data_available": found is not None,
            "simulation_data_session_default": found[0] if found else None,
            "simulation_data_dir": str(self.job_dir.joinpath(*found[1])) if found else None,
        }

    def index(self, session: str | None) -> dict[str, Any]:
        found = self._session(session)
        if found is None:
            raise NotFound(f"no simulation data found for job {self.name!r}")
        chosen, parts = found
        files = self._csv_files(parts)
        days: set[str] = set()
        budget = SIM_SCAN_BYTES
        for rel in files:
            data = self._read(parts + tuple(rel.split("/")), min(budget, SIM_FILE_BYTES))
            if data is None:
                continue
            budget -= len(data)
            _days_in(data, days)
            if budget <= 0:
                break
        return {
            "root_path": str(self.job_dir.joinpath(*parts)),
            "session": chosen,
            "files": files,
            "available_days": sorted(days),
        }

    def file(self, session: str | None, relative_path: str) -> tuple[bytes, str]:
        rel = _rel_parts(relative_path, "relative_path")
        found = self._session(session) if self._has_root() else None
        for base in ([found[1]] if found else []) + [()]:
            data = self._read(base + rel, SIM_FILE_BYTES)
            if data is not None:
                return data, _media_type(rel[-1])
        raise NotFound(f"simulation data file {relative_path!r} not found for job {self.name!r}")

    def _has_root(self) -> bool:
        fd = open_beneath(self.job_dir, self.ROOT, directory=True)
        if fd is not None:
            os.close(fd)
        return fd is not None

    def _csv_files(self, parts: tuple[str, ...]) -> list[str]:
        out: list[str] = []

        def walk(rel: tuple[str, ...], depth: int) -> None:
            fd = open_beneath(self.job_dir, parts + rel, directory=True)
            if fd is None or depth > 8:
                if fd is not None:
                    os.close(fd)
                return
            try:
                entries = _listdir(fd)
            finally:
                os.close(fd)
            for name, st in entries:
                if stat.S_ISDIR(st.st_mode):
                    walk(rel + (name,), depth + 1)
                elif stat.S_ISREG(st.st_mode) and name.lower().endswith(".csv"):
                    out.append("/".join(rel + (name,)))

        walk((), 0)
        return sorted(out, key=str.lower)

    def _read(self, parts: tuple[str, ...], limit: int) -> bytes | None:
        try:
            fd = open_beneath(self.job_dir, parts)
        except Exception:
            return None
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_size > SIM_FILE_BYTES:
                return None
            return os.read(fd, limit) if limit > 0 else b""
        finally:
            os.close(fd)


def _days_in(data: bytes, days: set[str]) -> None:
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    header = next(reader, None)
    if not header:
        return
    column = next((i for i, h in enumerate(header) if any(w in h.lower() for w in ("timestamp", "time", "date"))), 0)
    for row in reader:
        if column < len(row):
            t = _row_time(row[column])
            if t is not None:
                days.add(t.date().isoformat())


def _row_time(raw: str) -> datetime | None:
    value = raw.strip()
    try:
        number = float(value)
    except ValueError:
        return parse_iso(value)
    if number > 9_999_999_999:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, UTC) if number > 0 else None
    except (OverflowError, OSError, ValueError):
        return None


def _media_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return {
        ".csv": "text/csv",
        ".json": "application/json",
        ".yaml": "text/yaml",
        ".yml": "text/yaml",
    }.get(suffix, "text/plain" if suffix in (".txt", ".log", ".md") else "application/octet-stream")
