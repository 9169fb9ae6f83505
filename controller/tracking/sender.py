"""The outbox's sender: one background thread that delivers what the outbox holds, in order, with backoff.

Per attempt, in this order: find-or-create the run, the queued operations oldest first (consecutive metric
snapshots merged into one request of at most 1000 metrics), then the close: final metrics and outcome tags, the
artifacts, and the final status last, so a run MLflow shows as finished has everything else already. Attempts are
visited oldest first. A call that may work later (MLflow away, slow, overloaded) stops the pass, which is tried
again after a backoff (0.5 s doubling up to OPEVA_MLFLOW_RETRY_MAX_SECONDS); a call MLflow refuses outright (a
changed param, a deleted run) is logged and dropped, so one bad operation never holds up the rest.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ..jobfiles import open_job_file
from .config import TrackingConfig
from .outbox import Entry, Outbox
from .rest import MAX_BATCH_METRICS, MAX_BATCH_TAGS, Deadline, MlflowRest, Rejected, Unavailable, chunks

log = structlog.get_logger("opeva.mlflow")

MAX_SERVER_ERRORS = 5  # tries of one call that the server keeps failing with HTTP 500, before it is dropped
# the tags that find an attempt's run again: a crash between "run created" and "run id recorded" never makes two
IDENTITY_TAGS = ("opeva.instance", "opeva.job", "opeva.runKey", "opeva.attempt")


class Sender:
    def __init__(
        self,
        config: TrackingConfig,
        rest: MlflowRest,
        outbox: Outbox,
        on_run_known: Callable[[Entry], None],
        on_closed: Callable[[Entry], None],
    ):
        self.config = config
        self.rest = rest
        self.outbox = outbox
        self.on_run_known = on_run_known
        self.on_closed = on_closed
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._experiments: dict[str, str] = {}
        self.failures = 0  # consecutive passes that found MLflow unavailable
        self.retry_at = 0.0
        self.last_error: str | None = None
        self._server_errors: dict[str, int] = {}

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlflow-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def reachable(self) -> bool:
        """False while the last pass found MLflow away: starts then skip the synchronous run creation."""
        return self.failures == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, 1.0))
                continue
            self.wake.wait(1.0)
            self.wake.clear()
            if self._stop.is_set():
                return
            try:
                self.drain()
            except Unavailable as err:
                self.note_unavailable(str(err))
            except Exception:
                log.exception("mlflow_sender_error")
                self.note_unavailable("unexpected error")

    def note_unavailable(self, error: str) -> None:
        """MLflow did not answer: back off, and let starts skip the synchronous run creation meanwhile."""
        self.failures += 1
        delay = min(self.config.retry_max_seconds, 0.5 * 2 ** min(self.failures - 1, 16))
        delay *= random.uniform(0.8, 1.0)
        self.retry_at = time.monotonic() + delay
        self.last_error = error
        if self.failures == 1:
            log.warning(
                "mlflow_unavailable",
                error=error,
                retry_in=round(delay, 1),
                pending=len(self.outbox.entries()),
                message="jobs run on; MLflow updates are kept in the outbox and sent when it is back",
            )
        else:
            log.debug("mlflow_still_unavailable", error=error, retry_in=round(delay, 1), failures=self.failures)

    # ---- one pass ---------------------------------------------------------------------------------------------
    def drain(self) -> None:
        """Deliver everything pending; raises Unavailable at the first call that may work later."""
        for entry in self.outbox.entries():
            if self._stop.is_set():
                return
            with entry.lock:
                if self.outbox.get(entry.id) is not None:
                    self._drain_entry(entry)
        if self.failures:
            log.info("mlflow_reachable", after_failures=self.failures)
            self.failures = 0
            self.last_error = None

    def _guard(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run one call; a call the server keeps failing (HTTP 500) becomes Rejected after a few tries."""
        try:
            result = fn()
        except Unavailable as err:
            if not err.server_error:
                raise
            n = self._server_errors[key] = self._server_errors.get(key, 0) + 1
            if n < MAX_SERVER_ERRORS:
                raise
            self._server_errors.pop(key, None)
            raise Rejected(f"{err} (given up after {n} server errors)") from None
        self._server_errors.pop(key, None)
        return result

    def _drain_entry(self, entry: Entry) -> None:
        if entry.run_id is None:
            try:
                self._guard(f"{entry.id}:run", lambda: self.ensure_run(entry, Deadline(self.config.call_timeout * 4)))
            except Rejected as err:
                log.error(
                    "mlflow_run_rejected",
                    job=entry.job,
                    attempt=entry.attempt,
                    experiment=entry.experiment,
                    error=str(err),
                    message="this attempt gets no MLflow run",
                )
                self.outbox.remove(entry)
                return
        while True:
            self._send_ops(entry)
            if entry.close is None:
                return
            if self.outbox.pending_count(entry):
                continue  # an operation queued just before the close: it goes first
            self._close(entry)
            return

    def ensure_run(self, entry: Entry, deadline: Deadline) -> None:
        """Find the attempt's run again by its identity tags, or create it. The caller holds entry.lock."""
        if entry.run_id is not None:
            return
        exp_id = entry.experiment_id or self._experiments.get(entry.experiment)
        if exp_id is None:
            exp_id = self.rest.experiment_id(entry.experiment, deadline)
            self._experiments[entry.experiment] = exp_id
        identity = {k: entry.tags[k] for k in IDENTITY_TAGS if k in entry.tags}
        try:
            closing = self.outbox.closing_run_ids()  # earlier runs of the same key, closed here, not yet in MLflow
            info = next(
                (r for r in self.rest.running_runs(exp_id, identity, deadline) if r["run_id"] not in closing), None
            )
            found = info is not None
            if info is None:
                info = self.rest.create_run(exp_id, entry.run_name, entry.created_ms, entry.tags, deadline)
        except Rejected:
            self._experiments.pop(entry.experiment, None)  # deleted since we cached it, perhaps
            raise
        entry.experiment_id = exp_id
        entry.run_id = info["run_id"]
        entry.artifact_uri = info.get("artifact_uri")
        self.outbox.save(entry)
        log.info(
            "mlflow_run_found" if found else "mlflow_run_created",
            job=entry.job,
            attempt=entry.attempt,
            run_id=entry.run_id,
            experiment_id=exp_id,
        )
        self.on_run_known(entry)

    def _send_ops(self, entry: Entry) -> None:
        while True:
            pending = self.outbox.pending(entry)
            if not pending:
                return
            files, body = _merge(pending)
            try:
                self._guard(
                    f"{entry.id}:{files[0].name}",
                    functools.partial(self.rest.log_batch, entry.run_id, body["metrics"], body["params"], body["tags"]),
                )
            except Rejected as err:
                log.warning(
                    "mlflow_op_rejected",
                    job=entry.job,
                    attempt=entry.attempt,
                    run_id=entry.run_id,
                    error=str(err),
                    dropped=len(files),
                )
            self.outbox.done(files)

    def _close(self, entry: Entry) -> None:
        close = entry.close
        assert close is not None
        done = set(close.get("done", []))

        def step(name: str, fn: Callable[[], Any]) -> None:
            if name in done:
                return
            try:
                self._guard(f"{entry.id}:{name}", fn)
            except Rejected as err:
                log.warning(
                    "mlflow_close_step_rejected",
                    job=entry.job,
                    attempt=entry.attempt,
                    step=name,
                    run_id=entry.run_id,
                    error=str(err),
                )
            done.add(name)
            close["done"] = sorted(done)
            self.outbox.save(entry)

        metrics = close.get("metrics", [])
        tags = close.get("tags", [])
        size = MAX_BATCH_METRICS - MAX_BATCH_TAGS  # one request holds at most 1000 values in all
        for i, batch in enumerate(chunks(metrics, size) if metrics else [[]]):
            step(
                f"metrics:{i}",
                functools.partial(
                    self.rest.log_batch, entry.run_id, metrics=batch, tags=tags[:MAX_BATCH_TAGS] if i == 0 else []
                ),
            )
        for i, art in enumerate(close.get("artifacts", [])):
            step(f"artifact:{i}", functools.partial(self._upload, entry, art))
        step("terminate", lambda: self.rest.update_run(entry.run_id, close["status"], close.get("end_ms")))
        step("duplicates", lambda: self._close_duplicates(entry))
        log.info("mlflow_run_closed", job=entry.job, attempt=entry.attempt, run_id=entry.run_id, status=close["status"])
        self.on_closed(entry)
        self.outbox.remove(entry)

    def _close_duplicates(self, entry: Entry) -> None:
        """A create that timed out here may still have made a run on the server: close such twins, empty, KILLED."""
        identity = {k: entry.tags[k] for k in IDENTITY_TAGS if k in entry.tags}
        deadline = Deadline(self.config.call_timeout * 3)
        for twin in self.rest.running_runs(entry.experiment_id, identity, deadline):
            if twin["run_id"] != entry.run_id:
                self.rest.log_batch(twin["run_id"], tags=[{"key": "opeva.duplicateOf", "value": entry.run_id}])
                self.rest.update_run(twin["run_id"], "KILLED", None)
                log.info(
                    "mlflow_duplicate_run_closed",
                    job=entry.job,
                    attempt=entry.attempt,
                    run_id=twin["run_id"],
                    kept=entry.run_id,
                )

    def _upload(self, entry: Entry, art: dict[str, Any]) -> None:
        path = self.outbox.path(entry, art["entry_file"]) if art.get("entry_file") else Path(art["file"])
        try:
            source = open_job_file(self.outbox.data_root, path)  # a log the job could have swapped: see jobfiles
        except OSError as err:  # UnsafeFile included
            log.warning("mlflow_artifact_refused", job=entry.job, file=str(path), error=str(err))
            return
        if source is None:
            log.info("mlflow_artifact_missing", job=entry.job, file=str(path))
            return
        with source:
            size = os.fstat(source.fileno()).st_size
            start = int(art.get("start", 0))
            end = min(int(art.get("end", size)), size)
            if end <= start:
                return
            if not entry.artifact_uri:
                raise Rejected("the run has no artifact location")
            self.rest.upload(entry.artifact_uri, art["artifact_path"], art["name"], source, start, end)


def _merge(pending: list[tuple[Path, dict[str, Any]]]) -> tuple[list[Path], dict[str, list]]:
    """The first operation, with the metric snapshots right after it when it is one (up to MLflow's limit)."""
    path, first = pending[0]
    files = [path]
    body = {
        "metrics": list(first.get("metrics", [])),
        "params": list(first.get("params", [])),
        "tags": list(first.get("tags", [])),
    }
    if first.get("kind") == "metrics":
        for p, op in pending[1:]:
            more = op.get("metrics", [])
            if op.get("kind") != "metrics" or len(body["metrics"]) + len(more) > MAX_BATCH_METRICS:
                break
            body["metrics"].extend(more)
            files.append(p)
    return files, body
