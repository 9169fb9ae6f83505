from __future__ import annotations

from pathlib import Path

import pytest
from e2e.harness import cleanup_containers

from .gitserver import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "git")


@pytest.fixture
def docker_jobs(docker_engine):
    yield
    cleanup_containers()
