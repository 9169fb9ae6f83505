"""MLflow tests: a real `mlflow server` (sqlite, loopback, a free port) for the session, a real `opeva run` per test.

The controller runs as a child process (tests/e2e/harness.py) with `--mlflow-uri`, short mirror and retry
intervals, and this session's default experiment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from e2e.harness import ControllerProcess, cleanup_containers
from tracking_support import EXPERIMENT, PYTHON_IMAGE, UI, MlflowServer

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="session", autouse=True)
def _engine(docker_engine):
    if subprocess.run(["docker", "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode != 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh"), "--python"], check=True)
    yield
    cleanup_containers()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture
def mlflow(mlflow_server: MlflowServer) -> MlflowServer:
    """The session's server, up at the start of every test (a failed outage test may have left it stopped)."""
    if not mlflow_server.healthy():
        mlflow_server.start()
    return mlflow_server


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "specs").mkdir(parents=True)
    return d


@pytest.fixture
def start_controller(data: Path, mlflow: MlflowServer):
    """Start (or restart) `opeva run --mlflow-uri ...` on `data`; every one started is killed at the end."""
    env = {
        "OPEVA_MLFLOW_MIRROR_SECONDS": "1",
        "OPEVA_MLFLOW_RETRY_MAX_SECONDS": "1",
        "OPEVA_MLFLOW_EXPERIMENT": EXPERIMENT,
        "OPEVA_MLFLOW_UI": UI,
        "OPEVA_ALLOW_HOST_NETWORK": "1",  # test_mlflow_runs reaches the server on loopback from a job
    }
    started: list[ControllerProcess] = []

    def start() -> ControllerProcess:
        proc = ControllerProcess(data, "--mlflow-uri", mlflow.uri, resync=1.0, env=env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
