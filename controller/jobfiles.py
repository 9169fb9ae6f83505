"""The one rule for opening a file that a job (or anyone but the controller) could have written: never follow a link,
never open anything but a regular file, never race.

A job writes its own `logs/`, `progress/`, `results/` and `outputs/`, so it can put a symlink, a FIFO, a device node,
a setuid binary or a 20 GB sparse file there, and it can swap a folder for a link while we look (`renameat2` with
`RENAME_EXCHANGE` in a loop). Checking a path and then opening it by name again loses that race. So the path is
resolved from a descriptor of the trusted root by the kernel in one step, refusing every link on the way
(`openat2` with `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`; on kernels without it, a walk with `O_NOFOLLOW` per
component). The file is first opened as an `O_PATH` handle, checked with `fstat` (a regular file, no setuid/setgid
bit, under the size cap), and only then reopened for reading through that same handle: what is read is the inode
that was checked, whatever the job renames meanwhile, and a FIFO or a device node is never opened.

The API, the MLflow mirror and uploads, and the archiver all open job files through here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InvalidInput, UnsafePath

MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 200  # progress.json / result.json nested deeper than this is refused, not a crash

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _O_CLOEXEC
_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


try:
    _syscall = ctypes.CDLL(None, use_errno=True).syscall
    _syscall.restype = ctypes.c_long
except (OSError, AttributeError):  # not glibc/musl: the per-component walk below does the same, a little slower
    _syscall = None
_openat2_works = _syscall is not None


class UnsafeFile(UnsafePath, OSError):
    """A file that must not be read: a link, not a regular file, setuid/setgid, too big, or not valid JSON."""


def _rel(root: Path | str, path: Path | str) -> str:
    """`path` relative to `root` (lexically, nothing resolved); UnsafeFile for anything that could leave it."""
    p, r = os.fspath(path), os.fspath(root).rstrip("/")
    if p.startswith("/"):
        if not p.startswith(r + "/"):
            raise UnsafeFile(f"{path} is not inside {root}")
        p = p[len(r) + 1 :]
    parts = p.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeFile(f"{path} is not a plain path inside {root}")
    return p


def _open_beneath(root: Path | str, rel: str, flags: int) -> int | None:
    """A descriptor of ROOT/rel opened with `flags`, no component below `root` being a link (race-free); None when
    it does not exist. `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` where the kernel has it, else a walk from a
    folder descriptor with O_NOFOLLOW per component."""
    global _openat2_works
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | _O_CLOEXEC)  # the root is the operator's: it may be a link
    try:
        if _openat2_works and _syscall is not None:
            how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
            for _ in range(3):
                fd = _syscall(_SYS_OPENAT2, rootfd, rel.encode(), ctypes.byref(how), ctypes.c_size_t(24))
                if fd >= 0:
                    return int(fd)
                err = ctypes.get_errno()
                if err != errno.EAGAIN:
                    break
            if err in (errno.ENOSYS, errno.EPERM):  # an old kernel, or a seccomp filter that forbids openat2
                _openat2_works = False
            else:
                _refuse(err, rel)
                return None
        return _walk(rootfd, rel, flags)
    finally:
        os.close(rootfd)


def _walk(rootfd: int, rel: str, flags: int) -> int | None:
    parts = rel.split("/")
    fd = rootfd
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                _refuse(err.errno or 0, rel)
                return None
            if fd != rootfd:
                os.close(fd)
            fd = nxt
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            _refuse(err.errno or 0, rel)
            return None
    finally:
        if fd != rootfd:
            os.close(fd)


def _refuse(err: int, rel: str) -> None:
    """Returns for a path that does not exist; UnsafeFile for a link on the way; OSError for anything else."""
    if err == errno.ENOENT:
        return None
    shown = "/".join(rel.split("/")[-2:])
    if err in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
        raise UnsafeFile(f"{shown} is (or lies under) a symbolic link; it is not followed")
    raise OSError(err, f"{shown} cannot be opened: {os.strerror(err)}")


def check_regular(st: os.stat_result, shown: str, max_bytes: int | None = None) -> None:
    """Refuse anything but a plain regular file: links, FIFOs, devices, sockets, setuid/setgid files, too big."""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFile(f"{shown} is a symbolic link; it is not followed")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{shown} is not a regular file; it is not served")
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeFile(f"{shown} has the setuid or setgid bit; it is not served")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnsafeFile(f"{shown} is {st.st_size} bytes; at most {max_bytes} bytes are read")


def open_job_file(root: Path | str, path: Path | str, max_bytes: int | None = None) -> BinaryIO | None:
    """`path` (inside `root`, absolute or relative to it) opened for reading, or None if it does not exist.

    For what a job wrote. UnsafeFile when any component below `root` is a link, or the file is not a plain regular
    file (see `check_regular`). Nothing but a checked regular file is ever opened for reading (a FIFO or a device
    node is only looked at through an O_PATH handle), and the file read is the inode that was checked.
    """
    rel = _rel(root, path)
    handle = _open_beneath(root, rel, os.O_PATH | _O_CLOEXEC)
    if handle is None:
        return None
    return os.fdopen(_checked_reopen(handle, "/".join(rel.split("/")[-2:]), max_bytes), "rb")


def open_at(dirfd: int, name: str, shown: str, max_bytes: int | None = None) -> BinaryIO | None:
    """The entry `name` of the folder `dirfd` by the same rule (for walks that already hold the folder: the
    archiver); None if it does not exist."""
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    return os.fdopen(_checked_reopen(handle, shown, max_bytes), "rb")


def open_beneath_dir(root: Path | str, path: Path | str) -> int:
    """A readable descriptor of the folder `path` inside `root`, no link followed on the way; the caller closes it.
    FileNotFoundError if it does not exist."""
    rel = _rel(root, path)
    fd = _open_beneath(root, rel, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "no such folder", os.fspath(path))
    return fd


def _checked_reopen(handle: int, shown: str, max_bytes: int | None) -> int:
    """Check the O_PATH `handle` (closed here) and open the very inode it holds for reading."""
    try:
        check_regular(os.fstat(handle), shown, max_bytes)
        return os.open(f"/proc/self/fd/{handle}", _READ_FLAGS)
    finally:
        os.close(handle)


def open_beneath(root: Path, parts: tuple[str, ...], *, directory: bool = False) -> int | None:
    """A descriptor for ROOT/parts[0]/.../parts[-1] (a folder with `directory`, else a regular file opened for
    reading), for callers that name the path by its components (configs, a job's files by name). `root` itself must
    not be a link either. None if a component is missing; InvalidInput for a component that is not a plain name;
    UnsafePath (UnsafeFile) for a link on the way or a file that is not a plain regular one."""
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise InvalidInput(f"invalid path component {part!r}")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnsafeFile(
            f"{root.name} is a link or cannot be opened ({err.strerror or err}); it is not served"
        ) from None
    if not parts:
        return fd
    os.close(fd)
    rel = "/".join(parts)
    if directory:
        return _open_beneath(root, rel, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    handle = _open_beneath(root, rel, os.O_PATH | _O_CLOEXEC)
    if handle is None:
        return None
    return _checked_reopen(handle, "/".join(parts[-2:]), None)


def open_record(root: Path | str, path: Path | str, max_bytes: int | None = None) -> BinaryIO | None:
    """A file the controller wrote in its own folders (status.json, job_info.json, ...), where only a local user,
    not a job, could plant something: opened without following any link below `root`, non-blocking, and refused
    unless it is a regular file. Cheaper than `open_job_file` (one open), for the list endpoints."""
    rel = _rel(root, path)
    fd = _open_beneath(root, rel, _READ_FLAGS)
    if fd is None:
        return None
    try:
        check_regular(os.fstat(fd), "/".join(rel.split("/")[-2:]), max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_job_json(root: Path, path: Path | str, max_bytes: int = MAX_JSON_BYTES) -> tuple[bool, Any]:
    """(found, value) of a JSON file a job wrote. UnsafeFile for an unsafe or oversized file, or content that is not
    (yet) valid JSON or nests deeper than MAX_JSON_DEPTH."""
    f = open_job_file(root, path, max_bytes)
    if f is None:
        return False, None
    with f:
        data = f.read(max_bytes + 1)
    return True, parse_job_json(data, Path(path).name)


def parse_job_json(data: bytes, shown: str) -> Any:
    """JSON a job wrote: a value nested at most MAX_JSON_DEPTH levels, else UnsafeFile (a 4xx, never a crash)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise UnsafeFile(f"{shown} nests deeper than {MAX_JSON_DEPTH} levels; it is not read") from None
    except ValueError:
        raise UnsafeFile(f"{shown} is not valid JSON (the job may be writing it right now; try again)") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise UnsafeFile(f"{shown} nests deeper than {MAX_JSON_DEPTH} levels; it is not read")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((item, d + 1) for item in v if isinstance(item, (dict, list)))
    return deepest
