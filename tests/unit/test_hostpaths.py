"""The start-up check of the data folder's host path, on sample /proc/self/mountinfo text."""

from __future__ import annotations

import pytest

from controller.hostpaths import HostPathError, check, container_id, find_mount, parse_mountinfo, path_in_filesystem

CID = "4f1d2c3b" * 8

# A container started with -v /opt/opeva_shared_data:/opt/opeva_shared_data and the Docker socket.
SAME_PATH = f"""\
845 732 0:63 / / rw,relatime master:315 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/X/diff,workdir=/var/lib/docker/overlay2/X/work
846 845 0:66 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
847 845 0:67 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
851 845 8:1 /var/lib/docker/containers/{CID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw
852 845 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
853 845 8:1 /var/lib/docker/containers/{CID}/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
854 845 8:1 /opt/opeva_shared_data /opt/opeva_shared_data rw,relatime - ext4 /dev/sda1 rw
855 845 0:24 /docker.sock /run/docker.sock rw,nosuid,nodev - tmpfs tmpfs rw,size=1631412k,mode=755
"""

# The seed's style: -v /opt/opeva_shared_data:/data.
DIFFERENT_PATH = SAME_PATH.replace(" /opt/opeva_shared_data /opt/opeva_shared_data ", " /opt/opeva_shared_data /data ")

# The host's /srv is its own partition (/dev/sdb1): the root field is relative to that filesystem.
OWN_PARTITION = SAME_PATH.replace(
    "854 845 8:1 /opt/opeva_shared_data /opt/opeva_shared_data rw,relatime - ext4 /dev/sda1",
    "854 845 8:17 /opeva /srv/opeva rw,relatime - ext4 /dev/sdb1",
)

# A named volume at /data.
VOLUME = SAME_PATH.replace(
    "854 845 8:1 /opt/opeva_shared_data /opt/opeva_shared_data", "854 845 8:1 /var/lib/docker/volumes/opeva/_data /data"
)

# An NFS export mounted on the host at /mnt/share and bind-mounted whole at the same path.
NFS_ROOT = SAME_PATH.replace(
    "854 845 8:1 /opt/opeva_shared_data /opt/opeva_shared_data rw,relatime - ext4 /dev/sda1 rw",
    "854 845 0:80 / /mnt/share rw,relatime shared:5 - nfs4 nas:/export/opeva rw,vers=4.2",
)

# No mount for the data folder at all: it lives in the container's overlay.
NO_MOUNT = "\n".join(line for line in SAME_PATH.splitlines() if " 854 " not in f" {line}")

# A sandbox VM whose root filesystem is the host's (not layered).
SHARED_ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n22 27 0:21 / /proc rw,relatime - proc proc rw\n"


def mounts(text: str):
    return parse_mountinfo(text)


def test_parse_fields_and_optional_fields():
    ms = mounts(SAME_PATH)
    assert len(ms) == 8
    root = ms[0]
    assert (root.mount_id, root.parent_id, root.root, root.mount_point, root.fstype, root.source) == (
        845,
        732,
        "/",
        "/",
        "overlay",
        "overlay",
    )
    data = ms[6]
    assert (data.root, data.mount_point, data.fstype, data.source) == (
        "/opt/opeva_shared_data",
        "/opt/opeva_shared_data",
        "ext4",
        "/dev/sda1",
    )
    nfs = mounts(NFS_ROOT)[6]  # "shared:5" optional field before the separator
    assert (nfs.fstype, nfs.source) == ("nfs4", "nas:/export/opeva")


def test_parse_octal_escapes_and_garbage():
    text = (
        "900 845 8:1 /home/me/my\\040data /my\\040data rw - ext4 /dev/sda1 rw\n"
        "this is not a mountinfo line\n\n"
        "901 845 8:1 / /x rw\n"
    )  # no separator: skipped
    ms = mounts(text)
    assert [(m.root, m.mount_point) for m in ms] == [("/home/me/my data", "/my data")]


def test_find_mount_longest_prefix_and_stacking():
    ms = mounts(SAME_PATH)
    assert find_mount(ms, "/opt/opeva_shared_data/jobs/x").mount_point == "/opt/opeva_shared_data"
    assert find_mount(ms, "/opt/opeva_shared_data").mount_point == "/opt/opeva_shared_data"
    assert find_mount(ms, "/opt/opeva_shared_data2").mount_point == "/"  # a prefix of the name is not a parent
    stacked = mounts(SAME_PATH + "999 845 0:99 / /opt/opeva_shared_data rw - tmpfs tmpfs rw\n")
    assert find_mount(stacked, "/opt/opeva_shared_data/a").fstype == "tmpfs"  # mounted last, on top


def test_path_in_filesystem():
    m = find_mount(mounts(DIFFERENT_PATH), "/data/jobs")
    assert path_in_filesystem(m, "/data/jobs") == "/opt/opeva_shared_data/jobs"
    assert path_in_filesystem(m, "/data") == "/opt/opeva_shared_data"


