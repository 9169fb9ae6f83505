"""Stop and start the real Docker daemon, the way a daemon restart or a reboot does (live-restore off)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

PID_FILE = "/var/run/docker.pid"


def _answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _systemd_managed() -> bool:
    return (
        subprocess.run(["systemctl", "is-active", "--quiet", "docker"], capture_output=True).returncode == 0
        if os.path.exists("/run/systemd/system")
        else False
    )


def require_control() -> None:
    if os.geteuid() != 0 or not (os.path.exists(PID_FILE) or _systemd_managed()):
        pytest.skip("needs root and a local dockerd to restart")


def stop_dockerd() -> list[str]:
    """SIGTERM the daemon (it stops every container) and wait until it is gone; returns how to start it again."""
    if _systemd_managed():
        subprocess.run(["systemctl", "stop", "docker"], check=True)
        return ["systemctl"]
    pid = int(open(PID_FILE).read().strip())
    cmd = open(f"/proc/{pid}/cmdline").read().split("\0")[:-1]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        raise AssertionError("dockerd did not stop within 90 s")
    return cmd


def _alive(pid: int) -> bool:
    """Running, not a zombie: a daemon this test process started stays a zombie until reaped."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def start_dockerd(cmd: list[str]) -> None:
    if cmd == ["systemctl"]:
        subprocess.run(["systemctl", "start", "docker"], check=True)
    else:
        log = open("/var/log/opeva-dockerd.log", "ab")
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _answers():
        if time.monotonic() > deadline:
            raise AssertionError("dockerd did not answer within 60 s of its start")
        time.sleep(0.2)
