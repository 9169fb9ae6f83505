"""Drive a real `opeva run` process against a real Docker engine and a real data folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BUSYBOX = "opeva-test/busybox:1"
SESSION = uuid.uuid4().hex[:6]  # in every job name and label, so runs never collide with leftovers
TEST_LABEL = "opeva-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_name(base: str) -> str:
    return f"{base}-{SESSION}"


def spec_doc(name: str, image: str = BUSYBOX, labels: dict[str, str] | None = None, **spec: Any) -> dict:
    spec.setdefault("network", "none")
    return {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {TEST_LABEL: SESSION, **(labels or {})}},
        "spec": {"image": image, **spec},
    }


def shell_spec(name: str, script: str, **spec: Any) -> dict:
    return spec_doc(name, command=["sh", "-c"], args=[script], **spec)


def write_spec(data: Path, doc: dict, file: str | None = None) -> Path:
    """Write like a careful client: a hidden temp file, then rename."""
    specs = data / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    path = specs / (file or f"{doc['metadata']['name']}.yaml")
    tmp = specs / f".{path.name}.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_status(data: Path, name: str) -> dict | None:
    return read_json_file(data / "jobs" / name / "status.json")


def read_events(data: Path, name: str) -> list[dict]:
    try:
        return [json.loads(line) for line in (data / "jobs" / name / "events.jsonl").read_text().splitlines()]
    except OSError:
        return []


def read_log(data: Path, name: str) -> str:
    try:
        return (data / "jobs" / name / "logs" / f"{name}.log").read_text()
    except OSError:
        return ""


def wait_for(check: Callable[[], Any], timeout: float = 30, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_phase(data: Path, name: str, *phases: str, timeout: float = 30, reason: str | None = None) -> dict:
    def check():
        st = read_status(data, name)
        if st and st["phase"] in phases and (reason is None or st["reason"] == reason):
            return st
        return None

    try:
        return wait_for(check, timeout, what=f"{name} in {phases}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last status: {read_status(data, name)}") from None


def containers(name: str) -> list[dict]:
    """Every container, running or not, that carries this job's label."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=opeva.job={name}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cleanup_containers() -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={TEST_LABEL}={SESSION}"], capture_output=True, text=True
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


STARTED: list[ControllerProcess] = []  # every controller a test started; killed after each test (conftest)


def kill_started_controllers(since: int = 0) -> None:
    """A failed assertion must not leave a controller running into the next test."""
    while len(STARTED) > since:
        STARTED.pop().kill()


class ControllerProcess:
    """`opeva run` as a child process, so tests can SIGKILL it like a crash would.

    Without `port` it runs the controller only (`--no-api`); with `port` the API listens on 127.0.0.1:PORT as well
    and `start` returns once /health answers. `program` is the command that runs the CLI (default: this
    interpreter's `-m cli.main`; the CLI tests pass the installed `opeva` entry point).
    """

    def __init__(
        self,
        data: Path,
        *args: str,
        resync: float = 2.0,
        env: dict[str, str] | None = None,
        port: int | None = None,
        program: list[str] | None = None,
    ):
        self.data = data
        self.env = env or {}
        self.port = port
        api = ["--no-api"] if port is None else ["--host", "127.0.0.1", "--port", str(port)]
        self.args = ["run", "--data", str(data), *api, "--resync", str(resync), *args]
        self.program = program or [sys.executable, "-m", "cli.main"]
        self.proc: subprocess.Popen | None = None
        self.log_path = data.parent / f"{data.name}-controller.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_answers(self) -> bool:
        if self.port is None:
            return True
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 20) -> ControllerProcess:
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        STARTED.append(self)
        self.proc = subprocess.Popen(
            [*self.program, *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )

        def ready():
            beat = read_json_file(self.data / ".opeva" / "heartbeat.json")
            if self.proc.poll() is not None:
                return True
            return (beat or {}).get("pid") == self.proc.pid and self.api_answers()

        wait_for(ready, timeout=timeout, what="controller start")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(20)
        return self.proc.returncode if self.proc else 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
