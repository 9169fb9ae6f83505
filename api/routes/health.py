"""Liveness and readiness: the controller's heartbeat, Docker as the controller last saw it, jobs per phase.

No authentication: probes and load balancers call it. It reveals counts, never names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from controller.status import utcnow
from controller.store import read_json

from ..context import Ctx
from ..models import Health

router = APIRouter(tags=["health"])

HEARTBEAT_FRESH_SECONDS = 30.0


def heartbeat_age(beat: dict[str, Any]) -> float | None:
    raw = beat.get("time")
    if not isinstance(raw, str):
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return max(0.0, (utcnow() - t).total_seconds())


@router.get(
    "/health",
    response_model=Health,
    summary="Is the controller alive, does Docker answer, jobs per phase",
    openapi_extra={"security": []},
)
def health(ctx: Ctx) -> dict[str, Any]:
    beat = read_json(ctx.store.state_dir / "heartbeat.json")
    beat = beat if isinstance(beat, dict) else {}
    age = heartbeat_age(beat)
    alive = age is not None and age <= HEARTBEAT_FRESH_SECONDS
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
    }
