"""The data folder: paths, atomic writes, events, the derived index and the controller lock.

This is the only code that writes job records. Every JSON record is written temp + fsync + rename, so a reader (the
API, a user, a controller restarted after a crash) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from . import jobfiles
from .archive import write_archive
from .jobpaths import (
    EVENTS_FILE,
    JOB_INFO_FILE,
    JOB_SUBDIRS,
    JOBS_DIR,
    PROGRESS_FILE,
    RECORD_FILES,
    STATUS_FILE,
    log_file,
)
from .jobrow import Row, row_dict, track_row
from .spec import is_valid_name
from .status import Event, JobStatus, iso, utcnow

log = structlog.get_logger("opeva.store")

DELETED_ARCHIVE = "archive/deleted"
# job_info keys that describe a submission rather than record a decision (written by /run-simulation)
DESCRIPTIVE_INFO = frozenset(
    {"job_name", "run_name", "experiment_name", "submitted_by", "config_path", "target_host"}
)  # where DELETE /job/ID moves a job's files, kept for the retention period
_JOB_INFO_LOCK = threading.Lock()


class StoreError(Exception):
    """A write to the data folder failed (disk full, permissions); the message says which file and why."""


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True, root: Path | None = None) -> None:
    """Write `data` to `path` so that a crash leaves either the old or the new content.

    `durable=False` skips the fsyncs: readers still never see half a file, but a power cut may lose the write
    (right for a heartbeat, which is rewritten every few seconds anyway). With `root`, no folder between it and
    `path` may be a link (a user who can write the data folder cannot redirect the write). The temp file is
    created exclusively and the rename replaces a planted link at `path` itself, never what it points to.
    """
    tmp = f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        dirfd = (
            jobfiles.open_beneath_dir(root, path.parent)
            if root is not None and path.parent != root
            else os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        )
    except OSError as err:  # UnsafeFile included
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        try:
            _unlink_at(dirfd, tmp)  # a crash's leftover, or a planted link: O_EXCL below must create it anew
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, path.name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except OSError as err:
            _unlink_at(dirfd, tmp)
            raise StoreError(f"cannot write {path}: {err.strerror or err}") from err
        if durable:
            try:
                os.fsync(dirfd)
            except OSError:
                pass
    finally:
        os.close(dirfd)


def _unlink_at(dirfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dirfd)
    except OSError:
        pass


def ensure_dirs(root: Path, path: Path) -> Path:
    """Create the folders from `root` down to `path`, none of them a link: a link planted where a folder belongs
    is removed (never followed), anything else that is not a folder is a StoreError."""
    rel = path.relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    log.warning("planted_link_removed", path=str(path), link=part)
                    os.unlink(part, dir_fd=fd)
                    os.mkdir(part, 0o755, dir_fd=fd)
                elif not stat.S_ISDIR(st.st_mode):
                    raise StoreError(f"{root.joinpath(*rel)}: {part} exists and is not a folder") from None
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:  # swapped for a link meanwhile
                raise StoreError(f"{path}: {part} cannot be opened as a folder: {err.strerror or err}") from err
            os.close(fd)
            fd = nxt
    except OSError as err:
        raise StoreError(f"cannot create {path}: {err.strerror or err}") from err
    finally:
        os.close(fd)
    return path


def atomic_write_json(path: Path, obj: Any, root: Path | None = None) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), root=root)


def _open_append(dirfd: int, name: str, shown: Path) -> int:
    """`name` in `dirfd` opened for appending, created if missing; a link or a non-regular file planted there is
    removed first (O_NOFOLLOW: never opened through)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(2):
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                log.warning("planted_file_removed", path=str(shown), mode=oct(st.st_mode))
                os.unlink(name, dir_fd=dirfd)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dirfd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENXIO):  # planted between the check and the open: once more
                continue
            raise
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    raise OSError(errno.ELOOP, f"{shown} keeps being replaced by a link or a special file")


def read_record(root: Path, path: Path) -> Any | None:
    """A JSON record the controller wrote under `root`, read without following a link anyone planted; None when
    missing, refused or not JSON."""
    try:
        f = jobfiles.open_record(root, path, jobfiles.MAX_JSON_BYTES)
        if f is None:
            return None
        with f:
            return json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None


def _status_bytes(status: JobStatus) -> bytes:
    return (json.dumps(status.model_dump(mode="json"), indent=2) + "\n").encode()


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


MAX_JOB_JSON_BYTES = 1024 * 1024


def read_json(path: Path) -> Any | None:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


class LockHeld(Exception):
    """Another controller owns this data folder."""


