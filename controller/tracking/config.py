"""MLflow tracking settings: the URI from `--mlflow-uri` or `MLFLOW_TRACKING_URI`, the rest from the environment.

    MLFLOW_TRACKING_URI              the server (http or https); unset: MLflow off
    OPEVA_MLFLOW_UI                  base URL of the MLflow UI for run links (default: the tracking URI)
    OPEVA_MLFLOW_EXPERIMENT          experiment of jobs that name none in spec or labels (default `opeva`)
    OPEVA_MLFLOW_JOB_URI             the URI handed to containers, when they reach the server by another
                                     address, e.g. a Docker network alias (default: the tracking URI)
    OPEVA_MLFLOW_START_TIMEOUT       seconds an attempt's start may wait for its run (default 2.5)
    OPEVA_MLFLOW_TIMEOUT             seconds for one background call (default 10)
    OPEVA_MLFLOW_MIRROR_SECONDS      progress.json is mirrored at most this often per job (default 5)
    OPEVA_MLFLOW_RETRY_MAX_SECONDS   longest wait between retries while MLflow is away (default 30)

`MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (basic) authenticate the
controller's calls, and `MLFLOW_TRACKING_INSECURE_TLS=true` skips certificate checks, as in MLflow's own client.
They are not passed to containers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_EXPERIMENT = "opeva"


class TrackingConfigError(ValueError):
    """A tracking setting that cannot work; the message says which and why."""


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise TrackingConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise TrackingConfigError(f"{name} must be positive, not {raw}")
    return value


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str
    ui_url: str
    job_uri: str
    default_experiment: str = DEFAULT_EXPERIMENT
    start_timeout: float = 2.5
    call_timeout: float = 10.0
    mirror_seconds: float = 5.0
    retry_max_seconds: float = 30.0
    token: str | None = None
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True

    @classmethod
    def from_env(cls, tracking_uri: str, env: dict[str, str] | None = None) -> TrackingConfig:
        env = dict(os.environ if env is None else env)
        uri = tracking_uri.strip().rstrip("/")
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TrackingConfigError(
                f"MLflow tracking URI {tracking_uri!r} is not an http(s) URL of an MLflow server; the controller "
                f"talks to MLflow's REST API (start one with `mlflow server`)"
            )
        return cls(
            tracking_uri=uri,
            ui_url=(env.get("OPEVA_MLFLOW_UI") or uri).rstrip("/"),
            job_uri=(env.get("OPEVA_MLFLOW_JOB_URI") or uri).rstrip("/"),
            default_experiment=env.get("OPEVA_MLFLOW_EXPERIMENT") or DEFAULT_EXPERIMENT,
            start_timeout=_float(env, "OPEVA_MLFLOW_START_TIMEOUT", 2.5),
            call_timeout=_float(env, "OPEVA_MLFLOW_TIMEOUT", 10.0),
            mirror_seconds=_float(env, "OPEVA_MLFLOW_MIRROR_SECONDS", 5.0),
            retry_max_seconds=_float(env, "OPEVA_MLFLOW_RETRY_MAX_SECONDS", 30.0),
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
            verify_tls=(env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() not in ("1", "true", "yes")),
        )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
