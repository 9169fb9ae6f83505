"""`/metrics`: job-state metrics derived from the records, and the controller's own metrics from its heartbeat.

The API and the controller may be separate processes sharing only the data folder (docker-compose.split.yml), so
everything here is read from files, per scrape:
- job state, in the manner of kube-state-metrics, from the job index (job_track.json, parsed once per change; the
  aggregates are computed once per parsed version, so a scrape over 10,000 jobs costs a dict walk);
- capacity, reservations, queue lengths and resource use from the heartbeat (the controller's live view);
- the controller's counters and histograms (controller/metrics.py), which the controller writes into every heartbeat;
  they are exported only while the heartbeat is fresh, so a dead controller's last values do not look live;
- the MLflow outbox, from its folder.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.status import epoch
from controller.store import DataStore

from .heartbeat import Heartbeat, read_heartbeat
from .index import PHASES, JobIndex, Snapshot

_NAME = re.compile(r"^opeva_[a-zA-Z0-9_]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Aggregates:
    """Counts over one index snapshot."""

    def __init__(self, snap: Snapshot):
        self.by_phase_reason: dict[tuple[str, str], int] = {(p, ""): 0 for p in PHASES}
        self.outcomes: dict[str, int] = {}
        self.started = 0
        self.pending_positions = 0
        for row in snap.entries:
            key = (row["phase"] or "Unknown", row["reason"] or "")
            self.by_phase_reason[key] = self.by_phase_reason.get(key, 0) + 1
            for outcome, n in row["outcomes"].items():
                self.started += n
                if outcome != "Running":
                    self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        pending = [snap.entries[i] for i in snap.by_phase.get("Pending", ())]
        self.pending_positions = sum(1 for row in pending if row["queue_position"] is not None)
        # the controller writes every time in one format (UTC, `Z`), so the earliest string is the earliest time
        submitted = [row["submitted_at"] for row in pending if row["submitted_at"]]
        self.oldest_pending: float | None = epoch(min(submitted)) if submitted else None


class OpevaCollector(Collector):
    def __init__(self, store: DataStore, index: JobIndex):
        self.store = store
        self.index = index
        self._lock = threading.Lock()
        self._cached: tuple[Snapshot, _Aggregates] | None = None

    def _aggregates(self) -> _Aggregates:
        snap = self.index.snapshot_nowait()
        with self._lock:
            if self._cached is None or self._cached[0] is not snap:
                self._cached = (snap, _Aggregates(snap))
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        beat = read_heartbeat(self.store)
        yield from self._job_state(self._aggregates(), beat)
        yield from self._capacity(beat)
        yield from self._usage(beat)
        yield from self._controller(beat)
        yield from self._outbox()

    # ---- job state --------------------------------------------------------------------------------------------
    def _job_state(self, agg: _Aggregates, beat: Heartbeat) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("opeva_jobs", "Jobs by phase and reason.", labels=["phase", "reason"])
        for (phase, reason), n in sorted(agg.by_phase_reason.items()):
            jobs.add_metric([phase, reason], n)
        yield jobs
        started = Metric("opeva_job_attempts_started", "Attempts started, over every job on record.", "counter")
        started.add_sample("opeva_job_attempts_started_total", {}, agg.started)
        yield started
        finished = Metric(
            "opeva_job_attempts_finished", "Attempts finished, by outcome, over every job on record.", "counter"
        )
        for outcome, n in sorted(agg.outcomes.items()):
            finished.add_sample("opeva_job_attempts_finished_total", {"outcome": outcome}, n)
        yield finished
        queue = GaugeMetricFamily("opeva_queue_length", "Jobs waiting for capacity, per queue.", labels=["queue"])
        per_queue = beat.section("waitingPerQueue", dict)
        if beat.alive:
            for name, n in sorted(per_queue.items()):
                if _number(n) is not None:
                    queue.add_metric([str(name)], n)
        else:
            queue.add_metric([""], agg.pending_positions)
        yield queue
        oldest = GaugeMetricFamily(
            "opeva_oldest_pending_job_age_seconds", "Age of the oldest Pending job (0 when none waits)."
        )
        oldest.add_metric([], 0.0 if agg.oldest_pending is None else max(0.0, time.time() - agg.oldest_pending))
        yield oldest

    def _capacity(self, beat: Heartbeat) -> Iterator[Metric]:
        summary = beat.section("capacity", dict)
        capacity = summary.get("capacity") if isinstance(summary.get("capacity"), dict) else {}
        used = summary.get("used") if isinstance(summary.get("used"), dict) else {}
        total = GaugeMetricFamily(
            "opeva_capacity", "What the machine offers to jobs, by resource (cpus in cores).", labels=["resource"]
        )
        reserved = GaugeMetricFamily(
            "opeva_reserved", "What running jobs have reserved, by resource (cpus in cores).", labels=["resource"]
        )
        gpu_ids = capacity.get("gpus")
        values = {
            "cpus": (_number(capacity.get("cpus")), _number(used.get("cpus"))),
            "memory_bytes": (_number(capacity.get("memory")), _number(used.get("memory"))),
            "gpus": (
                float(len(gpu_ids)) if isinstance(gpu_ids, list) else _number(gpu_ids),
                float(len(used["gpus"])) if isinstance(used.get("gpus"), list) else None,
            ),
        }
        for resource, (offer, taken) in values.items():
            if offer is not None:
                total.add_metric([resource], offer)
            if taken is not None:
                reserved.add_metric([resource], taken)
        yield total
        yield reserved
        per_job = GaugeMetricFamily(
            "opeva_job_reserved",
            "Resources a running job has reserved (cpus in cores; one series per running job).",
            labels=["job", "resource"],
        )
        for job, r in sorted(beat.section("reservations", dict).items()):
            if not isinstance(r, dict):
                continue
            for resource, key in (("cpus", "cpus"), ("memory_bytes", "memory")):
                if _number(r.get(key)) is not None:
                    per_job.add_metric([str(job), resource], r[key])
            if isinstance(r.get("gpus"), list):
                per_job.add_metric([str(job), "gpus"], len(r["gpus"]))
        yield per_job

    def _usage(self, beat: Heartbeat) -> Iterator[Metric]:
        families = {
            "cpu": GaugeMetricFamily("opeva_job_cpu_usage_cores", "CPU a running job uses, in cores.", labels=["job"]),
            "memory": GaugeMetricFamily(
                "opeva_job_memory_usage_bytes", "Memory a running job uses (page cache excluded).", labels=["job"]
            ),
            "gpu": GaugeMetricFamily(
                "opeva_job_gpu_utilization_ratio", "Mean utilization of the GPUs a running job holds.", labels=["job"]
            ),
            "gpuMemory": GaugeMetricFamily(
                "opeva_job_gpu_memory_usage_bytes", "GPU memory a running job uses.", labels=["job"]
            ),
        }
        for job, sample in sorted(beat.section("usage", dict).items()):
            if not isinstance(sample, dict):
                continue
            for key, family in families.items():
                value = _number(sample.get(key))
                if value is not None:
                    family.add_metric([str(job)], value / 100.0 if key == "gpu" else value)
        yield from families.values()

    # ---- the controller ---------------------------------------------------------------------------------------
    def _controller(self, beat: Heartbeat) -> Iterator[Metric]:
        up = GaugeMetricFamily("opeva_controller_up", "1 while the controller's heartbeat is fresh (under 30 s).")
        up.add_metric([], 1.0 if beat.alive else 0.0)
        yield up
        if beat.age is not None:
            age = GaugeMetricFamily("opeva_controller_heartbeat_age_seconds", "Age of the controller's heartbeat.")
            age.add_metric([], beat.age)
            yield age
        docker = GaugeMetricFamily(
            "opeva_docker_reachable", "1 if the controller reaches the Docker engine (absent without a controller)."
        )
        if beat.alive and isinstance(beat.data.get("docker"), bool):
            docker.add_metric([], 1.0 if beat.data["docker"] else 0.0)
        yield docker
        for family in beat.section("metrics", list):
            metric = _family(family)
            if metric is not None:
                yield metric

    def _outbox(self) -> Iterator[Metric]:
        attempts = GaugeMetricFamily("opeva_mlflow_outbox_attempts", "Attempts that still owe MLflow something.")
        ops = GaugeMetricFamily("opeva_mlflow_outbox_operations", "Operations queued for MLflow, not yet sent.")
        oldest = GaugeMetricFamily(
            "opeva_mlflow_outbox_oldest_operation_age_seconds", "Age of the oldest unsent MLflow operation (0 if none)."
        )
        root = self.store.state_dir / "mlflow-outbox"
        n_entries = n_ops = 0
        first: float | None = None
        try:
            entries = [e for e in os.scandir(root) if e.is_dir()]
        except OSError:
            entries = []
        for entry in entries:
            n_entries += 1
            try:
                with os.scandir(os.path.join(entry.path, "ops")) as it:
                    for op in it:
                        if op.name.endswith(".json") and op.name[:-5].isdigit():
                            n_ops += 1
                            mtime = op.stat().st_mtime
                            first = mtime if first is None else min(first, mtime)
            except OSError:
                continue
        attempts.add_metric([], n_entries)
        ops.add_metric([], n_ops)
        oldest.add_metric([], 0.0 if first is None else max(0.0, time.time() - first))
        yield attempts
        yield ops
        yield oldest


def _family(raw: Any) -> Metric | None:
    """A metric family the controller exported into its heartbeat, checked before it is re-exported."""
    if not isinstance(raw, dict):
        return None
    name, typ, doc, samples = raw.get("name"), raw.get("type"), raw.get("help"), raw.get("samples")
    if not (isinstance(name, str) and _NAME.match(name) and typ in _TYPES and isinstance(samples, list)):
        return None
    metric = Metric(name, doc if isinstance(doc, str) else "", typ)
    for sample in samples:
        if not (isinstance(sample, list) and len(sample) == 3):
            continue
        sname, labels, value = sample
        if not (isinstance(sname, str) and sname.startswith(name) and isinstance(labels, dict)):
            continue
        if _number(value) is None or not all(isinstance(k, str) and _LABEL.match(k) for k in labels):
            continue
        metric.add_sample(sname, {k: str(v) for k, v in labels.items()}, float(value))
    return metric


def build_registry(store: DataStore, index: JobIndex) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OpevaCollector(store, index))
    return registry
