"""The nodes jobs run on (GET /nodes): this machine on a single engine, every node on Swarm, from the controller's
heartbeat, with their labels, resources, state, data-folder check and running jobs. `/hosts` is the same in the old
backend's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..context import Ctx
from ..hosts import LocalHost

router = APIRouter(tags=["nodes"])


@router.get("/nodes", summary="The nodes jobs run on: state, labels, resources, running jobs")
def nodes(ctx: Ctx) -> dict[str, Any]:
    host = LocalHost.read(ctx.store)
    return {
        "runtime": host.runtime,
        "controller": {"host": host.name, "online": host.online, "lastSeen": host.last_seen},
        "items": [{**n, "online": host.node_online(n)} for n in host.nodes],
    }
