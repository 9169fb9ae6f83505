"""The controller's own metrics, in the manner of controller-runtime, and how they leave the process.

The API may run in another process than the controller (docker-compose.split.yml) and shares only the data folder
with it, so the controller serves no port of its own: every heartbeat (DATA/.opeva/heartbeat.json, every 5 s) carries
the samples of this registry (`export()`), and the API's `/metrics` re-exports them next to the job-state metrics it
derives from the records. `opeva run` and the split deployment take the same path; a value is at most one heartbeat
old, and a stale heartbeat exports none (see api/metrics.py).

Names follow the Prometheus rules: `opeva_` prefix, base units (seconds), `_total` on counters (added by
prometheus_client), and no per-job labels on these hot metrics.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .scheduler import Scheduler

REGISTRY = CollectorRegistry(auto_describe=False)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RECONCILES = Counter(
    "opeva_controller_reconciles",
    "Reconciles of one job, by result: success, requeue (asked to look again later), error, engine_unavailable.",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "opeva_controller_reconcile_duration_seconds",
    "Time one reconcile of one job took.",
    buckets=_FAST,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("opeva_workqueue_depth", "Job names waiting for a worker now.", registry=REGISTRY)
QUEUE_ADDS = Counter("opeva_workqueue_adds", "Job names put on the work queue (duplicates merged).", registry=REGISTRY)
QUEUE_LATENCY = Histogram(
    "opeva_workqueue_queue_duration_seconds",
    "Time a job name waited on the work queue before a worker took it.",
    buckets=_FAST,
    registry=REGISTRY,
)
QUEUE_RETRIES = Counter("opeva_workqueue_retries", "Rate-limited requeues after a failed reconcile.", registry=REGISTRY)
CONTAINER_SECONDS = Histogram(
    "opeva_container_operation_duration_seconds",
    "Time the engine took to create or start a container.",
    ["operation"],
    buckets=_SLOW,
    registry=REGISTRY,
)
WATCH_EVENTS = Counter(
    "opeva_watch_events",
    "Events the watchers received, by source: specs (the folder watch), engine (container events).",
    ["source"],
    registry=REGISTRY,
)
SAMPLES = Counter(
    "opeva_resource_samples",
    "Resource samples taken of running containers, by result: ok, error.",
    ["result"],
    registry=REGISTRY,
)
for _result in ("success", "requeue", "error", "engine_unavailable"):
    RECONCILES.labels(_result)
for _op in ("create", "start"):
    CONTAINER_SECONDS.labels(_op)
for _source in ("specs", "engine"):
    WATCH_EVENTS.labels(_source)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the time the block took, whether it raised or not."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - t0)


def export() -> list[dict[str, Any]]:
    """The registry's samples as plain JSON, for the heartbeat: one entry per family, `_created` samples left out."""
    out = []
    for family in REGISTRY.collect():
        out.append(
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "samples": [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")],
            }
        )
    return out


def heartbeat_fields(scheduler: Scheduler, usage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the heartbeat carries besides liveness, for /metrics and the dashboard's capacity and queue view."""
    waiting, per_queue = scheduler.waiting_view()
    reservations = {
        name: {"cpus": r.request.cpus, "memory": r.request.memory, "gpus": list(r.gpu_ids), "queue": r.queue}
        for name, r in scheduler.reservations().items()
    }
    return {
        "host": socket.gethostname(),
        "metrics": export(),
        "waiting": waiting,
        "waitingPerQueue": per_queue,
        "reservations": reservations,
        "usage": usage,
    }
