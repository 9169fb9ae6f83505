"""The Docker SDK client both runtimes talk through (this engine, or a Swarm manager): calls time out, and an engine
that does not answer becomes `RuntimeUnavailable`."""

from __future__ import annotations

from typing import Any

import docker
import requests
from docker import errors as derr

from .base import LABEL_INSTANCE, LABEL_MANAGED, RuntimeUnavailable

UNAVAILABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, derr.DockerException)


class EngineClient:
    what = "Docker engine"  # named in the unavailable error

    def __init__(
        self, base_url: str | None = None, timeout: int = 30, instance: str | None = None, version: str | None = None
    ):
        """`instance` scopes what is ours (the data folder's id); `version`: the API version (default: asked now)."""
        self._scope = f"{LABEL_INSTANCE}={instance}" if instance else LABEL_MANAGED
        kwargs: dict[str, Any] = {"timeout": timeout, **({"version": version} if version else {})}
        self._client = docker.DockerClient(base_url=base_url, **kwargs) if base_url else docker.from_env(**kwargs)
        self._api = self._client.api

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except derr.APIError:
            raise
        except UNAVAILABLE as err:
            raise RuntimeUnavailable(f"{self.what} unreachable: {err}") from err

    def ping(self) -> bool:
        try:
            return bool(self._api.ping())
        except Exception:
            return False
