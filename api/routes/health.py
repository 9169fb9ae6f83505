"""Liveness and readiness: the controller's heartbeat, Docker as the controller last saw it, jobs per phase.

No authentication: probes and load balancers call it. It reveals counts, never names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from controller.gitsource import read_source

from ..context import Ctx
from ..heartbeat import read_heartbeat
from ..models import Health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Is the controller alive, does Docker answer, jobs per phase",
    openapi_extra={"security": []},
)
def health(ctx: Ctx) -> dict[str, Any]:
    heartbeat = read_heartbeat(ctx.store)
    beat, age, alive = heartbeat.data, heartbeat.age, heartbeat.alive
    docker = beat.get("docker") if alive and isinstance(beat.get("docker"), bool) else None
    snap = ctx.index.snapshot()
    phases = dict(snap.phase_counts)
    beat_phases = beat.get("phases")
    if alive and isinstance(beat_phases, dict):
        phases.update({str(k): v for k, v in beat_phases.items() if isinstance(v, int) and not isinstance(v, bool)})
    pid = beat.get("pid")
    return {
        "status": "ok" if alive and docker else "degraded",
        "api": "ok",
        "controller": {
            "alive": alive,
            "heartbeatAge": None if age is None else round(age, 3),
            "time": beat.get("time") if isinstance(beat.get("time"), str) else None,
            "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        },
        "docker": docker,
        "phases": phases,
        "jobs": len(snap.names),
        "access": ctx.access.describe(),
        "source": _source_summary(ctx),
    }


def _source_summary(ctx: Ctx) -> dict[str, Any] | None:
    """The git source in brief (GET /source has it all); None when the folder follows no repository."""
    source = read_source(ctx.store.root)
    if source is None:
        return None
    keys = ("repoURL", "ref", "appliedCommit", "lastFetchedCommit", "lastAttemptAt", "lastError", "held")
    return {k: source.get(k) for k in keys}
