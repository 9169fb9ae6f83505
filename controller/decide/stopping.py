"""Stop and suspend: containers that must go (spec deleted, suspended, superseded, leftovers) and what the phase says.

A stop we ask for is recorded as intent (`status.stopping`) before it is sent, so the container's exit is attributed
to us, not to the job or the machine. While the container runs out its grace period the job keeps its phase
(Running), with reason `Stopping` and the condition `Terminating`; it is `Stopped` only once the container is gone.
"""

from __future__ import annotations

from ..runtime.base import ContainerInfo
from ..status import ACTIVE_PHASES, StopIntent
from .core import START_POLL, Draft, is_live

WHY = {
    "SpecDeleted": "the spec file was removed",
    "Suspended": "spec.suspend is true",
    "ProgressStalled": "progress stalled",
    "DeadlineExceeded": "activeDeadlineSeconds passed",
    "NodeDrained": "its node was drained",
}


def request(d: Draft, c: ContainerInfo, reason: str, overrule: bool = False) -> None:
    """Record the intent to stop the current attempt's container, and send the stop. An earlier intent for the same
    container keeps its reason unless this one overrules it (a deadline outranks a stalled-progress stop)."""
    st = d.st
    if overrule or not (st.stopping and st.stopping.containerName == c.name):
        st.stopping = StopIntent(containerName=c.name, reason=reason, requestedAt=d.now)
    d.stop(c, reason)
    d.requeue_in(START_POLL)
    say_stopping(d, c, st.stopping.reason if st.stopping else reason)


def say_stopping(d: Draft, c: ContainerInfo, reason: str) -> None:
    """The phase stays (the container still runs); the reason says it is being stopped, and why."""
    st = d.st
    if st.phase in ACTIVE_PHASES:
        d.set_phase(st.phase, "Stopping", f"stopping container {c.name}: {WHY.get(reason, reason)}")


def spec_deleted(d: Draft) -> None:
    """Every container of the job stops; once none runs and the stopped attempt's exit is recorded, the record says
    Stopped (SpecDeleted) and is kept."""
    st = d.st
    live = [c for c in d.observed.containers if is_live(c)]
    if live and st.phase in ACTIVE_PHASES and st.reason != "Stopping":
        d.event("Stopping", f"spec file removed; stopping {', '.join(c.name for c in live)}")
    for c in d.observed.containers:
        if is_live(c):
            if c.name == st.containerName:
                request(d, c, "SpecDeleted")
            else:
                d.stop(c, "SpecDeleted")
                d.requeue_in(START_POLL)
                say_stopping(d, c, "SpecDeleted")
        elif c.exited:
            d.record_unseen_exit(c, "SpecDeleted")
            d.remove_when_drained(c)
    forget_done_stop(d)
    if (live or st.stopping is not None) and st.phase in ACTIVE_PHASES:
        return  # Stopped once the container is gone and its exit recorded
    if st.phase in ACTIVE_PHASES or (st.phase == "Stopped" and st.reason != "SpecDeleted"):
        d.pause_clock()
        d.set_phase("Stopped", "SpecDeleted", "the spec file was removed")
        if st.startedAt:
            st.finishedAt = st.finishedAt or d.now
        d.condition("Running", "False", "SpecDeleted")
        d.event("SpecDeleted", "spec file removed; job stopped, record and artifacts kept")


def forget_done_stop(d: Draft) -> None:
    """A stop intent is kept until the container's exit is recorded (so the exit is never taken for the job's own),
    or until the container is gone altogether."""
    st = d.st
    s = st.stopping
    if s is None:
        return
    if st.recorded(s.containerName) or all(c.name != s.containerName for c in d.observed.containers):
        st.stopping = None


def settle_stale(d: Draft, key: str) -> bool:
    """Stop and clear containers of earlier runs; True while any still blocks a new container."""
    blocked = False
    earlier = d.st.earlier_run_containers()
    for c in d.observed.containers:
        if c.run == key and c.id not in earlier:
            continue
        if is_live(c):
            d.stop(c, "Superseded")
            blocked = True
            d.requeue_in(START_POLL)
        elif c.exited:
            d.record_unseen_exit(c, "Superseded")
            if c.name not in d.observed.logs_complete:
                blocked = True  # its log must be drained before the next attempt appends to the same file
            d.remove_when_drained(c)
    return blocked


def finished_run(d: Draft, key: str) -> None:
    """A finished run never runs again; only leftovers are tidied."""
    earlier = d.st.earlier_run_containers()
    for c in d.observed.containers:
        if c.run != key or c.id in earlier:
            continue
        if is_live(c):
            d.stop(c, d.st.reason or "Finished")
            d.requeue_in(START_POLL)
        elif c.exited:
            d.record_unseen_exit(c, d.st.reason)
            d.remove_when_drained(c)


def suspend(d: Draft, c: ContainerInfo | None) -> None:
    """spec.suspend: the attempt's container is stopped; with none left the job is Stopped (Suspended)."""
    st = d.st
    d.pause_clock()
    if c is not None and is_live(c):
        if not (st.stopping and st.stopping.containerName == c.name):
            d.event("Stopping", f"suspend requested; stopping {c.name}")
        request(d, c, "Suspended")
        return
    if not (st.phase == "Stopped" and st.reason == "Suspended"):
        mark_suspended(d)
        d.event("Suspended", "job suspended" + (" before it started" if not st.startedAt else ""))


def mark_suspended(d: Draft) -> None:
    d.pause_clock()
    d.set_phase("Stopped", "Suspended", "spec.suspend is true")
    d.condition("Suspended", "True", "Suspended")
    d.condition("Running", "False", "Suspended")


def resume(d: Draft) -> None:
    """A Stopped job whose spec is back (or whose suspend was cleared) runs again as a new attempt."""
    st = d.st
    if st.condition("Suspended"):
        d.condition("Suspended", "False", "Resumed")
    why = "suspend cleared" if st.reason == "Suspended" else "spec file restored"
    d.set_phase("Pending", "Resumed")
    d.event("Resumed", f"{why}; the job runs again as a new attempt")


def requested(d: Draft, c: ContainerInfo) -> bool:
    """A stop of this container was asked for: (re)send it until the container is gone."""
    st = d.st
    if st.stopping and st.stopping.containerName == c.name:
        d.stop(c, st.stopping.reason)
        d.requeue_in(START_POLL)
        say_stopping(d, c, st.stopping.reason)
        return True
    return False
