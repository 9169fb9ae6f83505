"""MLflow's REST API over plain HTTP: a timeout on every call and no hidden retries.

Retrying is the outbox's job. This module only says whether a call worked, may work later (`Unavailable`: no
connection, a timeout, HTTP 429 or 5xx) or never will (`Rejected`: any other 4xx, with MLflow's error code).
MLflow's own client retries for minutes with backoff inside one call; a call here takes at most its timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import requests

from .config import TrackingConfig
from .values import safe_key

API = "/api/2.0/mlflow"
# MLflow's limits for one log-batch request and for keys and values.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
UPLOAD_READ_TIMEOUT = 120.0


class MlflowError(Exception):
    """Base of MLflow call failures."""


class Unavailable(MlflowError):
    """The server did not answer in time, or answered that it cannot serve now: try again later.

    `server_error` marks an HTTP 500-class answer other than 502/503/504: the server is there but failed on this
    request, which may fail the same way every time, so the sender gives such a call a few tries only.
    """

    def __init__(self, message: str, server_error: bool = False):
        super().__init__(message)
        self.server_error = server_error


class Rejected(MlflowError):
    """The server refused the request itself; sending it again gives the same answer."""

    def __init__(self, message: str, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class Deadline:
    """A time budget shared by several calls, so "create the run" as a whole takes at most N seconds."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, cap: float) -> float:
        left = self.left()
        if left <= 0.05:
            raise Unavailable("time budget spent")
        return min(cap, left)


class FileRange:
    """Bytes [start, end) of an open file as a request body with a known length (the log of one attempt)."""

    def __init__(self, f: BinaryIO, start: int, end: int, chunk: int = 1 << 20):
        self.start, self.end, self.chunk = start, end, chunk
        self._f = f
        self._pos = start

    def __len__(self) -> int:
        return self.end - self.start

    def read(self, n: int = -1) -> bytes:
        left = self.end - self._pos
        if left <= 0:
            return b""
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self._f.fileno(), n, self._pos)
        self._pos += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(self.chunk):
            yield block


