"""MlflowHooks: the controller's attempt hooks that give every attempt one MLflow run and always close it.

- `before_start` records the attempt in the outbox, then finds or creates its run within a short budget
  (OPEVA_MLFLOW_START_TIMEOUT, 2.5 s) and returns MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and MLFLOW_RUN_ID for
  the container. When MLflow does not answer in time (or is known to be away), the job starts at once without
  those variables and the run is created by the sender when MLflow is back: a job is never held up by MLflow, at
  the price that such an attempt cannot log into its run itself.
- A watcher thread mirrors progress.json into the run (at most every OPEVA_MLFLOW_MIRROR_SECONDS, only changes)
  and closes runs whose attempt ended without `after_finish` (a crash right after the status write, a container
  that could not be created, a record collected by its TTL).
- `after_finish` queues the close: final progress, result.json numbers and file, the attempt's part of the log,
  outcome tags, and the status: FINISHED (succeeded), FAILED (failed, deadline, OOM, stalled), KILLED (stopped,
  suspended, interrupted).
- `on_start` loads the outbox and closes runs of attempts that ended while the controller was down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from ..decide import run_key
from ..hooks import StatusLookup
from ..jobfiles import UnsafeFile, parse_job_json
from ..jobpaths import LOGS_DIR, RESULT_FILE
from ..spec import JobManifest
from ..status import ACTIVE_PHASES, AttemptRecord, JobStatus
from ..store import DataStore, StoreError, atomic_write_bytes
from . import values
from .config import TrackingConfig
from .outbox import Entry, Outbox, dumps, new_entry_id, now_ms
from .rest import MAX_BATCH_PARAMS, Deadline, MlflowRest, Rejected, Unavailable, chunks, param, tag
from .sender import Sender

log = structlog.get_logger("opeva.mlflow")

SWEEP_SECONDS = 5.0
SLOW_MIRROR_SECONDS = 60.0  # while MLflow is away, so a long outage does not pile up snapshots
GIT_CACHE_SECONDS = 30.0
MAX_RESULT_BYTES = 16 * 1024 * 1024


class MlflowHooks:
    def __init__(self, config: TrackingConfig, store: DataStore, runtime: Any = None):
        self.config = config
        self.store = store
        self.runtime = runtime
        self.instance = store.instance_id()
        self.rest = MlflowRest(config)
        self.outbox = Outbox(store.state_dir)
        self.sender = Sender(config, self.rest, self.outbox, on_run_known=self._link, on_closed=self._closed)
        self._lock = threading.RLock()  # mirror and close of entries (local I/O only)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._mirrored_at: dict[str, float] = {}
        self._system_steps: dict[str, int] = {}  # entry id -> next step of its system metrics
        self._progress_seen: dict[str, tuple[int, int]] = {}
        self._git: tuple[float, str | None] = (0.0, None)

    # ---- AttemptHooks -----------------------------------------------------------------------------------------
    def on_start(self, statuses: StatusLookup) -> None:
        n = self.outbox.load()
        self.sweep(statuses)
        self.sender.start()
        self._watcher = threading.Thread(target=self._watch, name="mlflow-watcher", daemon=True)
        self._watcher.start()
        log.info(
            "mlflow_tracking",
            uri=self.config.tracking_uri,
            default_experiment=self.config.default_experiment,
            pending_attempts=n,
        )

    def before_start(self, manifest: JobManifest, status: JobStatus, attempt: int, container: str) -> dict[str, str]:
        if not values.enabled(manifest):
            return {}
        key = run_key(manifest.generation, manifest.spec.runId)
        entry = self.outbox.find_open(manifest.name, key, attempt, container)
        if entry is None:
            entry = self._new_entry(manifest, status, attempt, container, key)
        if entry.run_id is None and self.sender.reachable:
            budget = Deadline(self.config.start_timeout)
            if entry.lock.acquire(timeout=self.config.start_timeout):
                try:
                    self.sender.ensure_run(entry, budget)
                except Unavailable as err:
                    self.sender.note_unavailable(str(err))
                except Rejected as err:
                    log.warning("mlflow_run_refused", job=entry.job, attempt=attempt, error=str(err))
                finally:
                    entry.lock.release()
        self.sender.wake.set()
        if entry.run_id is None:
            log.warning(
                "mlflow_run_deferred",
                job=entry.job,
                attempt=attempt,
                error=self.sender.last_error,
                message="starting without MLFLOW_RUN_ID; the run is created when MLflow answers",
            )
            return {}
        return {
            "MLFLOW_TRACKING_URI": self.config.job_uri,
            "MLFLOW_EXPERIMENT_ID": str(entry.experiment_id),
            "MLFLOW_RUN_ID": entry.run_id,
            "MLFLOW_UI_BASE_URL": self.config.ui_url,  # the OPEVA simulator builds its mlflow_run_url from it
        }

    def after_finish(self, status: JobStatus, record: AttemptRecord) -> None:
        entry = self.outbox.find_open(
            status.name, run_key(record.generation, record.runId), record.attempt, record.containerName
        )
        if entry is not None:
            self._close_entry(
                entry,
                values.record_status(record),
                record.outcome,
                record.reason,
                record.exitCode,
                record.finishedAt.timestamp() if record.finishedAt else None,
            )

    def close(self) -> None:
        self._stop.set()
        self.sender.stop()
        if self._watcher is not None:
            self._watcher.join(3.0)

    # ---- opening ----------------------------------------------------------------------------------------------
    def _new_entry(self, m: JobManifest, status: JobStatus, attempt: int, container: str, key: str) -> Entry:
        tags = {k: v for k, v in m.metadata.labels.items()}
        tags.update(
            {
                "opeva.instance": self.instance,
                "opeva.job": m.name,
                "opeva.attempt": str(attempt),
                "opeva.generation": m.generation,
                "opeva.runKey": key,
                "opeva.container": container,
                "opeva.image": m.spec.image,
            }
        )
        if m.spec.runId:
            tags["opeva.runId"] = m.spec.runId
        if status.specFile:
            tags["opeva.specFile"] = status.specFile
        if status.source:  # the folder follows a repository: the commit that launched this run
            tags.update(values.source_tags(status.source))
        elif commit := self._git_commit():
            tags["opeva.git.commit"] = commit
            tags["mlflow.source.git.commit"] = commit
        logs = {p.name: _size(p) for p in (self.store.log_path(m.name, True), self.store.log_path(m.name, False))}
        entry = Entry(
            id=new_entry_id(m.name, key, attempt),
            job=m.name,
            attempt=attempt,
            generation=m.generation,
            run_key=key,
            spec_run_id=m.spec.runId,
            container=container,
            experiment=values.experiment_name(m, self.config.default_experiment),
            run_name=values.run_name(m, attempt),
            tags={values.safe_key(k): v[:8000] for k, v in tags.items()},
            created_ms=now_ms(),
            prior_records=sum(1 for h in status.history if h.containerName == container),
            log_offsets=logs,
        )
        self.outbox.add(entry)
        params = [param(k, v) for k, v in values.spec_params(m).items()]
        for batch in chunks(params, MAX_BATCH_PARAMS):
            self.outbox.append(entry, {"kind": "params", "params": batch})
        return entry

    def _git_commit(self) -> str | None:
        at, commit = self._git
        if time.monotonic() - at < GIT_CACHE_SECONDS:
            return commit
        commit = None
        if shutil.which("git"):
            try:
                out = subprocess.run(
                    ["git", "-C", str(self.store.specs_dir), "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=2,
                )
                if out.returncode == 0 and len(out.stdout.strip()) >= 40:
                    commit = out.stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        self._git = (time.monotonic(), commit)
        return commit

    # ---- while running: mirror progress.json, close what ended unseen ------------------------------------------
    def _watch(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                interval = (
                    self.config.mirror_seconds
                    if self.sender.reachable
                    else max(self.config.mirror_seconds, SLOW_MIRROR_SECONDS)
                )
                now = time.monotonic()
                for entry in self.outbox.entries():
                    if not entry.closing and now - self._mirrored_at.get(entry.id, 0.0) >= interval:
                        self._mirrored_at[entry.id] = now
                        self.mirror(entry)
                if now - last_sweep >= SWEEP_SECONDS:
                    last_sweep = now
                    self.sweep(None)
            except Exception:
                log.exception("mlflow_watcher_error")

    def mirror(self, entry: Entry, force: bool = False) -> None:
        """Queue progress.json's numbers as one metric snapshot, if they changed since the last one."""
        path = self.store.progress_path(entry.job)
        try:
            st = path.lstat()  # a change check only; the read below is the safe one
        except OSError:
            return
        if st.st_mtime < entry.created_ms / 1000 - 1:
            return  # left by an earlier attempt
        seen = (st.st_mtime_ns, st.st_size)
        if not force and self._progress_seen.get(entry.id) == seen:
            return
        self._progress_seen[entry.id] = seen
        try:
            _, progress = self.store.read_job_json(path)  # never a FIFO, a link or a huge file: see jobfiles
        except OSError as err:  # UnsafeFile included
            log.debug("mlflow_progress_unreadable", job=entry.job, error=str(err))
            return
        found, step = values.progress_values(progress)
        if not found:
            return
        with self._lock:
            if entry.closing and not force:
                return
            sig = dumps(found)
            if sig == entry.mirror_sig:
                return
            entry.step = step if step is not None else entry.step + 1
            entry.mirror_sig = sig
            self.outbox.append(entry, {"kind": "metrics", "metrics": values.metric_list(found, entry.step, now_ms())})
            self.outbox.save(entry)
        self.sender.wake.set()

    def resource_sample(self, job: str, container: str, sample: dict[str, Any]) -> None:
        """Queue a resource sample as the attempt's MLflow system metrics (the `system/` keys MLflow's UI charts)."""
        entry = next((e for e in self.outbox.entries() if e.job == job and e.container == container), None)
        if entry is None or entry.closing:
            return
        found = values.system_metrics(sample, os.cpu_count() or 1)
        if not found:
            return
        with self._lock:
            step = self._system_steps.get(entry.id, 0)
            self._system_steps[entry.id] = step + 1
            self.outbox.append(entry, {"kind": "metrics", "metrics": values.metric_list(found, step, now_ms())})
        self.sender.wake.set()

    def sweep(self, statuses: StatusLookup | None) -> None:
        """Close the runs of attempts that ended without `after_finish` reaching us."""
        for entry in self.outbox.entries():
            if entry.closing:
                continue
            st = statuses.get(entry.job) if statuses is not None else self.store.read_status(entry.job)
            verdict = self._verdict(entry, st)
            if verdict is not None:
                status, outcome, reason, exit_code, finished = verdict
                log.info(
                    "mlflow_close_recovered",
                    job=entry.job,
                    attempt=entry.attempt,
                    status=status,
                    outcome=outcome,
                    reason=reason,
                )
                self._close_entry(entry, status, outcome, reason, exit_code, finished)

    def _verdict(self, entry: Entry, st: JobStatus | None):
        if st is None:
            if self.store.job_dir(entry.job).exists():
                return None  # unreadable for a moment, or not yet written: look again later
            return ("KILLED", "Stopped", "RecordRemoved", None, None)
        records = [h for h in st.history if h.containerName == entry.container]
        if len(records) > entry.prior_records:
            r = records[-1]
            return (
                values.record_status(r),
                r.outcome,
                r.reason,
                r.exitCode,
                r.finishedAt.timestamp() if r.finishedAt else None,
            )
        if st.containerName == entry.container and st.phase in ACTIVE_PHASES:
            return None
        try:
            exists = self.runtime is None or self.runtime.inspect(entry.container) is not None
        except Exception:
            return None  # the engine is away: its containers may still be recorded later
        if exists:
            return None  # its exit will be recorded, and after_finish closes the run
        if st.containerName == entry.container and st.phase == "Failed":
            return ("FAILED", "Failed", st.reason, None, None)  # it never started: image missing, create refused
        return ("KILLED", "Stopped", st.reason or "NotStarted", None, None)

    # ---- closing ----------------------------------------------------------------------------------------------
    def _close_entry(
        self, entry: Entry, status: str, outcome: str, reason: str | None, exit_code: int | None, finished: float | None
    ) -> None:
        with self._lock:
            if entry.closing or self.outbox.get(entry.id) is None:
                return
            self.mirror(entry, force=True)
            ts = now_ms()
            metrics = values.metric_list(self._result(entry), entry.step, ts)
            tags = [tag("opeva.outcome", outcome)]
            if reason:
                tags.append(tag("opeva.reason", reason))
            if exit_code is not None:
                tags.append(tag("opeva.exitCode", str(exit_code)))
            artifacts: list[dict[str, Any]] = []
            if self.outbox.path(entry, "result.json").exists():
                artifacts.append({"entry_file": "result.json", "artifact_path": "results", "name": "result.json"})
            for name, start in sorted(entry.log_offsets.items()):
                path = self.store.job_dir(entry.job) / LOGS_DIR / name
                end = _size(path)
                if end > start:
                    artifacts.append(
                        {"file": str(path), "start": start, "end": end, "artifact_path": "logs", "name": name}
                    )
            entry.close = {
                "status": status,
                "outcome": outcome,
                "reason": reason,
                "exitCode": exit_code,
                "end_ms": int(finished * 1000) if finished else ts,
                "metrics": metrics,
                "tags": tags,
                "artifacts": artifacts,
                "done": [],
            }
            self.outbox.save(entry)
        log.info("mlflow_run_closing", job=entry.job, attempt=entry.attempt, run_id=entry.run_id, status=status)
        self.sender.wake.set()

    def _result(self, entry: Entry) -> dict[str, float]:
        """Copy this attempt's result.json into the outbox (the next attempt may overwrite it); its numbers."""
        path = self.store.job_dir(entry.job) / RESULT_FILE
        try:
            f = self.store.open_job_file(path, MAX_RESULT_BYTES)  # the job wrote it: see jobfiles
            if f is None:
                return {}
            with f:
                if os.fstat(f.fileno()).st_mtime < entry.created_ms / 1000 - 1:
                    return {}  # an earlier attempt's
                data = f.read(MAX_RESULT_BYTES + 1)
        except OSError as err:  # UnsafeFile included
            log.warning("mlflow_result_unreadable", job=entry.job, error=str(err))
            return {}
        try:
            atomic_write_bytes(self.outbox.path(entry, "result.json"), data)
        except StoreError as err:
            log.warning("mlflow_result_copy_failed", job=entry.job, error=str(err))
        try:
            return values.result_values(parse_job_json(data, RESULT_FILE))
        except UnsafeFile:
            return {}

    # ---- job_info.json ----------------------------------------------------------------------------------------
    def _link(self, entry: Entry) -> None:
        """Put the attempt's run into job_info.json, unless a later attempt of the job already has its own."""
        if any(e.job == entry.job and e.created_ms > entry.created_ms for e in self.outbox.entries()):
            return
        self._write_info(
            entry.job,
            {
                "mlflow_run_id": entry.run_id,
                "mlflow_experiment_id": entry.experiment_id,
                "mlflow_experiment": entry.experiment,
                "mlflow_run_url": self.config.run_url(entry.experiment_id, entry.run_id),
                "mlflow_tracking_uri": self.config.tracking_uri,
                "mlflow_attempt": entry.attempt,
                "mlflow_run_status": entry.close["status"] if entry.close else "RUNNING",
            },
        )

    def _closed(self, entry: Entry) -> None:
        self._system_steps.pop(entry.id, None)
        self._mirrored_at.pop(entry.id, None)
        self._progress_seen.pop(entry.id, None)
        info = self.store.read_job_info(entry.job) or {}
        if info.get("mlflow_run_id") == entry.run_id and entry.close:
            self._write_info(entry.job, {"mlflow_run_status": entry.close["status"]})

    def _write_info(self, job: str, info: dict[str, Any]) -> None:
        if not self.store.job_dir(job).exists():
            return  # collected
        try:
            self.store.write_job_info(job, info)  # serialised with the workers' writes by the store
        except (StoreError, OSError) as err:
            log.warning("mlflow_job_info_write_failed", job=job, error=str(err))


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
