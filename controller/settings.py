"""Controller settings: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .capacity import parse_gpu_list, parse_queues
from .spec import parse_memory

ARTIFACT_POLICIES = ("keep", "archive", "delete")


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    data_dir: Path
    specs_dir: Path | None = None
    host_data_dir: Path | None = None  # the data folder's path on the Docker host, when we run in a container
    workers: int = 4
    resync_seconds: float = 10.0
    default_network: str | None = None  # Docker's default network when None
    keep_finished_containers: bool = False
    poll_specs: bool = False  # poll the specs folder instead of inotify (network shares)
    poll_interval: float = 2.0
    docker_url: str | None = None
    ttl_succeeded: float | None = None  # collect spec-less succeeded records after this many seconds
    ttl_failed: float | None = None  # the same for failed and stopped ones
    artifacts: str = "keep"  # what collection does with logs/results/progress/outputs: keep | archive | delete
    archive_retention_days: float | None = 30.0  # deleted jobs' archives (DATA/archive) kept this long; None = forever
    mlflow_uri: str | None = None  # MLflow tracking server; None = MLflow off (controller/tracking)
    # capacity (controller/capacity.py): None = detect; a given figure is what jobs get
    cpus: float | None = None
    memory: int | None = None  # bytes
    gpus: tuple[str, ...] | None = None  # device ids; () = none; None = ask nvidia-smi
    reserve_cpus: float | None = None  # taken off detected CPUs (default 0)
    reserve_memory: int | None = None  # taken off detected memory (default 256Mi)
    max_running: int | None = None  # jobs running at once, all queues together
    queues: dict[str, int] | None = None  # queue name -> maxRunning

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = os.environ
        values = dict(
            data_dir=Path(env.get("OPEVA_DATA", "./opeva-data")),
            specs_dir=Path(env["OPEVA_SPECS"]) if env.get("OPEVA_SPECS") else None,
            host_data_dir=Path(env["OPEVA_HOST_DATA"]) if env.get("OPEVA_HOST_DATA") else None,
            workers=int(env.get("OPEVA_WORKERS", "4")),
            resync_seconds=float(env.get("OPEVA_RESYNC_SECONDS", "10")),
            default_network=env.get("OPEVA_NETWORK") or None,
            keep_finished_containers=_env_bool("OPEVA_KEEP_FINISHED_CONTAINERS", False),
            poll_specs=_env_bool("OPEVA_POLL_SPECS", False),
            docker_url=env.get("DOCKER_HOST") or None,
            ttl_succeeded=float(env["OPEVA_TTL_SUCCEEDED"]) if env.get("OPEVA_TTL_SUCCEEDED") else None,
            ttl_failed=float(env["OPEVA_TTL_FAILED"]) if env.get("OPEVA_TTL_FAILED") else None,
            artifacts=env.get("OPEVA_ARTIFACTS", "keep"),
            mlflow_uri=env.get("MLFLOW_TRACKING_URI") or None,
            archive_retention_days=_retention(env.get("OPEVA_ARCHIVE_RETENTION_DAYS", "30")),
        )
        values.update(_capacity_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        _capacity_values(values)
        if values["artifacts"] not in ARTIFACT_POLICIES:
            raise ValueError(
                f"artifacts policy must be one of {', '.join(ARTIFACT_POLICIES)}, not {values['artifacts']!r}"
            )
        return cls(**values)


def _retention(value: str) -> float | None:
    """Days, or None for `0`/`forever` (archives are never pruned)."""
    if value.strip().lower() in ("", "0", "forever", "never"):
        return None
    try:
        days = float(value)
    except ValueError:
        raise ValueError(f"OPEVA_ARCHIVE_RETENTION_DAYS must be a number of days or 'forever', not {value!r}") from None
    if days < 0:
        raise ValueError("OPEVA_ARCHIVE_RETENTION_DAYS must not be negative")
    return days


_CAPACITY_ENV = {
    "cpus": "OPEVA_CPUS",
    "memory": "OPEVA_MEMORY",
    "gpus": "OPEVA_GPUS",
    "reserve_cpus": "OPEVA_RESERVE_CPUS",
    "reserve_memory": "OPEVA_RESERVE_MEMORY",
    "max_running": "OPEVA_MAX_RUNNING",
    "queues": "OPEVA_QUEUES",
}


def _capacity_env(env) -> dict:
    return {key: env[var] for key, var in _CAPACITY_ENV.items() if env.get(var)}


def _capacity_values(values: dict) -> None:
    """Parse the capacity settings given as text, in place; a bad one is a ValueError that names it."""
    parsers = {
        "cpus": float,
        "reserve_cpus": float,
        "memory": parse_memory,
        "reserve_memory": parse_memory,
        "max_running": int,
        "gpus": parse_gpu_list,
        "queues": parse_queues,
    }
    for key, parse in parsers.items():
        raw = values.get(key)
        if isinstance(raw, str):
            try:
                values[key] = parse(raw)
            except ValueError as err:
                raise ValueError(f"{_CAPACITY_ENV[key]}: {err}") from None
    for key in ("cpus", "reserve_cpus", "max_running"):
        if values.get(key) is not None and values[key] < 0:
            raise ValueError(f"{_CAPACITY_ENV[key]} must not be negative")