class MlflowRest:
    def __init__(self, config: TrackingConfig):
        self.config = config
        self.base = config.tracking_uri
        self.session = requests.Session()
        self.session.verify = config.verify_tls
        self.session.trust_env = False  # no proxies from the environment: the server is named explicitly
        if config.token:
            self.session.headers["Authorization"] = f"Bearer {config.token}"
        elif config.username:
            self.session.auth = (config.username, config.password or "")

    # ---- transport ------------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, timeout: float | tuple[float, float], **kwargs) -> dict[str, Any]:
        try:
            resp = self.session.request(method, url, timeout=timeout, **kwargs)
        except requests.RequestException as err:
            raise Unavailable(f"{method} {url}: {type(err).__name__}: {err}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise Unavailable(
                f"{method} {url}: HTTP {resp.status_code} {resp.text[:200]}",
                server_error=resp.status_code >= 500 and resp.status_code not in (502, 503, 504),
            )
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = {}
        if resp.status_code >= 400:
            code = body.get("error_code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None
            raise Rejected(
                f"{method} {url}: HTTP {resp.status_code} {code or ''} {message or resp.text[:200]}",
                code=code,
                http_status=resp.status_code,
            )
        if not isinstance(body, dict):
            raise Unavailable(f"{method} {url}: unexpected answer {resp.text[:200]!r}")
        return body

    def call(
        self, endpoint: str, body: dict[str, Any] | None = None, *, timeout: float, get: bool = False
    ) -> dict[str, Any]:
        url = f"{self.base}{API}/{endpoint}"
        if get:
            return self._request("GET", url, timeout=timeout, params=body)
        return self._request("POST", url, timeout=timeout, json=body or {})

    # ---- experiments and runs -------------------------------------------------------------------------------
    def experiment_id(self, name: str, deadline: Deadline) -> str:
        """The id of the experiment `name`, created when it does not exist (a concurrent create is fine)."""
        for _ in range(2):
            try:
                exp = self.call(
                    "experiments/get-by-name",
                    {"experiment_name": name},
                    timeout=deadline.timeout(self.config.call_timeout),
                    get=True,
                )["experiment"]
            except Rejected as err:
                if err.code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            else:
                if exp.get("lifecycle_stage") == "deleted":
                    raise Rejected(
                        f"experiment {name!r} is deleted in MLflow; restore it or name another", code="INVALID_STATE"
                    )
                return str(exp["experiment_id"])
            try:
                return str(
                    self.call("experiments/create", {"name": name}, timeout=deadline.timeout(self.config.call_timeout))[
                        "experiment_id"
                    ]
                )
            except Rejected as err:
                if err.code != "RESOURCE_ALREADY_EXISTS":
                    raise
        raise Unavailable(f"experiment {name!r} neither found nor created")

    def running_runs(self, experiment_id: str, tags: dict[str, str], deadline: Deadline) -> list[dict]:
        """RUNNING runs of the experiment carrying all these tags (the runs of one attempt), oldest first."""
        clauses = [f"tags.`{k}` = '{_quote_filter(v)}'" for k, v in sorted(tags.items())]
        clauses.append("attributes.status = 'RUNNING'")
        body = {
            "experiment_ids": [experiment_id],
            "filter": " and ".join(clauses),
            "max_results": 10,
            "run_view_type": "ACTIVE_ONLY",
            "order_by": ["attributes.start_time ASC"],
        }
        runs = self.call("runs/search", body, timeout=deadline.timeout(self.config.call_timeout)).get("runs") or []
        return [r["info"] for r in runs]

    def create_run(
        self, experiment_id: str, run_name: str, start_time_ms: int, tags: dict[str, str], deadline: Deadline
    ) -> dict:
        body = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        return self.call("runs/create", body, timeout=deadline.timeout(self.config.call_timeout))["run"]["info"]

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[dict] = (),
        params: Sequence[dict] = (),
        tags: Sequence[dict] = (),
        timeout: float | None = None,
    ) -> None:
        body = {"run_id": run_id, "metrics": list(metrics), "params": list(params), "tags": list(tags)}
        self.call("runs/log-batch", body, timeout=timeout or self.config.call_timeout)

    def update_run(self, run_id: str, status: str, end_time_ms: int | None, timeout: float | None = None) -> None:
        body: dict[str, Any] = {"run_id": run_id, "status": status}
        if end_time_ms is not None:
            body["end_time"] = end_time_ms
        self.call("runs/update", body, timeout=timeout or self.config.call_timeout)

    # ---- artifacts ------------------------------------------------------------------------------------------
    def upload(
        self, artifact_uri: str, artifact_path: str, name: str, source: BinaryIO, start: int = 0, end: int | None = None
    ) -> None:
        """Put bytes [start, end) of the open file `source` at ARTIFACT_URI/artifact_path/name (overwriting:
        idempotent). The caller opened it by the safe rule (jobfiles) and closes it.

        `mlflow-artifacts:` and http(s) artifact roots are written over HTTP with this client's timeouts; any other
        root (a shared folder, S3) goes through MLflow's artifact repositories.
        """
        end = os.fstat(source.fileno()).st_size if end is None else end
        scheme = urlsplit(artifact_uri).scheme
        if scheme in ("mlflow-artifacts", "http", "https"):
            url = f"{self._artifact_base(artifact_uri)}/{quote(artifact_path)}/{quote(name)}"
            self._request(
                "PUT",
                url,
                timeout=(self.config.call_timeout, UPLOAD_READ_TIMEOUT),
                data=FileRange(source, start, end),
                headers={"Content-Type": "application/octet-stream"},
            )
            return
        self._upload_with_mlflow(artifact_uri, artifact_path, name, source, start, end)

    def _artifact_base(self, artifact_uri: str) -> str:
        parts = urlsplit(artifact_uri)
        if parts.scheme in ("http", "https"):
            return artifact_uri.rstrip("/")
        # mlflow-artifacts:/1/RUN/artifacts, or mlflow-artifacts://host:port/1/RUN/artifacts
        base = f"{urlsplit(self.base).scheme}://{parts.netloc}" if parts.netloc else self.base
        return f"{base}/api/2.0/mlflow-artifacts/artifacts/{parts.path.strip('/')}"

    @staticmethod
    def _upload_with_mlflow(
        artifact_uri: str, artifact_path: str, name: str, source: BinaryIO, start: int, end: int
    ) -> None:
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory(prefix="opeva-mlflow-") as tmp:
            local = Path(tmp) / name
            body = FileRange(source, start, end)
            with open(local, "wb") as dst:
                while block := body.read(body.chunk):
                    dst.write(block)
            try:
                get_artifact_repository(artifact_uri).log_artifact(str(local), artifact_path)
            except Exception as err:  # the repositories raise anything from OSError to boto errors
                # a few tries (server_error), then the artifact is given up rather than holding up the close
                raise Unavailable(f"upload to {artifact_uri}: {err}", server_error=True) from None


def _quote_filter(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def param(key: str, value: str) -> dict[str, str]:
    return {"key": safe_key(key), "value": value[:MAX_PARAM_VALUE]}


def tag(key: str, value: str) -> dict[str, str]:
    return {"key": safe_key(key), "value": value[:MAX_TAG_VALUE]}


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
