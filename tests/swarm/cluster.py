"""A real 3-node Docker Swarm on this one host: one manager and two workers, each its own `dockerd`.

The recipe is /work/shared/reference/swarm-local.md (moby's own integration tests do the same): every daemon has its
own data-root, exec-root, pidfile, socket and containerd namespaces, listens for swarm traffic on 127.0.0.1 only
(ports 2477-2479 when free), and runs jobs with network `none` or `host`. The default daemon is never touched.

A cluster lives under a short folder /tmp/opeva-sw-XXXX (unix socket paths must stay below 108 characters) holding an
`owner` file with the pid of the process that made it. At start, the folders of owners that are gone (a crashed run)
are cleaned up: their processes killed, their mounts undone, the folder removed. A live owner's cluster (another test
session on the same machine) is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "opeva-sw-"
NODE_LABEL = "opeva-test.node"  # node label (and engine label) n1, n2, n3: constraint node.labels.opeva-test.node==n2
SWARM_PORTS = (2477, 2478, 2479)
# the test images (scripts/build-images.sh), loaded into every node under each name the default engine has
TEST_IMAGES = ("opeva-test/busybox:1", "opeva-test/busybox:latest", "busybox:1.36", "opeva-test/hostile:latest")
DAEMON_FLAGS = (
    "--bridge=none",
    "--iptables=false",
    "--ip-forward=false",
    "--ip-masq=false",
    "--userland-proxy=false",
    "--swarm-default-advertise-addr=127.0.0.1",
)


class ClusterError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why a local multi-daemon swarm cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "a local swarm needs root (it starts its own dockerd processes)"
    for program in ("dockerd", "docker", "containerd", "runc"):
        if shutil.which(program) is None:
            return f"a local swarm needs {program} (Debian package docker.io)"
    return None


@dataclass
class Node:
    index: int  # 1 = the manager
    root: Path
    port: int
    node_id: str = ""

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def sock(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None


class SwarmCluster:
    """Start with `start()`, end with `stop()` (in a finally). `docker(i, ...)` runs the docker CLI against node i."""

    def __init__(self, images: tuple[str, ...] = TEST_IMAGES, heartbeat: str = "1s"):
        self.images = images
        self.heartbeat = heartbeat  # how soon the manager calls a silent node Down (default 5 s: 10-16 s)
        self.base: Path | None = None
        self.nodes: list[Node] = []
        self.extra_flags: dict[str, tuple[str, ...]] = {}  # node name -> more dockerd flags, from its next (re)start
        self.wrappers: dict[str, tuple[str, ...]] = {}  # node name -> a command its dockerd runs under (unshare ...)

    # -- what tests use -------------------------------------------------------------------------------------------

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def manager_url(self) -> str:
        return self.manager.url

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def docker(self, node: int | str, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 60):
        target = self.node(node) if isinstance(node, str) else self.nodes[node - 1]
        done = subprocess.run(["docker", "-H", target.url, *args], capture_output=True, input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise ClusterError(f"docker {' '.join(args)} on {target.name}: {done.stderr.decode(errors='replace')}")
        return done

    def constraint(self, node: str) -> str:
        """The placement constraint that puts a service on `node` (n1, n2, n3): all nodes share one hostname."""
        return f"node.labels.{NODE_LABEL}=={node}"

    def node_states(self) -> dict[str, str]:
        """name -> Ready/Down/... as the manager sees it."""
        out = self.docker(1, "node", "ls", "--format", "{{.ID}} {{.Status}}").stdout.decode().split("\n")
        by_id = {n.node_id: n.name for n in self.nodes}
        return {by_id.get(i, i): s for i, s in (line.split() for line in out if line.strip())}

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's dockerd, as a machine losing its engine would (its containerd dies with it)."""
        pid = self.node(name).pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 20)

    def restart_node(self, name: str) -> None:
        node = self.node(name)
        self._stop_daemon(node)
        self._start_daemon(node)
        self._wait_answers(node)

    # -- bring-up ---------------------------------------------------------------------------------------------------

    def start(self) -> SwarmCluster:
        cleanup_leftovers()
        self.base = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
        (self.base / "owner").write_text(f"{os.getpid()} {_start_ticks(os.getpid())}\n")
        (self.base / "daemon.json").write_text("{}\n")  # keeps /etc/docker/daemon.json out
        ports = _swarm_ports()
        self.nodes = [Node(i, self.base / f"n{i}", ports[i - 1]) for i in (1, 2, 3)]
        try:
            for node in self.nodes:
                node.root.mkdir()
                self._start_daemon(node)
            for node in self.nodes:
                self._wait_answers(node)
            self._init_swarm()
            self._load_images()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemon(self, node: Node) -> None:
        assert self.base is not None
        tag = f"{self.base.name[len(PREFIX) :]}{node.name}"
        cmd = [
            *self.wrappers.get(node.name, ()),
            "dockerd",
            "--config-file",
            str(self.base / "daemon.json"),
            "--data-root",
            str(node.root / "data"),
            "--exec-root",
            str(node.root / "exec"),
            "--pidfile",
            str(node.pidfile),
            "-H",
            node.url,
            "--containerd-namespace",
            f"sw{tag}",
            "--containerd-plugins-namespace",
            f"sw{tag}p",
            *DAEMON_FLAGS,
            "--label",
            f"{NODE_LABEL}={node.name}",
            *self.extra_flags.get(node.name, ()),
        ]
        log = open(node.root / "dockerd.log", "ab")
        # the offline setting: a worker asks no registry before each task (all nodes hold the test images)
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                         start_new_session=True)  # fmt: skip
        log.close()

    def _wait_answers(self, node: Node, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while subprocess.run(["docker", "-H", node.url, "version"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                tail = (node.root / "dockerd.log").read_text(errors="replace")[-2000:]
                raise ClusterError(f"dockerd {node.name} did not answer within {timeout} s:\n{tail}")
            time.sleep(0.2)

    def _init_swarm(self) -> None:
        m = self.manager
        addr = f"127.0.0.1:{m.port}"
        self.docker(1, "swarm", "init", "--listen-addr", addr, "--advertise-addr", addr,
                    "--dispatcher-heartbeat", self.heartbeat)  # fmt: skip
        self._drop_ingress()
        token = self.docker(1, "swarm", "join-token", "-q", "worker").stdout.decode().strip()
        for node in self.nodes[1:]:
            own = f"127.0.0.1:{node.port}"
            self.docker(node.index, "swarm", "join", "--token", token, "--listen-addr", own,
                        "--advertise-addr", own, addr)  # fmt: skip
        for node in self.nodes:
            node.node_id = self.docker(node.index, "info", "-f", "{{.Swarm.NodeID}}").stdout.decode().strip()
            self.docker(1, "node", "update", "--label-add", f"{NODE_LABEL}={node.name}", node.node_id)
        deadline = time.monotonic() + 30
        while any(s != "Ready" for s in self.node_states().values()):
            if time.monotonic() > deadline:
                raise ClusterError(f"nodes not Ready within 30 s: {self.node_states()}")
            time.sleep(0.2)

    def _drop_ingress(self) -> None:
        """The ingress overlay makes the manager build a `docker_gwbridge` bridge and a VXLAN socket in the host's
        network namespace; these tests use no overlay, so both go (the bridge appears a moment after init)."""
        self.docker(1, "network", "rm", "ingress", input=b"y\n", check=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.docker(1, "network", "rm", "docker_gwbridge", check=False).returncode == 0:
                return
            time.sleep(0.2)

    def _load_images(self) -> None:
        """The same image IDs on every node: saved once from the default daemon, loaded into each."""
        assert self.base is not None
        archive = self.base / "images.tar"
        present = [
            i
            for i in self.images
            if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode == 0
        ]
        if not present:
            raise ClusterError(f"none of {self.images} is on the default engine (scripts/build-images.sh; is it up?)")
        subprocess.run(["docker", "save", "-o", str(archive), *present], check=True, capture_output=True)
        for node in self.nodes:
            self.docker(node.index, "load", "-q", "-i", str(archive), timeout=120)
        archive.unlink()

    # -- tear-down --------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Every daemon stopped (its containers with it), mounts undone, the folder removed."""
        if self.base is None:
            return
        for node in reversed(self.nodes):
            self._stop_daemon(node)
        _remove_base(self.base)
        self.base = None

    def _stop_daemon(self, node: Node, timeout: float = 40) -> None:
        pid = node.pid()
        if pid is None or not _alive(pid) or not _is_ours(pid, node.root):
            return
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)


# -- leftovers and processes -----------------------------------------------------------------------------------------


def cleanup_leftovers() -> None:
    """Remove the clusters of test runs that ended without stopping theirs (crashed, killed)."""
    for base in Path("/tmp").glob(f"{PREFIX}*"):
        owner = _read_owner(base / "owner")
        if owner is not None and _alive(owner[0]) and _start_ticks(owner[0]) == owner[1]:
            continue  # a live session's cluster
        _remove_base(base)


def _remove_base(base: Path) -> None:
    """Kill every process started under `base` (daemons, containerd, shims) and what they run, unmount, delete."""
    roots = [pid for pid in _pids() if f"{base}/" in _cmdline(pid)]
    for pid in roots:  # dockerd first: it would restart containerd
        if "dockerd" in _cmdline(pid):
            _signal(pid, signal.SIGTERM)
    for pid in roots:
        _wait_gone(pid, 30)
    survivors = [pid for pid in _pids() if f"{base}/" in _cmdline(pid)]
    for pid in _descendants(survivors) + survivors:  # a shim and its container outlive a killed dockerd
        _signal(pid, signal.SIGKILL)
    for pid in survivors:
        _wait_gone(pid, 10)
    for mount in sorted(_mounts_under(base), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def _mounts_under(base: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(base) or point.startswith(f"{base}/"):
                out.append(point)
    return out


def _read_owner(path: Path) -> tuple[int, int | None] | None:
    try:
        pid, ticks = path.read_text().split()
        return int(pid), int(ticks)
    except (OSError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pid: int, root: Path) -> bool:
    return str(root) in _cmdline(pid)


def _stat(pid: int) -> list[str]:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _descendants(pids: list[int]) -> list[int]:
    parent = {p: int(f[1]) for p in _pids() if len(f := _stat(p)) > 1}
    found: list[int] = []
    frontier = set(pids)
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier and p not in found]
        found.extend(children)
        frontier = set(children)
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    if not fields:
        return False
    if fields[0] in ("Z", "X"):  # a daemon we started stays a zombie until reaped
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _swarm_ports() -> tuple[int, int, int]:
    """2477-2479 when free; otherwise (another session's swarm holds them) three free ports."""
    if all(_port_free(p) for p in SWARM_PORTS):
        return SWARM_PORTS
    socks = [socket.socket() for _ in range(3)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        a, b, c = (s.getsockname()[1] for s in socks)
        return a, b, c
    finally:
        for s in socks:
            s.close()


def main() -> None:  # pragma: no cover - by hand: python -m swarm.cluster (from tests/), Ctrl-C tears down
    cluster = SwarmCluster().start()
    print(json.dumps({"manager": cluster.manager_url, "nodes": {n.name: n.node_id for n in cluster.nodes}}))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
