"""Reading files a job writes itself (logs, progress, results) without trusting them.

A job can write into its own `logs/`, `progress/` and `results/` folders, so it can also put a symlink, a FIFO or a
10 GB file there. Files are opened only if their real path is inside the data folder and they are regular files;
JSON is parsed only up to a size cap; logs are streamed in chunks, never read whole.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import anyio

from .errors import ApiError, InvalidInput, UnsafePath

CHUNK = 256 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024


def safe_open(path: Path, root: Path) -> IO[bytes] | None:
    """The regular file at `path` opened for reading, or None if it is missing; ApiError if it points outside `root`."""
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
        raise ApiError(409, f"{path.name} cannot be read: {err}") from None
    if not real.is_relative_to(root.resolve()):
        raise ApiError(409, f"{path.name} is a link that points outside the data folder; it is not served")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ApiError(409, f"{path.name} cannot be read: {err.strerror or err}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ApiError(409, f"{path.name} is not a regular file; it is not served")
    return os.fdopen(fd, "rb")


def read_json_file(path: Path, root: Path) -> tuple[bool, Any]:
    """(found, value) for a JSON file a job wrote; a file over the cap or not (yet) valid JSON is a 409."""
    f = safe_open(path, root)
    if f is None:
        return False, None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_JSON_BYTES:
            raise ApiError(409, f"{path.name} is {size} bytes; the API serves JSON files up to {MAX_JSON_BYTES} bytes")
        data = f.read(MAX_JSON_BYTES + 1)
    try:
        return True, json.loads(data)
    except ValueError:
        raise ApiError(409, f"{path.name} is not valid JSON (the job may be writing it right now; try again)") from None


def file_size(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_size


def tail_start(f: IO[bytes], end: int, lines: int, floor: int = 0) -> int:
    """Offset where the last `lines` lines before `end` begin (an unterminated last line counts), not below `floor`."""
    if lines <= 0:
        return end
    fd = f.fileno()
    stop = end
    if end > floor and os.pread(fd, 1, end - 1) == b"\n":
        stop = end - 1  # the final newline ends the last line; it does not start a new one
    found = 0
    pos = stop
    while pos > floor:
        start = max(floor, pos - CHUNK)
        block = os.pread(fd, pos - start, start)
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            found += 1
            if found == lines:
                return start + idx + 1
        pos = start
    return floor


def log_window(f: IO[bytes], offset: int | None, tail: int | None) -> tuple[int, int]:
    """(start, end) of the bytes to send for `offset` and `tail`; end is the size when the request came in."""
    size = file_size(f)
    start = offset or 0
    if start > size:
        raise ApiError(
            416, f"offset {start} is past the end of the log ({size} bytes)", headers={"X-Next-Offset": str(size)}
        )
    if tail is not None:
        start = tail_start(f, size, tail, floor=start)
    return start, size


async def stream_range(f: IO[bytes], start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of an open file, in chunks; closes the file."""
    try:
        pos = start
        while pos < end:
            data = await anyio.to_thread.run_sync(os.pread, f.fileno(), min(CHUNK, end - pos), pos)
            if not data:
                break
            pos += len(data)
            yield data
    finally:
        f.close()


async def follow(
    open_file: Callable[[], IO[bytes] | None],
    start: int,
    finished: Callable[[], bool],
    poll: float = 0.25,
    settle: float = 0.5,
) -> AsyncIterator[bytes]:
    """Stream a growing file from `start`: new bytes as they are written, until `finished()` and the file is drained.

    After `finished()` turns true the file is still read until it has been quiet for `settle` seconds, so lines the
    controller flushes just after it records the end of the job are not lost.
    """
    f = open_file()
    pos = start
    quiet_since: float | None = None
    try:
        while True:
            if f is None:
                f = open_file()
            data = b""
            if f is not None:
                data = await anyio.to_thread.run_sync(os.pread, f.fileno(), CHUNK, pos)
            if data:
                pos += len(data)
                quiet_since = None
                yield data
                continue
            if quiet_since is None:
                quiet_since = anyio.current_time()
                done = await anyio.to_thread.run_sync(finished)
                if not done:
                    quiet_since = None
            elif anyio.current_time() - quiet_since >= settle:
                return
            await anyio.sleep(poll)
    finally:
        if f is not None:
            f.close()


def open_beneath(root: Path, parts: tuple[str, ...], *, directory: bool = False) -> int | None:
    """A descriptor for root/parts[0]/.../parts[-1], every component opened with O_NOFOLLOW from its parent's fd, so
    no link (even one swapped in meanwhile) leads out of `root`. None if a component is missing; UnsafePath if one is
    a link, not a folder, or (for a file) not a regular file."""
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags_dir)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnsafePath(
            f"{root.name} is a link or cannot be opened ({err.strerror or err}); it is not served"
        ) from None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            os.close(fd)
            raise InvalidInput(f"invalid path component {part!r}")
        flags = flags_dir if (not last or directory) else os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            nfd = os.open(part, flags, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise UnsafePath(f"{'/'.join(parts)} is a link or not what was asked for; it is not served") from None
        os.close(fd)
        fd = nfd
    if not directory and parts and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{'/'.join(parts)} is not a regular file; it is not served")
    return fd
