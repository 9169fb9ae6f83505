"""The OPEVA clients and simulator against a real `opeva run` (controller and API), a real engine and the stand-in
simulator image."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from e2e.harness import ControllerProcess, cleanup_containers, free_port

from .simimage import REPOSITORY, build_simulator_image

CONFIG = """metadata:
  experiment_name: citylearn-ppo
  run_name: seed-42
simulator:
  dataset_path: ./datasets/demo/schema.json
algorithm: {name: PPO}
test: {episodes: 3, sleep: 0.1}
"""


@pytest.fixture(scope="session", autouse=True)
def _engine(docker_engine):
    yield
    cleanup_containers()


@pytest.fixture(scope="session")
def simulator_image(docker_engine) -> str:
    return build_simulator_image()


def seed_folder(data: Path) -> None:
    """A data folder as the old VM had it: configs/ and datasets/."""
    (data / "configs").mkdir(parents=True, exist_ok=True)
    (data / "configs" / "ppo.yaml").write_text(CONFIG)
    (data / "datasets" / "demo").mkdir(parents=True, exist_ok=True)
    (data / "datasets" / "demo" / "schema.json").write_text(json.dumps({"buildings": ["b1", "b2"]}))


def stack_env(**extra: str) -> dict[str, str]:
    return {"OPEVA_SIMULATOR_IMAGE": REPOSITORY, "OPEVA_NETWORK": "none", **extra}


@pytest.fixture
def stack(data: Path, simulator_image: str):
    """`opeva run` with its API on a free loopback port, over a seeded data folder; yields (process, client)."""
    seed_folder(data)
    proc = ControllerProcess(data, port=free_port(), env=stack_env(), resync=1.0).start()
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        yield proc, client
    proc.kill()


def hostname() -> str:
    return socket.gethostname()
