"""A job's log as the old backend served it: the container's own output first, then the log file the job wrote.

A job with `logCapture: false` (the OPEVA simulator) writes `logs/NAME.log` itself, and the controller keeps what the
container printed in `logs/NAME.stdout.log`. The old workers appended both to one file, so a crash before the job
opened its log was still visible. Here the two files are read as one: stdout log, then the job's log. Offsets
(`next_offset`) count bytes of that sequence; output the container prints after the job opened its own log appears
in the next full read (`/logs/ID`) and tail, not in a chunk already polled past.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from controller.store import DataStore

from .jobfiles import stream_range


@dataclass
class MergedLog:
    parts: list[tuple[IO[bytes], int]]  # open file, size when opened

    @classmethod
    def open(cls, store: DataStore, name: str) -> MergedLog:
        parts: list[tuple[IO[bytes], int]] = []
        for capture in (False, True):
            f = store.open_job_file(store.log_path(name, capture=capture))
            if f is not None:
                parts.append((f, os.fstat(f.fileno()).st_size))
        return cls(parts)

    @property
    def exists(self) -> bool:
        return bool(self.parts)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts)

    def close(self) -> None:
        for f, _ in self.parts:
            f.close()

    def read(self, start: int, length: int) -> bytes:
        out = []
        pos = 0
        for f, size in self.parts:
            if length <= 0:
                break
            if start < pos + size:
                offset = max(0, start - pos)
                take = min(length, size - offset)
                data = os.pread(f.fileno(), take, offset)
                out.append(data)
                length -= len(data)
                start = pos + offset + len(data)
            pos += size
        return b"".join(out)

    def chunk(self, offset: int | None, tail_lines: int, max_bytes: int) -> tuple[str, int, bool]:
        """(text, next_offset, truncated): the last `tail_lines` lines (at most `max_bytes`) when `offset` is None,
        else up to `max_bytes` from `offset`."""
        total = self.size
        if offset is None:
            start = max(0, total - max_bytes)
            data = self.read(start, total - start)
            body = data[:-1] if data.endswith(b"\n") else data
            lines = body.split(b"\n")
            if len(lines) > tail_lines:
                keep = b"\n".join(lines[-tail_lines:]) + (b"\n" if data.endswith(b"\n") else b"")
                return keep.decode("utf-8", errors="replace"), total, True
            return data.decode("utf-8", errors="replace"), total, start > 0
        start = min(offset, total)
        data = self.read(start, min(max_bytes, total - start))
        end = start + len(data)
        return data.decode("utf-8", errors="replace"), end, end < total

    async def stream(self) -> AsyncIterator[bytes]:
        """All parts in order; closes the files."""
        try:
            for f, size in self.parts:
                async for data in stream_range(f, 0, size):
                    yield data
        finally:
            self.close()
