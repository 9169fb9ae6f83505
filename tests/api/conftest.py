"""API test setup: a real uvicorn server on 127.0.0.1 (a free port) over a temporary data folder.

The data folder's records are written here through `controller.store`, the same code the controller uses, so the
API reads exactly the shapes the controller writes. Tests that need a real controller and Docker are marked `docker`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from api.server import bound_port, start_in_thread, stop
from controller.status import JobStatus, utcnow
from controller.store import DataStore, atomic_write_json

TOKEN = "s3cret-token"


@dataclass
class Folder:
    """A data folder the tests fill by hand, standing in for the controller."""

    store: DataStore

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def specs(self) -> Path:
        return self.store.specs_dir

    def spec(
        self, name: str, image: str = "busybox", file: str | None = None, text: str | None = None, **spec: Any
    ) -> Path:
        path = self.specs / (file or f"{name}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            doc = {
                "apiVersion": "opeva/v1",
                "kind": "Job",
                "metadata": {"name": name},
                "spec": {"image": image, **spec},
            }
            text = json.dumps(doc, indent=2) if path.suffix == ".json" else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text)
        return path

    def status(self, name: str, phase: str = "Running", **fields: Any) -> JobStatus:
        st = JobStatus(name=name, phase=phase, updatedAt=utcnow(), **fields)
        self.store.write_status(st)
        return st

    def track(self, statuses: list[JobStatus]) -> None:
        self.store.write_job_track({s.name: s for s in statuses})

    def job_file(self, name: str, rel: str, content: bytes | str) -> Path:
        self.store.ensure_job_dirs(name)
        path = self.store.job_dir(name) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def heartbeat(self, age: float = 0.0, docker: bool = True, phases: dict[str, int] | None = None) -> None:
        t = datetime.now(UTC) - timedelta(seconds=age)
        atomic_write_json(
            self.store.state_dir / "heartbeat.json",
            {
                "time": t.isoformat().replace("+00:00", "Z"),
                "pid": 1234,
                "docker": docker,
                "phases": phases or {"Running": 1},
            },
        )


@dataclass
class Api:
    url: str
    client: httpx.Client
    folder: Folder


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return Folder(DataStore.open(tmp_path / "data"))


def _serve(folder: Folder, token: str | None = None, max_body: int = 1024 * 1024) -> Iterator[Api]:
    app = create_app(folder.root, folder.specs, token=token, max_body=max_body)
    server, thread = start_in_thread(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(server)}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            yield Api(url, client, folder)
    finally:
        stop(server, thread)


@pytest.fixture
def api(folder: Folder) -> Iterator[Api]:
    """The API without authentication."""
    yield from _serve(folder)


@pytest.fixture
def auth_api(folder: Folder) -> Iterator[Api]:
    """The API with a token; its client sends the right one."""
    yield from _serve(folder, token=TOKEN)


@pytest.fixture
def small_api(folder: Folder) -> Iterator[Api]:
    """The API with a 1 KiB body cap."""
    yield from _serve(folder, max_body=1024)
