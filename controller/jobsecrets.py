"""Secrets: environment values that a spec names by file, read from the secrets folder for that job's container only.

A spec says `secretEnv: {MLFLOW_TRACKING_TOKEN: mlflow-token}`. When an attempt starts, the controller reads
SECRETS/mlflow-token and puts the value in that container's environment, and nowhere else. The spec holds only the
file's name. The value is never written to status, job_info, events, logs or config.resolved.yaml, and the API has
no route to the folder. The folder is hidden from every job (containerspec.data_mounts), so one job cannot read
another job's secrets, nor the specs that name them.

The folder belongs to the operator. Its files are read by the one rule of jobfiles (no link followed, a regular file,
a size cap), opened from a descriptor of the folder. The folder itself must be a real folder (not a link) that only
its owner can write. A secret that is missing or cannot be used fails the attempt with reason SecretUnavailable and a
message that names the variable and the file, never the value.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .jobfiles import UnsafeFile, open_at
from .runtime.base import CreateRejected

SECRETS_DIR = "secrets"  # DATA/secrets unless OPEVA_SECRETS_DIR names another folder
MAX_SECRET_BYTES = 64 * 1024  # an environment value, not a file to ship: certificates belong in a mounted folder
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class SecretUnavailable(CreateRejected):
    """A secret the spec names cannot be given to the job: the attempt fails with this reason and message."""

    reason = "SecretUnavailable"


def secret_value(data: bytes, where: str) -> str:
    """The environment value held in a secret file: UTF-8 text without NUL bytes, one trailing newline dropped (so
    `echo TOKEN > file` works)."""
    if b"\x00" in data:
        raise SecretUnavailable(f"{where} holds a NUL byte; an environment value cannot")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{where} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


@dataclass(frozen=True)
class SecretsFolder:
    path: Path

    def ensure(self) -> None:
        """Create the folder (mode 0700) when it is missing: a folder inside the data folder must exist to be hidden
        from the jobs. A folder that cannot be created is reported when a job needs a secret from it."""
        try:
            os.mkdir(self.path, 0o700)
        except OSError:
            pass

    def environment(self, refs: Mapping[str, str]) -> dict[str, str]:
        """{variable: value} for a spec's `secretEnv` ({variable: file name}); SecretUnavailable when one cannot be
        read."""
        if not refs:
            return {}
        needed = f"spec.secretEnv ({', '.join(sorted(refs))}): the secrets folder {self.path}"
        try:
            dirfd = os.open(self.path, _DIR_FLAGS)
        except FileNotFoundError:
            raise SecretUnavailable(
                f"{needed} does not exist (create it with mode 700, or set OPEVA_SECRETS_DIR)"
            ) from None
        except OSError as err:
            why = "it is a link or not a folder" if err.errno in (errno.ELOOP, errno.ENOTDIR) else err.strerror
            raise SecretUnavailable(f"{needed} cannot be used: {why}") from None
        try:
            mode = os.fstat(dirfd).st_mode
            if mode & 0o022:
                raise SecretUnavailable(
                    f"{needed} is writable by others than its owner (mode {mode & 0o777:o}); make it 700"
                )
            return {var: self._read(dirfd, var, name) for var, name in refs.items()}
        finally:
            os.close(dirfd)

    def _read(self, dirfd: int, var: str, name: str) -> str:
        where = f"secret {name!r} (spec.secretEnv.{var})"
        try:
            f = open_at(dirfd, name, f"{SECRETS_DIR}/{name}", MAX_SECRET_BYTES)
        except UnsafeFile as err:
            raise SecretUnavailable(f"{where}: {err}") from None
        except OSError as err:
            raise SecretUnavailable(f"{where} cannot be read: {err.strerror or err}") from None
        if f is None:
            raise SecretUnavailable(f"{where}: there is no file {self.path / name}; create it (mode 600) and rerun")
        with f:
            data = f.read(MAX_SECRET_BYTES + 1)
        if len(data) > MAX_SECRET_BYTES:  # grown since it was checked
            raise SecretUnavailable(f"{where} is over {MAX_SECRET_BYTES} bytes")
        return secret_value(data, where)
