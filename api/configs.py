"""Experiment configs: the YAML files in DATA/configs/ that the OPEVA UIs list, edit and submit by name.

The old backend kept them there, and the simulator reads them at `/data/configs/NAME`. Names are plain file names
(optionally in sub-folders) ending in .yaml or .yml; no component may be hidden, '..' or a symbolic link, so nothing
outside DATA/configs/ is ever read or written through this module. Writes are temp + rename; a create that must not
replace an existing file uses a hard link, which fails atomically if the name is taken.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.jobfiles import open_beneath

from .errors import AlreadyExists, InvalidInput, NotFound, TooLarge, UnsafePath

MAX_CONFIG_BYTES = 256 * 1024
_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
_SUFFIXES = (".yaml", ".yml")
_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def parse_config(text: str | bytes, name: str) -> dict[str, Any]:
    """A config document as a mapping. Aliases are refused: a few KB of anchors can expand to gigabytes."""
    if len(text) > MAX_CONFIG_BYTES:
        raise TooLarge(f"config {name!r} is {len(text)} bytes; configs are limited to {MAX_CONFIG_BYTES} bytes")
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_LOADER)):
            raise InvalidInput(f"config {name!r} uses YAML aliases (*name); write the values out instead")
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidInput(
            f"config {name!r} is not valid YAML: {getattr(err, 'problem', None) or err}{where}"
        ) from None
    except (RecursionError, ValueError):
        raise InvalidInput(f"config {name!r} is nested too deeply or malformed") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"config {name!r} must be a YAML mapping (key: value), not {type(doc).__name__}")
    return doc


def render_config(config: dict[str, Any], name: str) -> bytes:
    """YAML text for an inline config (a JSON object from a request), within the size limit."""
    try:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode()
    except (yaml.YAMLError, RecursionError, ValueError) as err:
        raise InvalidInput(f"config for {name!r} cannot be written as YAML: {err}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise TooLarge(f"config {name!r} is {len(text)} bytes as YAML; configs are limited to {MAX_CONFIG_BYTES} bytes")
    return text


@dataclass(frozen=True)
class ConfigFile:
    name: str  # relative to DATA/configs, with '/'
    text: bytes


class ConfigFolder:
    """DATA/configs/: list, read, create, replace and delete experiment configs by name."""

    def __init__(self, data_root: Path):
        self.data_root = data_root
        self.root = data_root / "configs"

    # ---- names --------------------------------------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> tuple[str, ...]:
        """The name's components, or InvalidInput saying why the name is refused."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a config name is required, e.g. ppo.yaml")
        if "\x00" in name or "\\" in name:
            raise InvalidInput(f"config name {name!r} contains a forbidden character")
        if name.startswith("/"):
            raise InvalidInput(f"config name {name!r} must be a name inside DATA/configs, not an absolute path")
        parts = tuple(name.split("/"))
        if ".." in parts:
            raise InvalidInput(f"config name {name!r} must be a name inside DATA/configs, without '..'")
        if any(not _PART_RE.match(p) for p in parts) or len(parts) > 8:
            raise InvalidInput(
                f"config name {name!r} is not a plain file name (letters, digits, '_', '-', '.', '+'; "
                "no hidden files; at most 128 characters per part)"
            )
        if not parts[-1].endswith(_SUFFIXES):
            raise InvalidInput(f"config name {name!r} must end in .yaml or .yml")
        return parts

    def name_from_request(self, value: str) -> str:
        """A config named as the clients send it: `ppo.yaml`, `configs/ppo.yaml` or `/data/configs/ppo.yaml`."""
        name = value.strip()
        for prefix in ("/data/configs/", "configs/"):
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        self.check_name(name)
        return name

    # ---- reading ------------------------------------------------------------------------------------------
    def list(self) -> list[str]:
        """Config names at the top of DATA/configs (regular files only), sorted, as the old backend listed them."""
        fd = self._open_dir((), create=False)
        if fd is None:
            return []
        try:
            with os.scandir(fd) as it:
                return sorted(
                    e.name
                    for e in it
                    if e.is_file(follow_symlinks=False) and e.name.endswith(_SUFFIXES) and _PART_RE.match(e.name)
                )
        finally:
            os.close(fd)

    def read(self, name: str) -> ConfigFile:
        parts = self.check_name(name)
        fd = self._open_dir(parts[:-1], create=False)
        if fd is None:
            raise NotFound(f"config {name!r} not found in DATA/configs")
        try:
            try:
                ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except FileNotFoundError:
                raise NotFound(f"config {name!r} not found in DATA/configs") from None
            except OSError as err:
                raise InvalidInput(_link_message(name, err)) from None
            try:
                st = os.fstat(ffd)
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidInput(f"config {name!r} is not a regular file")
                if st.st_size > MAX_CONFIG_BYTES:
                    raise TooLarge(f"config {name!r} is {st.st_size} bytes; configs are limited to {MAX_CONFIG_BYTES}")
                return ConfigFile("/".join(parts), os.read(ffd, MAX_CONFIG_BYTES + 1))
            finally:
                os.close(ffd)
        finally:
            os.close(fd)

    def load(self, name: str) -> tuple[ConfigFile, dict[str, Any]]:
        found = self.read(name)
        return found, parse_config(found.text, found.name)

    # ---- writing ------------------------------------------------------------------------------------------
    def write(self, name: str, text: bytes, *, create: bool, replace: bool) -> str:
        """Write `text` as config `name`. `create`: it may be new; `replace`: it may exist. Returns the name."""
        parts = self.check_name(name)
        parse_config(text, name)
        fd = self._open_dir(parts[:-1], create=create)
        if fd is None:
            raise NotFound(f"config {name!r} not found in DATA/configs")
        try:
            exists = _entry_exists(fd, parts[-1])
            if exists and not replace:
                raise AlreadyExists(f"config {name!r} already exists; choose another name or ask to overwrite it")
            if not exists and not create:
                raise NotFound(f"config {name!r} not found in DATA/configs")
            tmp = f".{parts[-1]}.{secrets.token_hex(4)}.tmp"
            tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            try:
                with os.fdopen(tfd, "wb") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                if replace:
                    os.replace(tmp, parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
                else:
                    try:
                        os.link(tmp, parts[-1], src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                    except FileExistsError:
                        raise AlreadyExists(f"config {name!r} already exists; choose another name") from None
            finally:
                try:
                    os.unlink(tmp, dir_fd=fd)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)
        return "/".join(parts)

    def delete(self, name: str) -> str:
        parts = self.check_name(name)
        fd = self._open_dir(parts[:-1], create=False)
        if fd is None:
            raise NotFound(f"config {name!r} not found in DATA/configs")
        try:
            os.unlink(parts[-1], dir_fd=fd)
        except FileNotFoundError:
            raise NotFound(f"config {name!r} not found in DATA/configs") from None
        except IsADirectoryError:
            raise InvalidInput(f"config {name!r} is a folder, not a config file") from None
        finally:
            os.close(fd)
        return "/".join(parts)

    # ---- folders, walked without following links ----------------------------------------------------------
    def _open_dir(self, parts: tuple[str, ...], create: bool) -> int | None:
        """A descriptor of DATA/configs/<parts>, opened without following links; None if it is missing. New
        configs are written at the top of DATA/configs only (as the UIs list them), so only that folder is made."""
        if create:
            if parts:
                raise InvalidInput(f"new configs go at the top of DATA/configs, not in {'/'.join(parts)!r}")
            try:
                os.mkdir(self.root, 0o755)
            except FileExistsError:
                pass
        try:
            return open_beneath(self.root, parts, directory=True)
        except UnsafePath as err:
            raise InvalidInput(f"{err}; configs are not read or written through links") from None


def _entry_exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _link_message(name: str, err: OSError) -> str:
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        return f"{name!r} is a symbolic link or not a folder; configs are not read through links"
    return f"{name!r} cannot be opened: {err.strerror or err}"
