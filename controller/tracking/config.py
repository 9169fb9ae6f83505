"""MLflow tracking settings: the URI from `--mlflow-uri` or `MLFLOW_TRACKING_URI`, the rest from `MlflowSettings`.

The variables (OPEVA_MLFLOW_UI, OPEVA_MLFLOW_EXPERIMENT, OPEVA_MLFLOW_JOB_URI, the timeouts, and MLflow's own
MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD / _INSECURE_TLS) are declared once, with their defaults and help, in
controller/settings.py. The credentials authenticate the controller's calls and are not passed to containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..settings import MlflowSettings, SettingsError


class TrackingConfigError(ValueError):
    """A tracking setting that cannot work; the message says which and why."""


@dataclass(frozen=True)
class TrackingConfig:
    """What the tracking code needs, resolved: the defaults live in `MlflowSettings`."""

    tracking_uri: str
    ui_url: str
    job_uri: str
    default_experiment: str
    start_timeout: float
    call_timeout: float
    mirror_seconds: float
    retry_max_seconds: float
    token: str | None
    username: str | None
    password: str | None
    verify_tls: bool

    @classmethod
    def from_env(cls, tracking_uri: str, env: Mapping[str, str] | None = None) -> TrackingConfig:
        """The config for `tracking_uri`, the details from the environment (or from `env` alone, when given)."""
        try:
            mlflow = MlflowSettings.from_env() if env is None else MlflowSettings.from_mapping(env)
        except SettingsError as err:
            raise TrackingConfigError(str(err)) from None
        return cls.from_settings(tracking_uri, mlflow)

    @classmethod
    def from_settings(cls, tracking_uri: str, mlflow: MlflowSettings) -> TrackingConfig:
        uri = tracking_uri.strip().rstrip("/")
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TrackingConfigError(
                f"MLflow tracking URI {tracking_uri!r} is not an http(s) URL of an MLflow server; the controller "
                f"talks to MLflow's REST API (start one with `mlflow server`)"
            )
        return cls(
            tracking_uri=uri,
            ui_url=(mlflow.ui_url or uri).rstrip("/"),
            job_uri=(mlflow.job_uri or uri).rstrip("/"),
            default_experiment=mlflow.experiment,
            start_timeout=mlflow.start_timeout,
            call_timeout=mlflow.call_timeout,
            mirror_seconds=mlflow.mirror_seconds,
            retry_max_seconds=mlflow.retry_max_seconds,
            token=mlflow.token,
            username=mlflow.username,
            password=mlflow.password,
            verify_tls=not mlflow.insecure_tls,
        )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