def test_container_id_from_the_hostname_mount():
    assert container_id(mounts(SAME_PATH)) == CID
    assert container_id(mounts(SHARED_ROOT)) is None


def test_same_path_is_verified():
    v = check("/opt/opeva_shared_data", None, mounts(SAME_PATH), realpath=lambda p: p)
    assert v.verified and v.host_path == "/opt/opeva_shared_data"
    sub = check("/opt/opeva_shared_data/team-a", None, mounts(SAME_PATH), realpath=lambda p: p)
    assert sub.verified and sub.host_path == "/opt/opeva_shared_data/team-a"


def test_different_path_without_host_data_is_refused_with_the_fix():
    with pytest.raises(HostPathError) as err:
        check("/data", None, mounts(DIFFERENT_PATH), realpath=lambda p: p)
    msg = str(err.value)
    assert "OPEVA_HOST_DATA=/opt/opeva_shared_data" in msg and "empty" in msg and "/data" in msg


def test_different_path_with_host_data_is_accepted():
    v = check("/data", "/opt/opeva_shared_data", mounts(DIFFERENT_PATH), realpath=lambda p: p)
    assert v.verified and v.host_path == "/opt/opeva_shared_data"


def test_inconsistent_host_data_is_refused():
    with pytest.raises(HostPathError, match="OPEVA_HOST_DATA=/srv/elsewhere"):
        check("/data", "/srv/elsewhere", mounts(DIFFERENT_PATH), realpath=lambda p: p)
    with pytest.raises(HostPathError, match="absolute"):
        check("/data", "relative/path", mounts(DIFFERENT_PATH), realpath=lambda p: p)


def test_own_partition_suffix_match():
    # Host path /srv/opeva is /opeva inside /dev/sdb1: the host path must end with it.
    v = check("/srv/opeva", None, mounts(OWN_PARTITION), realpath=lambda p: p)
    assert v.verified
    with pytest.raises(HostPathError):
        check("/srv/opeva", "/srv/other", mounts(OWN_PARTITION), realpath=lambda p: p)


def test_named_volume_needs_its_host_path():
    with pytest.raises(HostPathError, match="OPEVA_HOST_DATA=/var/lib/docker/volumes/opeva/_data"):
        check("/data", None, mounts(VOLUME), realpath=lambda p: p)
    assert check("/data", "/var/lib/docker/volumes/opeva/_data", mounts(VOLUME), realpath=lambda p: p).verified


def test_data_in_the_container_overlay_is_refused():
    with pytest.raises(HostPathError, match="container's own filesystem"):
        check("/opt/opeva_shared_data", None, mounts(NO_MOUNT), realpath=lambda p: p)
    with pytest.raises(HostPathError, match="container's own filesystem"):
        check("/opt/opeva_shared_data", "/opt/opeva_shared_data", mounts(NO_MOUNT), realpath=lambda p: p)


def test_whole_filesystem_mount_is_accepted_unverified():
    v = check("/mnt/share", None, mounts(NFS_ROOT), realpath=lambda p: p)
    assert not v.verified and v.host_path == "/mnt/share"


def test_shared_root_filesystem_is_the_hosts():
    assert check("/tmp/x/data", None, mounts(SHARED_ROOT), realpath=lambda p: p).verified
    with pytest.raises(HostPathError):
        check("/tmp/x/data", "/elsewhere", mounts(SHARED_ROOT), realpath=lambda p: p)


def test_symlinked_data_folder_is_resolved_for_the_mount_lookup():
    # /data -> /opt/opeva_shared_data inside the container: Docker would be given /data, which the host lacks.
    with pytest.raises(HostPathError):
        check("/data", None, mounts(SAME_PATH), realpath=lambda p: p.replace("/data", "/opt/opeva_shared_data"))


def test_docker_inspect_takes_precedence():
    # The host path goes through a symlink (/opt/opeva_shared_data -> /srv/data): mountinfo shows /srv/data,
    # Docker recorded the path the user gave. Docker's record decides.
    ms = mounts(
        SAME_PATH.replace(" /opt/opeva_shared_data /opt/opeva_shared_data ", " /srv/data /opt/opeva_shared_data ")
    )
    with pytest.raises(HostPathError):
        check("/opt/opeva_shared_data", None, ms, realpath=lambda p: p)
    seen = []

    def source(mount_point):
        seen.append(mount_point)
        return "/opt/opeva_shared_data"

    v = check("/opt/opeva_shared_data", None, ms, source, realpath=lambda p: p)
    assert v.verified and "inspect" in v.how and seen == ["/opt/opeva_shared_data"]
    with pytest.raises(HostPathError, match="mounted from /opt/opeva_shared_data on the Docker host"):
        check("/opt/opeva_shared_data", "/srv/data", ms, source, realpath=lambda p: p)
    # No answer from Docker: mountinfo decides.
    assert check("/opt/opeva_shared_data", "/srv/data", ms, lambda _: None, realpath=lambda p: p).verified
