from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _cluster(swarm_cluster):
    """Every test here runs against the session's swarm."""
    yield
