"""Host paths when the controller itself runs in a container.

The controller gives Docker bind mounts for every job (`DATA -> /data`, `DATA/jobs/NAME/... -> /data/jobs/NAME/...`).
Docker resolves those source paths on the *host*, not in the controller's container. So the data folder must be
known by its host path: either it is mounted at the same path inside and out (`-v /opt/x:/opt/x`, the default in
docker-compose.yml), or `OPEVA_HOST_DATA` says where it is on the host. Get this wrong and Docker silently creates
an empty folder on the host and the jobs see an empty `/data`.

`check_host_paths` runs once at start-up and refuses to start on a mismatch, with a message that says what to set.
It finds the mount that holds the data folder in /proc/self/mountinfo: the mount's root (the bind source, relative
to its filesystem) plus the path below the mount point is where the data folder lives in that filesystem, and the
host path must end with it. When the socket answers, Docker's own record of this container's mounts (inspect,
`Mounts[].Source`) gives the exact host path and takes precedence. Outside a container nothing is checked.
`OPEVA_SKIP_HOSTPATH_CHECK=1` turns the check off (for setups it cannot understand; say why in an issue).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# The container's own root filesystem when it is one of these: nothing on it is visible to the host by path.
LAYERED_FS = {"overlay", "aufs", "fuse-overlayfs", "overlayfs"}
_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/(?:userdata/)?(?:hostname|hosts|resolv\.conf)$")


class HostPathError(ValueError):
    """The data folder's host path is wrong or unknowable: starting would give jobs an empty /data."""


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo (proc(5)): `root` is the path inside the source filesystem."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040, \\011, \\012, \\134)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse mountinfo text; malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)  # optional fields (shared:N, master:N, ...) end at a lone "-"
            mounts.append(
                MountInfo(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
                )
            )
        except (ValueError, IndexError):
            continue
    return mounts


