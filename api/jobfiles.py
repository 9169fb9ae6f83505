"""Streaming a log a job writes: windows (`offset`, `tail`), ranges and `follow`, in chunks, never read whole.

The files are opened by `controller.jobfiles.open_job_file`, the one rule for files a job could have written.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import IO

import anyio

from controller.errors import OutOfRange

CHUNK = 256 * 1024
MAX_TAIL_SCAN = 64 * 1024 * 1024


def file_size(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_size


def tail_start(f: IO[bytes], end: int, lines: int, floor: int = 0) -> int:
    """Offset where the last `lines` lines before `end` begin (an unterminated last line counts), not below `floor`.

    Read backwards from the end, at most MAX_TAIL_SCAN bytes: a huge log without newlines (or a sparse one) costs
    no more than that, and its tail is then the last MAX_TAIL_SCAN bytes."""
    if lines <= 0:
        return end
    floor = max(floor, end - MAX_TAIL_SCAN)
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
        raise OutOfRange(f"offset {start} is past the end of the log ({size} bytes)", size)
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
