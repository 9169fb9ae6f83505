"""Spec files named on the command line (`apply -f FILE|DIR|-`), validated with the controller's own code.

A folder is read the way the controller reads its specs folder: recursively, skipping hidden files and folders and
editor files (`walk_spec_files`), each file through `load_spec_file`. A single file or stdin goes through `parse_text`,
the function behind both of those and the API.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from controller.spec import (
    MAX_SPEC_BYTES,
    JobManifest,
    SpecError,
    load_spec_file,
    parse_text,
    spec_format,
    text_format,
    walk_spec_files,
)

STDIN = "-"


@dataclass(frozen=True)
class SpecInput:
    source: str  # the file as the user named it, or <stdin>
    fmt: str  # yaml | json
    body: bytes = b""
    manifest: JobManifest | None = None
    error: str | None = None


def _read_file(path: Path, shown: str) -> SpecInput:
    fmt = spec_format(path)
    try:
        if not path.exists():
            return SpecInput(shown, fmt, error=f"{shown}: no such file or directory")
        if not path.is_file():
            return SpecInput(shown, fmt, error=f"{shown}: not a regular file")
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            return SpecInput(shown, fmt, error=f"{shown}: file is {size} bytes; specs are limited to {MAX_SPEC_BYTES}")
        body = path.read_bytes()
    except OSError as err:
        return SpecInput(shown, fmt, error=f"{shown}: cannot read: {err.strerror or err}")
    return _parse(body, shown, fmt)


def _parse(body: bytes, shown: str, fmt: str) -> SpecInput:
    try:
        return SpecInput(shown, fmt, body, manifest=parse_text(body, shown, fmt))
    except SpecError as err:
        return SpecInput(shown, fmt, body, error=str(err))


def _read_stdin() -> SpecInput:
    body = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    if len(body) > MAX_SPEC_BYTES:
        return SpecInput(
            "<stdin>", "yaml", error=f"<stdin>: more than {MAX_SPEC_BYTES} bytes; specs are limited to {MAX_SPEC_BYTES}"
        )
    fmt = text_format(body)
    return _parse(body, "<stdin>", fmt)


def _read_dir(root: Path, shown_root: str) -> list[SpecInput]:
    out = []
    for entry in walk_spec_files(root):
        path = Path(entry.path)
        rel = path.relative_to(root)
        shown = os.path.join(shown_root, str(rel))
        loaded = load_spec_file(path, root)
        if loaded.error:
            # the controller's message starts with the path inside the folder; show the path as the user named it
            message = loaded.error
            if message.startswith(f"{rel}: "):
                message = f"{shown}: {message[len(str(rel)) + 2 :]}"
            out.append(SpecInput(shown, spec_format(path), error=message))
            continue
        try:
            body = path.read_bytes()
        except OSError as err:
            out.append(SpecInput(shown, spec_format(path), error=f"{shown}: cannot read: {err.strerror or err}"))
            continue
        out.append(SpecInput(shown, spec_format(path), body, manifest=loaded.manifest))
    return out


def read_inputs(names: tuple[str, ...]) -> list[SpecInput]:
    """Every spec named by `-f` arguments, in order; folders expanded in sorted order."""
    out: list[SpecInput] = []
    for name in names:
        if name == STDIN:
            out.append(_read_stdin())
            continue
        path = Path(name)
        if path.is_dir():
            out.extend(_read_dir(path, name))
        else:
            out.append(_read_file(path, name))
    return out


def duplicates(inputs: list[SpecInput]) -> list[str]:
    """One message per job name defined by more than one input."""
    seen: dict[str, str] = {}
    problems = []
    for item in inputs:
        if item.manifest is None:
            continue
        first = seen.setdefault(item.manifest.name, item.source)
        if first != item.source:
            problems.append(
                f"{item.source}: job {item.manifest.name!r} is already defined by {first}; one file per job"
            )
    return problems
