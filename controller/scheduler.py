"""The local scheduler: which waiting jobs may start now, and why the others wait.

`schedule` is pure: (capacity, reservations of attempts running or being created, pending jobs) -> a `Plan`.
`Scheduler` is the one shared, locked object around it: the reconciler asks it for an `Admission` before it creates
a container, and tells it after each reconcile whether the job still holds a container or still waits. A release
answers with the jobs to look at again, so the next job starts when an attempt ends, not at the next resync.

The queue's rule:
- Order: `priority` (high first), then submission time, then name.
- A job starts when its request fits in the free capacity less what every job ahead of it that waits for resources
  asks for. So a job only ever uses resources nobody ahead of it needs ("strict reservation, conservative backfill"):
  a big job at the head is never delayed by a stream of small ones, and small jobs still backfill whatever is left
  over beyond the head's full request (memory nobody ahead needs, say). There are no runtime estimates, so there is
  no backfill into resources the head is waiting for.
- Limits: a global `maxRunning` and per-queue `maxRunning`; a job held by a count limit waits with `QueueFull` and
  holds back no resources (it could not start anyway; its slot comes with the release of its queue's running job).
- A request bigger than the whole machine is unschedulable: the job fails, it is never left pending forever.
- A job with no `resources` reserves nothing and is limited only by the count limits.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .capacity import Capacity, format_bytes, format_cpus
from .runtime.base import ContainerInfo
from .spec import JobManifest

EPS = 1e-9
LABEL_QUEUE = "opeva.queue"
WAIT_REASONS = ("InsufficientCPU", "InsufficientMemory", "InsufficientGPU", "QueueFull")
POSITION_REFRESH_TOP = 100  # positions are refreshed eagerly for the first N waiting jobs
ENDED_MEMORY = 1000  # container names remembered as dead


# ---- values ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    cpus: float = 0.0
    memory: int = 0
    gpus: int = 0


@dataclass(frozen=True)
class PendingJob:
    name: str
    request: Request = Request()
    priority: int = 0
    submitted_at: datetime | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Reservation:
    job: str
    request: Request = Request()
    gpu_ids: tuple[str, ...] = ()
    queue: str | None = None
    container: str | None = None


@dataclass(frozen=True)
class Waiting:
    """Why one job waits. The message is built only when asked for: a pass over 1,000 jobs formats none."""

    reason: str  # one of WAIT_REASONS
    position: int  # 1-based place among the waiting jobs
    detail: tuple = ()  # what the message is made of

    @property
    def message(self) -> str:
        return _wait_message(self.reason, self.detail)


@dataclass
class Plan:
    admitted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # job -> assigned GPU ids
    waiting: dict[str, Waiting] = field(default_factory=dict)
    unschedulable: dict[str, str] = field(default_factory=dict)  # job -> message

    @property
    def queue_length(self) -> int:
        return len(self.waiting)


@dataclass(frozen=True)
class Admission:
    """The scheduler's answer for one job that wants to start a container."""

    verdict: Literal["Admitted", "Waiting", "Unschedulable"]
    reason: str | None = None
    message: str = ""
    position: int | None = None
    waiting: int = 0  # jobs waiting in all
    gpu_ids: tuple[str, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.verdict == "Admitted"


@dataclass(frozen=True)
class Wake:
    now: tuple[str, ...] = ()  # may start: look at them at once
    later: tuple[str, ...] = ()  # their reason or position changed: refresh their status soon


def pending_job(m: JobManifest, submitted_at: datetime | None) -> PendingJob:
    r = m.spec.resources
    return PendingJob(
        m.name, Request(r.cpus or 0.0, r.memory_bytes or 0, r.gpus or 0), m.spec.priority, submitted_at, m.spec.queue
    )


# ---- the pure pass --------------------------------------------------------------------------------------------
def queue_order(job: PendingJob) -> tuple:
    submitted = job.submitted_at.timestamp() if job.submitted_at is not None else float("inf")
    return (-job.priority, submitted, job.name)


def unschedulable_reason(capacity: Capacity, job: PendingJob) -> str | None:
    """Why the request can never fit this machine, or None."""
    r, problems = job.request, []
    if r.cpus > capacity.cpus + EPS:
        problems.append(f"{format_cpus(r.cpus)} requested, the machine offers {format_cpus(capacity.cpus)}")
    if r.memory > capacity.memory:
        problems.append(
            f"{format_bytes(r.memory)} of memory requested, the machine offers {format_bytes(capacity.memory)}"
        )
    if r.gpus > len(capacity.gpu_ids):
        have = f"{len(capacity.gpu_ids)} ({', '.join(capacity.gpu_ids)})" if capacity.gpu_ids else "none"
        problems.append(f"{r.gpus} GPU{'s' if r.gpus != 1 else ''} requested, the machine has {have}")
    if not problems:
        return None
    return "; ".join(problems) + " (change spec.resources, or the controller's capacity settings and rerun)"


def no_node_reason(capacity: Capacity, job: PendingJob) -> str:
    """Why a request that fits the cluster's sum fits none of its nodes."""
    r = job.request
    asked = [format_cpus(r.cpus)] if r.cpus else []
    asked += [f"{format_bytes(r.memory)} of memory"] if r.memory else []
    asked += [f"{r.gpus} GPU{'s' if r.gpus != 1 else ''}"] if r.gpus else []
    offers = "; ".join(f"{name}: {format_cpus(c)}, {format_bytes(m)}, {g} GPUs" for name, c, m, g in capacity.nodes)
    return (
        f"{', '.join(asked)} requested on one node, and no node offers that ({offers}) "
        "(change spec.resources, or add a bigger node and rerun)"
    )


def schedule(capacity: Capacity, reservations: Iterable[Reservation], pending: Iterable[PendingJob]) -> Plan:
    """Decide which pending jobs start now; see the module docstring for the rule."""
    reservations = list(reservations)
    free_cpu = capacity.cpus - sum(r.request.cpus for r in reservations)
    free_mem = capacity.memory - sum(r.request.memory for r in reservations)
    taken = {g for r in reservations for g in r.gpu_ids}
    free_gpus = [g for g in capacity.gpu_ids if g not in taken]
    running = len(reservations)
    per_queue = Counter(r.queue for r in reservations if r.queue)
    max_running, limits = capacity.max_running, capacity.queues
    bound = capacity.bound  # what a job must fit at all (a cluster's every node)
    max_cpu, max_mem, max_gpu = bound.cpus + EPS, bound.memory, len(bound.gpu_ids)
    held_cpu = held_mem = held_gpu = 0.0  # asked for by jobs ahead that wait for resources
    plan = Plan()
    admitted, waiting = plan.admitted, plan.waiting
    for job in sorted(pending, key=queue_order):
        r = job.request
        cpus, mem, gpus = r.cpus, r.memory, r.gpus
        if cpus > max_cpu or mem > max_mem or gpus > max_gpu:
            plan.unschedulable[job.name] = unschedulable_reason(bound, job) or "does not fit the machine"
            continue
        if bound.nodes and not any(c + EPS >= cpus and m >= mem and g >= gpus for _, c, m, g in bound.nodes):
            plan.unschedulable[job.name] = no_node_reason(bound, job)
            continue
        queue = job.queue
        if max_running is not None and running >= max_running:
            wait = Waiting("QueueFull", len(waiting) + 1, ("max", running, max_running))
        elif queue is not None and queue in limits and per_queue[queue] >= limits[queue]:
            wait = Waiting("QueueFull", len(waiting) + 1, ("queue", queue, per_queue[queue], limits[queue]))
        else:
            avail_cpu, avail_mem, avail_gpu = free_cpu - held_cpu, free_mem - held_mem, len(free_gpus) - held_gpu
            short_cpu = cpus > EPS and cpus > avail_cpu + EPS
            short_mem = mem > 0 and mem > avail_mem
            short_gpu = gpus > 0 and gpus > avail_gpu
            if not (short_cpu or short_mem or short_gpu):
                if gpus:
                    admitted[job.name] = tuple(free_gpus[:gpus])
                    del free_gpus[:gpus]
                else:
                    admitted[job.name] = ()
                free_cpu -= cpus
                free_mem -= mem
                running += 1
                if queue:
                    per_queue[queue] += 1
                continue
            reason = "InsufficientCPU" if short_cpu else "InsufficientMemory" if short_mem else "InsufficientGPU"
            wait = Waiting(
                reason,
                len(waiting) + 1,
                (
                    "short",
                    short_cpu and (cpus, avail_cpu, held_cpu),
                    short_mem and (mem, avail_mem, held_mem),
                    short_gpu and (gpus, avail_gpu, held_gpu),
                ),
            )
            held_cpu += cpus
            held_mem += mem
            held_gpu += gpus
        waiting[job.name] = wait
    return plan


def _wait_message(reason: str, detail: tuple) -> str:
    kind = detail[0] if detail else None
    if kind == "max":
        return f"{detail[1]} of maxRunning {detail[2]} jobs are running"
    if kind == "queue":
        return f"queue {detail[1]!r} runs {detail[2]} of its maxRunning {detail[3]}"
    if kind != "short":
        return reason
    parts, ahead = [], False
    for i, short in enumerate(detail[1:]):
        if not short:
            continue
        need, avail, held = short
        ahead = ahead or held > 0
        avail = max(avail, 0)
        if i == 0:
            parts.append(f"{format_cpus(need)} requested, {avail:g} free")
        elif i == 1:
            parts.append(f"{format_bytes(need)} of memory requested, {format_bytes(avail)} free")
        else:
            parts.append(f"{need} GPU{'s' if need != 1 else ''} requested, {int(avail)} free")
    return "; ".join(parts) + (" (after what jobs ahead of it are waiting for)" if ahead else "")


# ---- the shared state -----------------------------------------------------------------------------------------
def reservation_from_container(c: ContainerInfo) -> Reservation:
    """What a live container holds, read back from the engine (NanoCpus, Memory, DeviceRequests, queue label)."""
    return Reservation(
        job=c.job,
        request=Request(cpus=c.cpus or 0.0, memory=c.memory or 0, gpus=len(c.gpu_ids)),
        gpu_ids=c.gpu_ids,
        queue=c.labels.get(LABEL_QUEUE) or None,
        container=c.name,
    )


class Scheduler:
    """Reservations and the waiting queue of one controller; every method is atomic under one lock."""

    def __init__(self, capacity: Capacity):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._reserved: dict[str, Reservation] = {}
        self._pending: dict[str, PendingJob] = {}
        self._reported: dict[str, tuple[str, int]] = {}  # what each waiting job's status last said
        self._plan: Plan | None = None
        self._changed = False  # since the last wake-up was computed
        self._ended: dict[str, None] = {}  # containers the engine said died, newest last (a cache may lag behind)

    # -- reading --
    def plan(self) -> Plan:
        with self._lock:
            return self._plan_locked()

    def _plan_locked(self) -> Plan:
        if self._plan is None:
            self._plan = schedule(self.capacity, self._reserved.values(), self._pending.values())
        return self._plan

    def _touch(self) -> None:
        self._plan = None
        self._changed = True

    def reservations(self) -> dict[str, Reservation]:
        with self._lock:
            return dict(self._reserved)

    def pending(self) -> dict[str, PendingJob]:
        with self._lock:
            return dict(self._pending)

    def summary(self) -> dict:
        with self._lock:
            used = list(self._reserved.values())
            plan = self._plan_locked()
            return {
                "capacity": self.capacity.describe(),
                "used": {
                    "cpus": sum(r.request.cpus for r in used),
                    "memory": sum(r.request.memory for r in used),
                    "gpus": sorted(g for r in used for g in r.gpu_ids),
                    "running": len(used),
                },
                "waiting": plan.queue_length,
            }

    def waiting_view(self, limit: int = 200) -> tuple[list[dict], dict[str, int]]:
        """The first `limit` waiting jobs in queue order with why each waits, and how many wait in each queue."""
        with self._lock:
            plan = self._plan_locked()
            per_queue: dict[str, int] = {}
            for name in plan.waiting:
                queue = self._pending[name].queue if name in self._pending else None
                per_queue[queue or ""] = per_queue.get(queue or "", 0) + 1
            first = heapq.nsmallest(limit, plan.waiting.items(), key=lambda item: item[1].position)
            rows = [
                {
                    "job": name,
                    "position": w.position,
                    "reason": w.reason,
                    "message": w.message,
                    "queue": self._pending[name].queue if name in self._pending else None,
                }
                for name, w in first
            ]
            return rows, per_queue

    # -- changing --
    def admit(self, job: PendingJob, container: str | None = None) -> Admission:
        """A job wants to start a container: admit it (taking the reservation), or say why it waits or never fits.

        A job holds at most one reservation: one it holds already (a create that failed half-way and is retried)
        is kept with the same GPUs, unless it belonged to another container, which the new attempt replaces.
        """
        with self._lock:
            held = self._reserved.get(job.name)
            if held is not None and (container is None or held.container in (None, container)):
                self._pending.pop(job.name, None)
                return Admission("Admitted", gpu_ids=held.gpu_ids)
            if held is not None:
                del self._reserved[job.name]
                self._touch()
            if self._pending.get(job.name) != job:
                self._pending[job.name] = job
                self._touch()
            plan = self._plan_locked()
            if job.name in plan.admitted:
                gpus = plan.admitted[job.name]
                del self._pending[job.name]
                self._reported.pop(job.name, None)
                self._reserved[job.name] = Reservation(job.name, job.request, gpus, job.queue, container)
                self._ended.pop(container or "", None)  # a name created again is alive again
                self._touch()
                return Admission("Admitted", gpu_ids=gpus)
            if job.name in plan.unschedulable:
                del self._pending[job.name]
                self._reported.pop(job.name, None)
                self._touch()
                return Admission("Unschedulable", "Unschedulable", plan.unschedulable[job.name])
            w = plan.waiting[job.name]
            self._reported[job.name] = (w.reason, w.position)
            return Admission("Waiting", w.reason, w.message, w.position, plan.queue_length)

    def settle(self, job: str, live: ContainerInfo | None, waiting: bool, creating: bool = False) -> Wake:
        """After a decision: the job keeps a reservation only while a container of it lives or is being created (one
        adopted without a reservation gets one rebuilt from the container), and keeps its place only while it waits."""
        with self._lock:
            if not waiting and job in self._pending:
                del self._pending[job]
                self._reported.pop(job, None)
                self._touch()
            held = self._reserved.get(job)
            if live is None and held is not None and not creating:
                del self._reserved[job]
                self._touch()
            elif (
                live is not None
                and live.name not in self._ended
                and (held is None or held.container not in (None, live.name))
            ):
                self._reserved[job] = reservation_from_container(live)
                self._touch()
            return self._wake_locked()

    def ended(self, container: str) -> Wake:
        """The engine says a container died: its reservation goes now, before its job is looked at again."""
        with self._lock:
            self._ended[container] = None
            if len(self._ended) > ENDED_MEMORY:
                del self._ended[next(iter(self._ended))]
            job = next((j for j, r in self._reserved.items() if r.container == container), None)
            if job is not None:
                del self._reserved[job]
                self._touch()
            return self._wake_locked()

    def release(self, job: str) -> Wake:
        """The job's container will not exist (its create failed): give back what it held."""
        with self._lock:
            if self._reserved.pop(job, None) is not None:
                self._touch()
            return self._wake_locked()

    def rebuild(self, containers: Iterable[ContainerInfo]) -> None:
        """After a restart: every live container holds what Docker says it was given, before anything starts."""
        with self._lock:
            for c in containers:
                if c.job and (c.running or c.state == "created"):
                    self._reserved[c.job] = reservation_from_container(c)
            self._touch()

    def set_capacity(self, capacity: Capacity) -> Wake:
        """The cluster changed (a node joined, left, was drained): jobs that fit now are woken."""
        with self._lock:
            if capacity != self.capacity:
                self.capacity = capacity
                self._touch()
            return self._wake_locked()

    def enqueue(self, jobs: Iterable[PendingJob]) -> None:
        """After a restart: jobs recorded as waiting take their places before any of them is looked at."""
        with self._lock:
            for job in jobs:
                if job.name not in self._reserved:
                    self._pending[job.name] = job
            self._touch()

    def _wake_locked(self) -> Wake:
        if not self._changed:
            return Wake()
        self._changed = False
        plan = self._plan_locked()
        now = tuple(j for j in plan.admitted) + tuple(plan.unschedulable)
        later = tuple(
            name
            for name, w in plan.waiting.items()
            if w.position <= POSITION_REFRESH_TOP and self._reported.get(name) != (w.reason, w.position)
        )
        return Wake(now, later)