@dataclass
class DataStore:
    """Paths and records of one data folder."""

    root: Path
    specs_dir: Path

    @classmethod
    def open(cls, root: Path | str, specs_dir: Path | str | None = None) -> DataStore:
        root = Path(root).absolute()
        specs = Path(specs_dir).absolute() if specs_dir else root / "specs"
        for d in (root, specs):
            d.mkdir(parents=True, exist_ok=True)  # the operator's: they may be links on purpose
        for d in (root / JOBS_DIR, root / ".opeva"):
            ensure_dirs(root, d)
        return cls(root, specs)

    # ---- paths -------------------------------------------------------------------------------------------
    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS_DIR

    @property
    def state_dir(self) -> Path:
        return self.root / ".opeva"

    def job_dir(self, name: str) -> Path:
        if not is_valid_name(name):  # names are DNS labels, so a path can never leave jobs/
            raise ValueError(f"invalid job name {name!r}")
        return self.jobs_dir / name

    def status_path(self, name: str) -> Path:
        """The authoritative status, outside the job's writable folder (a job cannot change what was decided)."""
        self.job_dir(name)  # validates the name
        return self.state_dir / "status" / f"{name}.json"

    def status_copy_path(self, name: str) -> Path:
        """DATA/jobs/NAME/status.json: a copy for people and the seed's readers, never read back by the controller
        once the authoritative record exists (the job can write into its folder)."""
        return self.job_dir(name) / STATUS_FILE

    def has_status(self, name: str) -> bool:
        return self.status_path(name).is_file() or self.status_copy_path(name).is_file()

    def log_path(self, name: str, capture: bool = True) -> Path:
        return self.job_dir(name) / log_file(name, capture)

    def progress_path(self, name: str) -> Path:
        return self.job_dir(name) / PROGRESS_FILE

    # ---- files the job wrote (never trusted: see jobfiles) -----------------------------------------------------
    def open_job_file(self, path: Path, max_bytes: int | None = None) -> BinaryIO | None:
        """A file inside the data folder opened by the one safe rule; None if missing, UnsafeFile if refused."""
        return jobfiles.open_job_file(self.root, path, max_bytes)

    def job_json_or_none(self, path: Path) -> Any | None:
        """A JSON file the job may have written, by the same rule; None if absent, refused or not JSON."""
        try:
            return jobfiles.read_job_json(self.root, path, MAX_JOB_JSON_BYTES)[1]
        except OSError:  # UnsafeFile included
            return None

    def read_job_json(self, path: Path) -> tuple[bool, Any]:
        """(found, value) of a JSON file a job wrote, by the one safe rule; UnsafeFile if refused or invalid."""
        return jobfiles.read_job_json(self.root, path)

    def ensure_job_dirs(self, name: str) -> Path:
        """The job's folder and the four it gets mounted, real folders (a planted link is removed, not followed)."""
        d = self.job_dir(name)
        for sub in JOB_SUBDIRS:
            ensure_dirs(self.root, d / sub)
        return d

    def ensure_records(self, name: str) -> None:
        """Create the record files a container gets read-only over its writable folder, without following links."""
        try:
            dirfd = jobfiles.open_beneath_dir(self.root, self.job_dir(name))
        except OSError as err:
            raise StoreError(f"cannot open the folder of job {name}: {err.strerror or err}") from err
        try:
            os.close(_open_append(dirfd, EVENTS_FILE, self.job_dir(name) / EVENTS_FILE))  # a planted link is removed
        except OSError as err:
            raise StoreError(f"cannot create the records of job {name}: {err.strerror or err}") from err
        finally:
            os.close(dirfd)

    # ---- records -----------------------------------------------------------------------------------------
    def read_status(self, name: str) -> JobStatus | None:
        data = read_record(self.root, self.status_path(name))
        if data is None and not os.path.lexists(self.status_path(name)):
            data = self.job_json_or_none(self.status_copy_path(name))  # a folder from before the record moved
        if not isinstance(data, dict):
            return None
        try:
            return JobStatus.model_validate(data)
        except ValueError:
            log.warning("status_unreadable", job=name)
            return None

    def write_status(self, status: JobStatus) -> None:
        self.ensure_job_dirs(status.name)
        data = _status_bytes(status)
        path = self.status_path(status.name)
        ensure_dirs(self.root, path.parent)
        atomic_write_bytes(path, data, root=self.root)
        atomic_write_bytes(self.status_copy_path(status.name), data, durable=False, root=self.root)

    def restore_status_copy(self, status: JobStatus) -> bool:
        """Rewrite jobs/NAME/status.json when it is not the record's copy; True if it was rewritten.

        The record and its copy are two atomic writes: a crash between them leaves the copy one step behind, and
        for a finished job no later write would ever bring it in step."""
        data = _status_bytes(status)
        path = self.status_copy_path(status.name)
        try:
            f = self.open_job_file(path, len(data) + 1)
            if f is not None:
                with f:
                    if f.read(len(data) + 1) == data:  # the job can make the file grow after the open
                        return False
        except OSError:  # refused (a link, too big, not a file): replaced below, never followed
            pass
        self.ensure_job_dirs(status.name)
        atomic_write_bytes(path, data, durable=False, root=self.root)
        return True

    def job_info_record_path(self, name: str) -> Path:
        """The controller's own job_info keys, outside the job's folder, so a job cannot change them."""
        return self.state_dir / "jobinfo" / f"{name}.json"

    def write_job_info(self, name: str, info: dict[str, Any]) -> None:
        """Merge `info` into the job's info: the controller's record first, then `job_info.json` in the job's folder.

        The job may write job_info.json itself (the OPEVA simulator merges its own keys into it), so the file is
        rebuilt as the job's keys overlaid with the controller's: the job's keys survive, the controller's win.
        Several writers (workers, MLflow sender) share it, so one at a time.
        """
        record = self.job_info_record_path(name)
        path = self.job_dir(name) / JOB_INFO_FILE
        with _JOB_INFO_LOCK:
            current = _mapping(read_record(self.root, record))
            merged = {**current, **info}
            if merged != current:
                ensure_dirs(self.root, record.parent)
                atomic_write_json(record, merged, root=self.root)
            on_file = _mapping(self.job_json_or_none(path))
            shown = {**on_file, **{k: v for k, v in merged.items() if k not in DESCRIPTIVE_INFO or k not in on_file}}
            if shown != on_file:
                atomic_write_json(path, shown, root=self.root)

    def read_job_info(self, name: str) -> dict[str, Any] | None:
        """The job's info as served: the keys the job wrote, overlaid with the controller's; None if neither exists.

        The submission's descriptive keys (DESCRIPTIVE_INFO) are the exception: the job may refine them, as the OPEVA
        simulator writes its `run_name`, so the job's value is shown when it wrote one."""
        own = read_record(self.root, self.job_info_record_path(name))
        written = self.job_json_or_none(self.job_dir(name) / JOB_INFO_FILE)
        if not isinstance(own, dict) and not isinstance(written, dict):
            return None
        own = _mapping(own)
        described = {k: v for k, v in own.items() if k in DESCRIPTIVE_INFO}
        decided = {k: v for k, v in own.items() if k not in DESCRIPTIVE_INFO}
        return {**described, **_mapping(written), **decided}

    def append_events(self, name: str, events: list[Event]) -> None:
        """Append whole lines with one write, so concurrent readers never see a partial line."""
        if not events:
            return
        data = "".join(json.dumps(e.model_dump(mode="json"), separators=(",", ":")) + "\n" for e in events)
        path = self.job_dir(name) / EVENTS_FILE
        try:
            dirfd = jobfiles.open_beneath_dir(self.root, path.parent)
        except OSError as err:
            raise StoreError(f"cannot append to {path}: {err.strerror or err}") from err
        try:
            fd = _open_append(dirfd, EVENTS_FILE, path)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = "\n" + data  # a line cut by a full disk ends here, so the next one starts whole
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise StoreError(f"cannot append to {path}: {err.strerror or err}") from err
        finally:
            os.close(dirfd)

    def read_events(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        path = self.job_dir(name) / EVENTS_FILE
        try:
            f = jobfiles.open_record(self.root, path)
            if f is None:
                return []
            with f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines[-limit:] if limit else lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a full disk is skipped, not fatal
        return out

    def recorded_jobs(self) -> Iterator[str]:
        """Names with a job folder or a status record (a collection cut short may leave only the record)."""
        seen = set()
        for folder, suffix in ((self.jobs_dir, ""), (self.state_dir / "status", ".json")):
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        name = entry.name.removesuffix(suffix) if suffix else entry.name
                        if suffix and not entry.name.endswith(suffix):
                            continue
                        if name not in seen and is_valid_name(name) and (suffix or entry.is_dir()):
                            seen.add(name)
                            yield name
            except FileNotFoundError:
                continue

    def collect_job(self, name: str, artifacts: str, finished_at: str, folder: str = "archive") -> Path | None:
        """Remove a job's record. Artifacts are kept in place, archived whole to DATA/archive/, or deleted.

        The status file goes last, so a crash part-way leaves a record that is collected again, never half a job.
        """
        d = self.job_dir(name)
        archive = None
        try:
            if artifacts == "archive":
                archive_dir = ensure_dirs(self.root, self.root / folder)
                stamp = finished_at.replace(":", "").replace("-", "")
                archive = archive_dir / f"{name}-{stamp}.tar.gz"
                if not os.path.lexists(archive):  # a retry after a part-way removal keeps the first, whole archive
                    self._archive(d, name, archive)
            if artifacts in ("archive", "delete"):
                if d.is_symlink():  # planted: remove the link, never what it points to
                    d.unlink()
                    return archive
                for entry in d.iterdir():
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                d.rmdir()
            else:
                for record in RECORD_FILES:
                    (d / record).unlink(missing_ok=True)
            (self.state_dir / "cursors" / f"{name}.json").unlink(missing_ok=True)
            shutil.rmtree(self.state_dir / "history" / name, ignore_errors=True)  # controller/sampler.py
            self.job_info_record_path(name).unlink(missing_ok=True)
            self.status_path(name).unlink(missing_ok=True)  # last: a crash part-way is collected again
        except OSError as err:
            raise StoreError(f"cannot collect job {name} ({artifacts}): {err.strerror or err}") from err
        return archive

    # ---- deletions: a job the user deleted, waiting to be stopped and archived --------------------------------
    def _deleted_path(self, name: str) -> Path:
        self.job_dir(name)  # validates the name
        return self.state_dir / "deleted" / name

    def mark_deleted(self, name: str) -> None:
        path = self._deleted_path(name)
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, (iso(utcnow()) or "").encode())

    def is_deleted(self, name: str) -> bool:
        return self._deleted_path(name).is_file()

    def clear_deleted(self, name: str) -> None:
        self._deleted_path(name).unlink(missing_ok=True)

    def deleted_jobs(self) -> set[str]:
        try:
            return {n for n in os.listdir(self.state_dir / "deleted") if is_valid_name(n)}
        except FileNotFoundError:
            return set()

    def prune_archive(self, retention_days: float | None) -> list[Path]:
        """Remove deleted jobs' archives (DATA/archive/deleted) older than the retention; each removal is logged."""
        if retention_days is None:
            return []
        cutoff = utcnow().timestamp() - retention_days * 86400
        removed = []
        try:
            entries = list(os.scandir(self.root / DELETED_ARCHIVE))
        except FileNotFoundError:
            return []
        for entry in entries:
            try:
                old = entry.name.endswith(".tar.gz") and entry.is_file(follow_symlinks=False)
                if old and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                    log.info("archive_pruned", archive=entry.name, retention_days=retention_days)
            except OSError as err:
                log.warning("archive_prune_failed", archive=entry.name, error=str(err))
        return removed

    def _archive(self, job_dir: Path, name: str, archive: Path) -> None:
        """Write the job's folder to `archive` (temp + rename, no link followed: see controller/archive.py)."""
        dirfd = jobfiles.open_beneath_dir(self.root, archive.parent)
        tmp = f".{archive.name}.tmp"
        try:
            _unlink_at(dirfd, tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd)
            with os.fdopen(fd, "wb") as out:
                write_archive(self.root, job_dir, name, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, archive.name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        finally:
            _unlink_at(dirfd, tmp)
            os.close(dirfd)

    # ---- index and heartbeat -----------------------------------------------------------------------------
    def write_job_track(self, statuses: dict[str, JobStatus]) -> None:
        """The seed's index, derived from the per-job records: it can always be rebuilt, so it is never the truth."""
        self.write_job_rows(track_row(s) for _, s in sorted(statuses.items()))

    def write_job_rows(self, rows: Iterable[Row]) -> None:
        """job_track.json from job-list rows (sorted by name)."""
        track = {row[0]: row_dict(row) for row in rows}
        atomic_write_bytes(
            self.root / "job_track.json", json.dumps(track, separators=(",", ":")).encode(), root=self.root
        )

    def write_heartbeat(self, info: dict[str, Any]) -> None:
        atomic_write_bytes(
            self.state_dir / "heartbeat.json",
            json.dumps({"time": iso(utcnow()), "pid": os.getpid(), "host": socket.gethostname(), **info}).encode(),
            durable=False,
            root=self.root,
        )

    def instance_id(self) -> str:
        """A random id for this data folder, kept in it: labels and names scope containers to one folder."""
        path = self.state_dir / "instance-id"
        try:
            f = jobfiles.open_record(self.root, path, 64)
            if f is not None:
                with f:
                    value = f.read().decode(errors="replace").strip()
                if value:
                    return value
        except OSError:
            pass  # a planted link or junk: replaced below
        value = os.urandom(3).hex()
        atomic_write_bytes(path, (value + "\n").encode(), root=self.root)
        return value

    # ---- the controller lock -----------------------------------------------------------------------------
    def acquire_lock(self) -> ControllerLock:
        return ControllerLock.acquire(self.state_dir / "controller.lock")


class ControllerLock:
    """An flock on DATA/.opeva/controller.lock; the kernel releases it when the process dies, even by SIGKILL."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, path: Path) -> ControllerLock:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise StoreError(
                    f"{path} is a symbolic link, which the controller never follows (someone planted it?); "
                    "remove it and start again"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{path} is not a regular file; remove it and start again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = ""
            try:
                holder = os.pread(fd, 256, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(
                    f"another controller already manages this data folder ({holder or 'unknown holder'}); "
                    f"lock file: {path}"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
