"""Points where other subsystems (MLflow, capacity) join an attempt's life, without the reconciler knowing them.

The reconciler calls `before_start` after the attempt's intent is recorded and before its container is created, and
`after_finish` once an attempt's outcome is durably in status.json. A hook must never block or fail a job: errors
are logged and swallowed by the caller. `after_finish` may be missed by a crash right after the status write, so a
hook that needs every finish must also look at the recorded history when it starts (`on_start`).
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from .spec import JobManifest
from .status import AttemptRecord, JobStatus

log = structlog.get_logger("opeva.hooks")


class StatusLookup(Protocol):
    """A job's recorded status by name (a dict of statuses is one)."""

    def get(self, name: str, /) -> JobStatus | None: ...


class AttemptHooks(Protocol):
    def on_start(self, statuses: StatusLookup) -> None: ...

    def before_start(self, manifest: JobManifest, status: JobStatus, attempt: int, container: str) -> dict[str, str]:
        """Extra environment for the attempt's container."""
        ...

    def after_finish(self, status: JobStatus, record: AttemptRecord) -> None: ...

    def resource_sample(self, job: str, container: str, sample: dict[str, Any]) -> None:
        """A resource sample of a running attempt (controller/sampler.py): cpu (cores), memory (bytes), gpu (%)."""
        ...

    def close(self) -> None: ...


class NoHooks:
    def on_start(self, statuses: StatusLookup) -> None:
        pass

    def before_start(self, manifest: JobManifest, status: JobStatus, attempt: int, container: str) -> dict[str, str]:
        return {}

    def after_finish(self, status: JobStatus, record: AttemptRecord) -> None:
        pass

    def resource_sample(self, job: str, container: str, sample: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def call_hook(fn, *args):
    """Hooks never block or fail a job: an error is logged and the hook's answer is None."""
    try:
        return fn(*args)
    except Exception:
        log.exception("hook_failed", hook=getattr(fn, "__qualname__", str(fn)))
        return None
