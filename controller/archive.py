"""Archiving a job's folder (`--artifacts archive`) without following anything the job left in it.

`tarfile.add` checks each path and then opens it by name, so a job that swaps one of its folders for a link while the
archive is written gets a host file into it. Here the folder is walked by descriptors: each subfolder is opened with
`O_NOFOLLOW` relative to its parent, each file goes through the one opening rule of `jobfiles` (a regular file, no
setuid/setgid bit), links are stored as links (never followed), and FIFOs, devices, sockets and sparse files (a 20 GB
file of holes would be read in full) are skipped. What was skipped, and why, is listed in the archive itself.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

import structlog

from .jobfiles import UnsafeFile, open_at, open_beneath_dir

log = structlog.get_logger("opeva.archive")

SKIPPED_NAME = "ARCHIVE-SKIPPED.txt"
SPARSE_MIN_BYTES = 1024 * 1024  # a file this big with fewer than half its bytes on disk is mostly holes


def is_sparse(st: os.stat_result) -> bool:
    return st.st_size >= SPARSE_MIN_BYTES and st.st_blocks * 512 < st.st_size // 2


def write_archive(
    root: Path, job_dir: Path, arcname: str, out: BinaryIO, max_file_bytes: int | None = None
) -> list[str]:
    """Write JOB_DIR (inside ROOT) as a gzipped tar to `out`, entries under `arcname/`; the skipped entries."""
    skipped: list[str] = []
    dirfd = open_beneath_dir(root, job_dir)
    try:
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            _add_dir(tar, dirfd, arcname, skipped, max_file_bytes)
            if skipped:
                text = ("\n".join(skipped) + "\n").encode()
                info = tarfile.TarInfo(f"{arcname}/{SKIPPED_NAME}")
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text))
    finally:
        os.close(dirfd)
    if skipped:
        log.warning("archive_skipped_entries", job=arcname, skipped=skipped[:20], count=len(skipped))
    return skipped


def _add_dir(tar: tarfile.TarFile, dirfd: int, prefix: str, skipped: list[str], max_file_bytes: int | None) -> None:
    st = os.fstat(dirfd)
    tar.addfile(_info(prefix, st, tarfile.DIRTYPE))
    for name in sorted(os.listdir(dirfd)):
        member = f"{prefix}/{name}"
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                try:
                    _add_dir(tar, sub, member, skipped, max_file_bytes)
                finally:
                    os.close(sub)
            elif stat.S_ISLNK(st.st_mode):
                info = _info(member, st, tarfile.SYMTYPE)
                info.linkname = os.readlink(name, dir_fd=dirfd)
                tar.addfile(info)
            elif is_sparse(st):
                skipped.append(f"{member}: sparse ({st.st_size} bytes, {st.st_blocks * 512} on disk)")
            else:
                f = open_at(dirfd, name, member, max_file_bytes)
                if f is None:
                    continue  # removed meanwhile
                with f:
                    st = os.fstat(f.fileno())  # the inode that was checked and is read
                    if is_sparse(st):
                        skipped.append(f"{member}: sparse ({st.st_size} bytes, {st.st_blocks * 512} on disk)")
                        continue
                    tar.addfile(_info(member, st, tarfile.REGTYPE), _Exact(f, st.st_size))
        except UnsafeFile as err:
            skipped.append(f"{member}: {err}")
        except OSError as err:  # swapped for a link between stat and open (ELOOP), vanished, unreadable
            skipped.append(f"{member}: {err.strerror or err}")


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) & 0o777  # never a setuid/setgid/sticky bit in the archive
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.size = st.st_size if kind == tarfile.REGTYPE else 0
    return info


class _Exact(io.RawIOBase):
    """Exactly `size` bytes of a file (a job growing it meanwhile cannot corrupt the tar; a shrunk one is padded)."""

    def __init__(self, f: BinaryIO, size: int):
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n) or b"\0" * n
        self._left -= len(data)
        return data
