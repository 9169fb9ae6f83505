from __future__ import annotations

from pathlib import Path

import pytest

from .engines import DockerEngine, SwarmEngine
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


@pytest.fixture(params=["docker", pytest.param("swarm", marks=pytest.mark.swarm)])
def engine(request):
    """The engine a core case runs over: this Docker engine, then a real 3-node Swarm (`--runtime swarm`)."""
    if request.param == "docker":
        return DockerEngine()
    return SwarmEngine(request.getfixturevalue("swarm_cluster"))


@pytest.fixture
def engine_controller(data: Path, engine):
    """A running controller on `data` over `engine`; stopped (not the jobs) at the end."""
    proc = ControllerProcess(data, env=engine.env).start()
    yield proc
    proc.kill()
