"""Shared test setup: a real Docker engine and the locally built test images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench.seed is shared with the benchmarks


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Fail loudly (never skip) when the engine is missing: end-to-end claims need the real thing."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers; run scripts/ensure-docker.sh (see README)")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-images.sh")], check=True)


@pytest.fixture(scope="session")
def swarm_cluster(docker_engine):
    """A real 3-node swarm (manager n1, workers n2 and n3, each its own dockerd) for the whole session; skipped
    with the reason where it cannot be made (not root, no dockerd). Torn down at the end, leaving nothing behind."""
    from swarm.cluster import SwarmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SwarmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An empty data folder with its specs folder."""
    d = tmp_path / "data"
    (d / "specs").mkdir(parents=True)
    return d


@pytest.fixture(autouse=True)
def _no_controller_outlives_its_test():
    """Controllers a test started (not those of module or session fixtures) are killed when it ends."""
    from e2e.harness import STARTED, kill_started_controllers

    before = len(STARTED)
    yield
    kill_started_controllers(since=before)