def _is_under(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def find_mount(mounts: Iterable[MountInfo], path: str) -> MountInfo | None:
    """The mount that holds `path`: the longest mount point above it, the last one mounted when stacked."""
    best: MountInfo | None = None
    for m in mounts:  # later lines are mounted later, on top of earlier ones at the same point
        if _is_under(path, m.mount_point) and (best is None or len(m.mount_point) >= len(best.mount_point)):
            best = m
    return best


def path_in_filesystem(mount: MountInfo, path: str) -> str:
    """Where `path` lives inside the mount's source filesystem: the mount root plus the path below the mount point."""
    rel = posixpath.relpath(path, mount.mount_point)
    return posixpath.normpath(posixpath.join(mount.root, rel)) if rel != "." else posixpath.normpath(mount.root)


def _ends_with(path: str, suffix: str) -> bool:
    """Component-wise: does absolute `path` end with absolute `suffix`? ('/' is a suffix of everything.)"""
    p, s = Path(path).parts[1:], Path(suffix).parts[1:]
    return not s or p[-len(s) :] == s


def container_id(mountinfo: Iterable[MountInfo]) -> str | None:
    """Our own container's id, from the hostname/hosts/resolv.conf files Docker (or Podman) bind-mounts in."""
    for m in mountinfo:
        if m.mount_point in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
            found = _CONTAINER_ID.search(m.root)
            if found:
                return found.group(1)
    return None


def in_container(root: str = "/") -> bool:
    """Docker leaves /.dockerenv, Podman /run/.containerenv; cgroup v1 paths name the runtime."""
    if os.path.exists(os.path.join(root, ".dockerenv")) or os.path.exists(os.path.join(root, "run/.containerenv")):
        return True
    try:
        with open(os.path.join(root, "proc/1/cgroup")) as f:
            return bool(re.search(r"/(docker|containerd|kubepods|libpod|lxc)[/-]", f.read()))
    except OSError:
        return False


@dataclass(frozen=True)
class Verdict:
    host_path: str  # the path Docker will be given for the data folder
    verified: bool  # False: nothing contradicts it, but nothing confirms it either
    how: str  # which evidence decided


def _advice(data: str, host_guess: str | None) -> str:
    guess = host_guess or "/path/on/the/host"
    return (
        f"Mount the host folder at the same path inside the container (-v {guess}:{guess} and "
        f"OPEVA_DATA={guess}; docker-compose.yml does this with OPEVA_HOST_DATA), or set "
        f"OPEVA_HOST_DATA={guess} to the data folder's path on the Docker host."
    )


def check(
    data_dir: str,
    host_data: str | None,
    mounts: list[MountInfo],
    docker_source: Callable[[str], str | None] | None = None,
    *,
    realpath: Callable[[str], str] = os.path.realpath,
) -> Verdict:
    """Decide the data folder's host path inside a container, or raise HostPathError.

    `data_dir` is the absolute path the controller uses (and gives Docker unless `host_data` is set);
    `docker_source(mount_point)` returns Docker's record of the host source mounted there, or None when unknown.
    """
    if host_data is not None and not posixpath.isabs(host_data):
        raise HostPathError(f"OPEVA_HOST_DATA={host_data!r} must be an absolute path on the Docker host.")
    expected = posixpath.normpath(host_data or data_dir)
    real = realpath(data_dir)
    mount = find_mount(mounts, real)
    if mount is None:
        return Verdict(expected, False, "no mount holds the data folder (mountinfo unreadable)")
    below = posixpath.relpath(real, mount.mount_point)
    source = docker_source(mount.mount_point) if docker_source and mount.mount_point != "/" else None
    if source:  # Docker's own record: exact
        actual = posixpath.normpath(posixpath.join(source, below)) if below != "." else posixpath.normpath(source)
        if actual != expected:
            what = f"OPEVA_HOST_DATA={host_data}" if host_data else "the same path on the host"
            raise HostPathError(
                f"The data folder {data_dir} is mounted from {actual} on the Docker host, but the controller would "
                f"give Docker {expected} ({what}): jobs would see a different, probably empty, /data. "
                + _advice(data_dir, actual)
            )
        return Verdict(expected, True, f"docker inspect: {mount.mount_point} is mounted from {source}")
    if mount.mount_point == "/" and mount.fstype in LAYERED_FS:
        raise HostPathError(
            f"The data folder {data_dir} is inside the container's own filesystem ({mount.fstype}), not on a "
            "folder mounted from the host: jobs would see an empty /data, and the records would vanish with the "
            f"container. Mount the host folder at the same path: -v {data_dir}:{data_dir} (docker-compose.yml "
            "does this), or mount it elsewhere and set OPEVA_HOST_DATA to its path on the host."
        )
    if mount.mount_point == "/" and mount.root == "/" and host_data is None:
        # Not a layered root: the container shares the host's root filesystem (a sandbox VM, a chroot).
        return Verdict(expected, True, f"the root filesystem ({mount.source or mount.fstype}) is the host's")
    in_fs = path_in_filesystem(mount, real)
    if not _ends_with(expected, in_fs):
        raise HostPathError(
            f"The data folder {data_dir} is mounted from {in_fs} (in {mount.source or mount.fstype}), but the "
            f"controller would give Docker {expected}"
            + (f" (OPEVA_HOST_DATA={host_data})" if host_data else " (OPEVA_HOST_DATA is not set)")
            + ": jobs would see a different, probably empty, /data. "
            + _advice(data_dir, in_fs)
            + " (If the host path goes through a symlink, use the resolved path, or set OPEVA_SKIP_HOSTPATH_CHECK=1.)"
        )
    if in_fs == "/" and mount.mount_point != "/":
        # The data folder is a whole filesystem (a partition, an NFS export) mounted in: mountinfo cannot tell
        # the host path. Nothing contradicts `expected`.
        return Verdict(expected, False, f"{mount.mount_point} is the root of {mount.source or mount.fstype}")
    return Verdict(expected, True, f"mountinfo: {mount.mount_point} is {in_fs} in {mount.source or mount.fstype}")


def _docker_source_lookup(docker_url: str | None, cid: str | None) -> Callable[[str], str | None] | None:
    if not cid:
        return None

    def lookup(mount_point: str) -> str | None:
        try:
            import docker

            client = docker.DockerClient(base_url=docker_url, timeout=5) if docker_url else docker.from_env(timeout=5)
            try:
                info = client.api.inspect_container(cid)
            finally:
                client.close()
        except Exception:  # no socket, not Docker, not our container: fall back to mountinfo
            return None
        for m in info.get("Mounts") or []:
            if m.get("Destination") == mount_point and m.get("Source"):
                return m["Source"]
        return None

    return lookup


def check_host_paths(settings, log=None) -> Verdict | None:
    """Start-up check for `opeva run`: raise HostPathError when jobs would not see the data folder.

    Returns the verdict (None when not in a container or the check is off).
    """
    if settings.skip_hostpath_check:
        return None
    if not in_container():
        return None
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        mounts = []
    data_dir = str(Path(settings.data_dir).absolute())
    host_data = str(settings.host_data_dir) if settings.host_data_dir else None
    verdict = check(data_dir, host_data, mounts, _docker_source_lookup(settings.docker_url, container_id(mounts)))
    if log is not None:
        if verdict.verified:
            log.info("host_path", data=data_dir, host_path=verdict.host_path, evidence=verdict.how)
        else:
            log.warning(
                "host_path_unverified",
                data=data_dir,
                host_path=verdict.host_path,
                evidence=verdict.how,
                message="running in a container; cannot confirm the data folder's host path: jobs get "
                f"{verdict.host_path} as /data (set OPEVA_HOST_DATA if that is wrong)",
            )
    return verdict
