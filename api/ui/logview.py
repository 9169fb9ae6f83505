"""A job's log as the dashboard shows it: one attempt's section or the whole file, a tail, then new bytes as they come.

The controller writes a header line before each attempt's output (controller/logcapture.py):
`===== opeva: job NAME attempt N container CONTAINER ...`, so an attempt's section runs from its header to the next
one. Files are opened with the API's rule for files a job wrote (api/jobfiles.py): no links out, regular files only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from .. import jobfiles

SCAN_CHUNK = 1024 * 1024
MAX_CHUNK = 256 * 1024  # bytes sent per poll


@dataclass(frozen=True)
class Section:
    attempt: int
    start: int  # offset of its header line
    end: int | None  # offset of the next header, None while it is the last section


def header_prefix(job: str) -> bytes:
    return f"===== opeva: job {job} attempt ".encode()


def sections(f: IO[bytes], job: str) -> list[Section]:
    """Every attempt header in the file, in order (a run's attempts restart at 1 after a rerun: each one is kept)."""
    prefix = b"\n" + header_prefix(job)
    fd, size = f.fileno(), jobfiles.file_size(f)
    found: list[tuple[int, int]] = []
    pos, carry = 0, b"\n"  # a header on the very first line counts too
    while pos < size:
        block = os.pread(fd, min(SCAN_CHUNK, size - pos), pos)
        if not block:
            break
        data = carry + block
        base = pos - len(carry)
        i = data.find(prefix)
        while i >= 0:
            line_end = data.find(b"\n", i + 1)
            words = data[i + len(prefix) : line_end if line_end >= 0 else len(data)].split()
            if words and words[0].isdigit():
                found.append((int(words[0]), base + i + 1))
            i = data.find(prefix, i + 1)
        carry = data[-(len(prefix) + 20) :]
        pos += len(block)
    unique = sorted(set(found), key=lambda item: item[1])
    return [
        Section(attempt, start, unique[k + 1][1] if k + 1 < len(unique) else None)
        for k, (attempt, start) in enumerate(unique)
    ]


def pick(all_sections: list[Section], index: int | None) -> Section | None:
    """The chosen section by its place in the file (1-based), None for the whole log."""
    if index is None or not 1 <= index <= len(all_sections):
        return None
    return all_sections[index - 1]


@dataclass(frozen=True)
class Chunk:
    text: str
    next_offset: int
    ended: bool  # the section is closed: nothing more will be appended to it
    truncated: bool  # the first view starts after the beginning


def read_chunk(f: IO[bytes], section: Section | None, offset: int | None, final: bool, tail_lines: int = 500) -> Chunk:
    """The first view (the last `tail_lines` lines) when offset is None, else the bytes after `offset`.

    A last line without its newline is held back until it is complete, unless the job is `final` (ended)."""
    size = jobfiles.file_size(f)
    floor = section.start if section else 0
    end = section.end if section and section.end is not None else size
    if offset is None:
        start = jobfiles.tail_start(f, end, tail_lines, floor=floor)
        truncated = start > floor
    else:
        start, truncated = min(max(offset, floor), end), False
    stop = min(end, start + MAX_CHUNK)
    data = os.pread(f.fileno(), stop - start, start) if stop > start else b""
    if stop < end or not (final or (section is not None and section.end is not None)):
        cut = data.rfind(b"\n") + 1
        if cut:
            data = data[:cut]
        elif len(data) < MAX_CHUNK:
            data = b""
    return Chunk(
        data.decode("utf-8", errors="replace"),
        start + len(data),
        section is not None and section.end is not None,
        truncated,
    )
