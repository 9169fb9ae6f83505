"""Reconcile one job: observe, decide, record, act. The thin layer around the pure `decide`.

`reconcile(name)` is controller-runtime's `Reconcile(request) -> Result`: the key goes in, "look again in N seconds"
comes out. Intent is written before acting: the new status (say, "attempt 3 is being created as container X") is on
disk before Docker is asked to create X, so a crash between the two is resolved by the next reconcile.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from .actions import Actions
from .capacityglue import CapacityGlue
from .containercache import ContainerCache
from .decide import Facts, Observed, propose
from .faults import crash_point
from .hostfacts import HostFacts
from .logcapture import LogCapture
from .nodes import NodeWatch
from .recording import Recorder
from .runtime.base import Runtime
from .specsource import SpecSource
from .status import ACTIVE_PHASES, JobStatus, utcnow
from .statuscache import StatusCache
from .store import DataStore


class Reconciler:
    def __init__(
        self,
        *,
        store: DataStore,
        runtime: Runtime,
        specs: SpecSource,
        cache: ContainerCache,
        logs: LogCapture,
        statuses: StatusCache,
        host: HostFacts,
        policy: Facts,
        recorder: Recorder,
        actions: Actions,
        capacity: CapacityGlue | None = None,
        nodes: NodeWatch | None = None,
    ):
        """`policy` carries the facts that do not change while running (instance, retention); `host` and `nodes` the
        rest."""
        self.store = store
        self.runtime = runtime
        self.specs = specs
        self.cache = cache
        self.logs = logs
        self.statuses = statuses
        self.host = host
        self.policy = policy
        self.recorder = recorder
        self.actions = actions
        self.capacity = capacity
        self.nodes = nodes

    def facts(self) -> Facts:
        now = utcnow()
        return dataclasses.replace(
            self.policy,
            now=now,
            boot_time=self.host.boot_time,
            daemon_started_at=self.host.daemon_started_at,
            outages=self.host.outages_until(now),
            lost_nodes=self.nodes.lost() if self.nodes is not None else {},
            drained_nodes=self.nodes.drained() if self.nodes is not None else {},
        )

    def observe(self, name: str, recorded: JobStatus | None) -> Observed:
        containers = self.cache.for_job(name)
        active = recorded is not None and recorded.phase in ACTIVE_PHASES
        current = recorded.containerName if recorded is not None and active and recorded.containerId else None
        if current and current not in {c.name for c in containers}:
            # before concluding the attempt's container vanished, ask the engine rather than a cache that may lag
            info = self.runtime.inspect(current)
            if info is not None:
                self.cache.update(info)
                containers = self.cache.for_job(name)
        # an attempt in the history was recorded only once its log was complete: never capture it again
        done = {h.containerName for h in recorded.history} if recorded else set()
        for c in containers:
            if c.name not in done:
                self.logs.ensure(c)
        complete = frozenset(c.name for c in containers if c.exited and (c.name in done or self.logs.is_complete(c)))
        return Observed(
            containers=tuple(containers),
            logs_complete=complete,
            progress_at=_mtime(self.store.progress_path(name)) if active else None,
        )

    def reconcile(self, name: str) -> float | None:
        """One look at one job; the delay after which it wants another look, or None when it is settled."""
        desired = self.specs.desired(name)
        if not desired.exists and self.store.is_deleted(name):
            desired = dataclasses.replace(desired, deleted=True)
        recorded = self.statuses.get(name)
        if recorded is None and not desired.exists and not self.cache.for_job(name):
            return None
        observed = self.observe(name, recorded)
        proposal = propose(desired, observed, recorded, self.facts())
        admission = self.capacity.admit(desired, proposal) if self.capacity is not None else None
        decision = proposal.admit(admission)
        self.recorder.save(recorded, decision)
        if self.capacity is not None:
            self.capacity.settle(name, observed, admission, decision)
        requeue = decision.requeue_after
        if not decision.actions:
            if requeue is None and not observed.containers:
                self.statuses.settle(name, self.specs.stamp(name))  # kept small until something changes
            return requeue
        crash_point("after_intent")
        after = self.actions.perform(name, desired, decision.status, decision.actions)
        if after is None:
            return requeue
        return after if requeue is None else min(requeue, after)


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
