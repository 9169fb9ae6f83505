"""CLI test setup: the installed `opeva` entry point, run as a subprocess, against a real `opeva run` (controller and
API, with a token) on a temporary data folder and the real Docker engine.

Tests that need the server are marked `docker` and share one server for the session; each uses its own job names
and a label of its own, so they do not see each other's jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e.harness import ControllerProcess, cleanup_containers, free_port

OPEVA = Path(sys.executable).parent / "opeva"
TOKEN = "cli-test-token"
COLOUR_OVERRIDES = ("FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def _default_sigint() -> None:
    # a test run started in the background inherits SIGINT ignored; the CLI under test must see Ctrl-C
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Cli:
    """Runs `opeva ARGS` through the installed entry point, stdin not a terminal, colours not forced."""

    env: dict[str, str] = field(default_factory=dict)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPEVA_") and k not in COLOUR_OVERRIDES}
        return {**base, **self.env, **(extra or {})}

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(OPEVA), *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.environ(env),
            timeout=timeout,
            preexec_fn=_default_sigint,
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [str(OPEVA), *args], env=self.environ(kwargs.pop("env", None)), preexec_fn=_default_sigint, **kwargs
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """No server: a config folder of its own, so the user's ~/.config/opeva never leaks in."""
    return Cli({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})


@dataclass
class Server:
    proc: ControllerProcess
    cli: Cli

    @property
    def data(self) -> Path:
        return self.proc.data

    @property
    def url(self) -> str:
        return self.proc.url


@pytest.fixture(scope="session")
def server(docker_engine, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    (data / "specs").mkdir(parents=True)
    proc = ControllerProcess(data, resync=2.0, port=free_port(), env={"OPEVA_API_TOKEN": TOKEN}, program=[str(OPEVA)])
    proc.start()
    if proc.proc.poll() is not None:
        pytest.fail(f"opeva run exited at start:\n{proc.output()[-3000:]}")
    cli = Cli({"XDG_CONFIG_HOME": str(root / "xdg"), "OPEVA_SERVER": proc.url, "OPEVA_API_TOKEN": TOKEN})
    try:
        yield Server(proc, cli)
    finally:
        proc.stop()
        cleanup_containers()
