"""Between one job's reconcile and the shared scheduler: admission before a create, shares settled after a decision,
and the other jobs woken when capacity frees up."""

from __future__ import annotations

from collections.abc import Callable

from .capacity import Capacity
from .containercache import ContainerCache
from .decide import Create, Decision, Desired, Observed, Proposal, Remove
from .scheduler import WAIT_REASONS, Admission, Scheduler, Wake, pending_job
from .specsource import SpecSource
from .status import JobStatus

POSITION_REFRESH_DELAY = 1.0  # seconds: waiting jobs whose place moved rewrite their status, coalesced

EnqueueAfter = Callable[[str, float], None]


class CapacityGlue:
    def __init__(self, scheduler: Scheduler, cache: ContainerCache, specs: SpecSource, enqueue_after: EnqueueAfter):
        self.scheduler = scheduler
        self.cache = cache
        self.specs = specs
        self.enqueue_after = enqueue_after

    def admit(self, desired: Desired, proposal: Proposal) -> Admission | None:
        """The scheduler's answer, asked once and only when the job wants a container (see controller/decide)."""
        want, status = proposal.want, proposal.status
        if want is None or desired.manifest is None or status is None:
            return None
        return self.scheduler.admit(pending_job(desired.manifest, status.submittedAt), want.container)

    def settle(self, name: str, observed: Observed, admission: Admission | None, decision: Decision) -> None:
        """Before acting: an ended attempt gives back its share now, and the jobs that may start are woken."""
        creating = any(isinstance(a, Create) for a in decision.actions)
        removing = {a.container for a in decision.actions if isinstance(a, Remove)}  # a lost node's task, say
        live = next(
            (c for c in observed.containers if (c.running or c.state == "created") and c.name not in removing), None
        )
        waiting = admission is not None and admission.verdict == "Waiting" and not creating
        self._wake(name, self.scheduler.settle(name, live, waiting, creating))

    def release(self, name: str) -> None:
        """The job's attempt never started: its share is free."""
        self._wake(name, self.scheduler.release(name))

    def container_ended(self, container: str) -> None:
        """The engine says a container died: what it held is free at once (its job's reconcile confirms it)."""
        self._wake("", self.scheduler.ended(container))

    def resize(self, capacity: Capacity) -> None:
        """The cluster's capacity changed: the jobs that fit now are woken."""
        self._wake("", self.scheduler.set_capacity(capacity))

    def prime(self, statuses: dict[str, JobStatus]) -> None:
        """At start, before any job is looked at: reservations rebuilt from the live containers (so a restart never
        over-commits), and the jobs recorded as waiting back in their places (so order survives a restart)."""
        self.scheduler.rebuild(c for job in self.cache.jobs() for c in self.cache.for_job(job))
        waiting = []
        for name, st in statuses.items():
            desired = self.specs.desired(name)
            if st.phase == "Pending" and st.reason in WAIT_REASONS and desired.manifest is not None:
                waiting.append(pending_job(desired.manifest, st.submittedAt))
        self.scheduler.enqueue(waiting)

    def _wake(self, name: str, wake: Wake) -> None:
        for other in wake.now:
            if other != name:
                self.enqueue_after(other, 0)
        for other in wake.later:
            if other != name:
                self.enqueue_after(other, POSITION_REFRESH_DELAY)
