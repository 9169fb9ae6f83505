"""MLflow tracking: one run per attempt, opened before the container starts, always closed with the right status.

Joined to the controller only through its attempt hooks (controller/hooks.py); without a tracking URI it is off
and the controller runs with `NoHooks`.

Modules, each one idea:
  config.py   the tracking URI (`Settings.mlflow_uri`) and `MlflowSettings` (controller/settings.py) in one value
  rest.py     MLflow's REST API over HTTP, a timeout on every call, no hidden retries
  values.py   pure translations: outcome -> run status, progress/result numbers -> metrics, spec -> params
  outbox.py   what is still owed to MLflow, persisted in DATA/.opeva/mlflow-outbox/
  sender.py   the thread that delivers the outbox in order, with backoff
  hooks.py    MlflowHooks: before_start, after_finish, on_start, the progress mirror and the recovery sweep

Order and idempotency of the outbox (see also README, "MLflow"):
- Per attempt the order is fixed: find-or-create the run, params, metric snapshots oldest first, then the close
  (final metrics and outcome tags, artifacts, and the terminal status last). Attempts are independent.
- Delivery is at least once, and every call is safe to repeat: the run is found again by its identity tags
  (opeva.instance, opeva.job, opeva.runKey, opeva.attempt; RUNNING runs only) before one is created, so a crash
  between "created" and "recorded" never makes two runs; metrics carry the timestamp and step fixed when they were
  queued (MLflow stores an identical metric once); params are logged with the same values; artifacts overwrite
  the same path; setting a run's status twice is harmless.
- The attempt is written to the outbox before MLflow is called and before its container exists; its close is
  one atomic write holding all the close needs; its folder goes only after MLflow confirmed the final status.
"""

from __future__ import annotations

from typing import Any

from ..hooks import AttemptHooks, NoHooks
from ..store import DataStore
from .config import TrackingConfig, TrackingConfigError


def build_hooks(store: DataStore, runtime: Any = None, tracking_uri: str | None = None) -> AttemptHooks:
    """MlflowHooks when a tracking URI is configured (`Settings.mlflow_uri`); NoHooks otherwise."""
    uri = tracking_uri
    if not uri:
        return NoHooks()
    from .hooks import MlflowHooks

    return MlflowHooks(TrackingConfig.from_env(uri), store, runtime)


__all__ = ["build_hooks", "TrackingConfig", "TrackingConfigError"]
