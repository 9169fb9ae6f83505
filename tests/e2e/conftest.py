from __future__ import annotations

from pathlib import Path

import pytest

from .harness import ControllerProcess, cleanup_containers


@pytest.fixture(scope="session", autouse=True)
def _engine(docker_engine):
    yield
    cleanup_containers()


@pytest.fixture
def controller(data: Path):
    """A running controller on `data`; stopped (not the jobs) at the end."""
    proc = ControllerProcess(data).start()
    yield proc
    proc.kill()
