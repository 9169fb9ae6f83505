"""Container output into DATA/jobs/NAME/logs/NAME.log: every line exactly once, across controller crashes.

One cursor per job (DATA/.opeva/cursors/NAME.json) says which container is being captured, the byte offset of the
log file that is known to be complete, and the Docker timestamp (ns) and count of frames written at that timestamp.
Lines are appended as they arrive; the cursor is saved after an fsync, at most every `persist_every` seconds and at
the end. After a crash, the file is cut back to the cursor's offset and Docker is asked again from the cursor's
timestamp, skipping frames already counted: no line is lost, none is written twice.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from .faults import crash_point
from .runtime.base import LABEL_LOG_CAPTURE, ContainerInfo, Runtime, timestamp_ns
from .status import iso, utcnow
from .store import DataStore, atomic_write_json, read_json

log = structlog.get_logger("opeva.logs")


class LogCapture:
    def __init__(
        self,
        store: DataStore,
        runtime: Runtime,
        on_complete: Callable[[str], None],
        on_retry: Callable[[str, float], None],
        persist_every: float = 0.5,
    ):
        self.store = store
        self.runtime = runtime
        self.on_complete = on_complete
        self.on_retry = on_retry
        self._failures: dict[str, tuple[int, float]] = {}  # container -> (failures, monotonic retry time)
        self.persist_every = persist_every
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._complete: set[str] = set()
        (store.state_dir / "cursors").mkdir(parents=True, exist_ok=True)

    def _cursor_path(self, job: str) -> Path:
        return self.store.state_dir / "cursors" / f"{job}.json"

    def is_complete(self, c: ContainerInfo) -> bool:
        """True when all of the container's output is in the log file (and it has stopped)."""
        with self._lock:
            if c.name in self._complete:
                return True
        cur = read_json(self._cursor_path(c.job))
        done = isinstance(cur, dict) and cur.get("container") == c.name and bool(cur.get("complete"))
        if done:
            with self._lock:
                self._complete.add(c.name)
        return done

    def ensure(self, c: ContainerInfo) -> None:
        """Make sure someone is capturing this container's output, unless it is already complete."""
        if c.state == "created" or self.is_complete(c):
            return
        with self._lock:
            t = self._threads.get(c.name)
            if t is not None and t.is_alive():
                return
            failed = self._failures.get(c.name)
            if failed is not None and time.monotonic() < failed[1]:
                return  # a failing capture (engine away, disk full) is retried with backoff, not in a loop
            t = threading.Thread(target=self._follow, args=(c,), name=f"logs-{c.name}", daemon=True)
            self._threads[c.name] = t
        t.start()

    def retry_now(self) -> None:
        """The engine is back: failed captures may start again at once."""
        with self._lock:
            self._failures.clear()

    def forget(self, container: str) -> None:
        with self._lock:
            self._complete.discard(container)
            self._threads.pop(container, None)
            self._failures.pop(container, None)

    def _follow(self, c: ContainerInfo) -> None:
        try:
            complete = self._capture(c)
        except Exception as err:  # the engine went away or the disk is full: resume from the cursor later
            with self._lock:
                n = self._failures.get(c.name, (0, 0.0))[0] + 1
                delay = min(0.5 * 2 ** (n - 1), 30.0)
                self._failures[c.name] = (n, time.monotonic() + delay)
            if n == 1 or n % 10 == 0:
                log.warning(
                    "log_capture_interrupted", job=c.job, container=c.name, error=str(err), failures=n, retry_in=delay
                )
            self.on_retry(c.job, delay)
            return
        with self._lock:
            self._failures.pop(c.name, None)
            if complete:
                self._complete.add(c.name)
        self.on_complete(c.job)

    def _capture(self, c: ContainerInfo) -> bool:
        capture = c.labels.get(LABEL_LOG_CAPTURE, "true") != "false"
        self.store.ensure_job_dirs(c.job)
        path = self.store.log_path(c.job, capture)
        cursor_path = self._cursor_path(c.job)
        cur = read_json(cursor_path)
        cur = cur if isinstance(cur, dict) else None
        fd = _open_log(path)
        try:
            size = os.fstat(fd).st_size
            if cur is not None and cur.get("container") == c.name:
                if cur.get("complete"):
                    return True
                offset, ts, count = min(int(cur["offset"]), size), int(cur["ts"]), int(cur["count"])
            else:
                # a new attempt: drop a header a crash may have left half-written, then write it whole. The old
                # cursor's offset counts only if it describes this same file (logCapture may have changed).
                same_file = cur is not None and cur.get("file") == path.name and cur.get("complete")
                prev_end = int(cur["offset"]) if same_file and cur is not None else size
                offset = min(prev_end, size)
                if offset > 0 and os.pread(fd, 1, offset - 1) != b"\n":
                    os.pwrite(fd, b"\n", offset)
                    offset += 1
                header = (
                    f"===== opeva: job {c.job} attempt {c.attempt} container {c.name} "
                    f"generation {c.generation} capture started {iso(utcnow())} =====\n"
                ).encode()
                os.ftruncate(fd, offset)
                os.pwrite(fd, header, offset)
                offset += len(header)
                ts, count = 0, 0
                self._persist(fd, cursor_path, c.name, path.name, offset, ts, count, False)
            if size > offset:
                os.ftruncate(fd, offset)
            last_persist = time.monotonic()
            # Resuming: frames up to the cursor are already in the file. Docker stamps stdout and stderr apart, so
            # stamps can run slightly backwards; once past the cursor every frame is written, in stream order.
            resume_ts, skip = ts, count
            since = ts / 1e9 - 1 if ts else None
            for frame in self.runtime.logs(c.name, since):
                stamp, _, payload = frame.partition(b" ")
                try:
                    t = timestamp_ns(stamp.decode())
                except ValueError:
                    t, payload = ts, frame
                if resume_ts:
                    if t < resume_ts or (t == resume_ts and skip > 0):
                        skip -= t == resume_ts
                        continue
                    resume_ts = 0
                os.pwrite(fd, payload, offset)
                offset += len(payload)
                crash_point("mid_log")
                if t > ts:
                    ts, count = t, 1
                elif t == ts:
                    count += 1
                if time.monotonic() - last_persist >= self.persist_every:
                    self._persist(fd, cursor_path, c.name, path.name, offset, ts, count, False)
                    last_persist = time.monotonic()
            after = self.runtime.inspect(c.name)
            complete = after is None or after.exited
            self._persist(fd, cursor_path, c.name, path.name, offset, ts, count, complete)
            return complete
        finally:
            os.close(fd)

    @staticmethod
    def _persist(
        fd: int, cursor_path: Path, container: str, file: str, offset: int, ts: int, count: int, complete: bool
    ) -> None:
        os.fsync(fd)
        atomic_write_json(
            cursor_path,
            {"container": container, "file": file, "offset": offset, "ts": ts, "count": count, "complete": complete},
        )


def _open_log(path: Path) -> int:
    """The log file for writing, never through a link: the job can write logs/ and could plant one there to make
    the controller write into a host file or another job's record. A planted link or FIFO is removed."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    for _ in range(2):
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            log.warning("log_file_was_a_link", path=str(path), message="removed a link the job put in place of its log")
            os.unlink(path)
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        log.warning("log_file_not_regular", path=str(path), message="removed a non-file in place of the log")
        os.unlink(path)
    raise OSError(errno.EEXIST, f"{path} keeps being replaced by something that is not a file")
