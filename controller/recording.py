"""Record a decision: events appended, status written (atomically, before any action), job_info kept in step.

A decision's status is the job's memory between restarts, so it is on disk before the engine is asked to do what
the decision says. Finished attempts are announced to the hooks only once their record is durable.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from .containerspec import phase_info, phase_info_changed
from .decide import Decision
from .faults import crash_point
from .hooks import AttemptHooks, call_hook
from .status import JobStatus, utcnow
from .statuscache import StatusCache
from .store import DataStore

log = structlog.get_logger("opeva.reconcile")


class Recorder:
    def __init__(self, store: DataStore, statuses: StatusCache, hooks: AttemptHooks):
        self.store = store
        self.statuses = statuses
        self.hooks = hooks

    def save(self, old: JobStatus | None, decision: Decision) -> None:
        new = decision.status
        if new is None:
            return
        if old is not None:
            new.updatedAt = old.updatedAt
            if new == old and not decision.events:
                return
        new.updatedAt = utcnow()
        if decision.events:
            self.store.ensure_job_dirs(new.name)
            self.store.append_events(new.name, decision.events)
            for e in decision.events:
                log.info(e.reason, job=new.name, attempt=e.attempt, message=e.message, type=e.type)
        if new != old:
            if old is not None and len(new.history) > len(old.history):
                crash_point("before_record")
            self.store.write_status(new)
            self.statuses.put(new, old)
            if phase_info_changed(old, new):
                self.store.write_job_info(new.name, phase_info(new))
            for record in new.history[len(old.history) if old else 0 :]:
                call_hook(self.hooks.after_finish, new, record)

    def restore_views(self, statuses: Iterable[JobStatus]) -> None:
        """At start, bring each job's copies (its status.json and job_info.json) in step with its record.

        A crash between writing a record and its copies leaves them behind; only a change of status rewrites them,
        and a job that just finished will not change again."""
        restored = 0
        for st in statuses:
            restored += self.store.restore_status_copy(st)
            self.store.write_job_info(st.name, phase_info(st))  # writes only what differs
        if restored:
            log.info("status_copies_restored", jobs=restored)
