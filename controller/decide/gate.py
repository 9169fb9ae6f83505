"""Admission and capacity: whether the container a job wants may be asked for now.

Two steps. `may_ask` is the job's own gate (an old container still in the way, a backoff, a missing config file);
when it passes, the rules say which container they want (`Draft.want`). `resolve` then applies the scheduler's
answer to that want, at the very end of the decision, so the scheduler is asked once and only when a container is
really wanted (see `decide/__init__.py`).
"""

from __future__ import annotations

from ..runtime.base import ContainerInfo
from ..scheduler import Admission
from . import conditions
from .core import START_POLL, Create, Decision, Draft, Want

ENGINE_WAIT_POLL = 5.0  # seconds between looks at a job the engine cannot place yet


def may_ask(d: Draft, blocked: bool) -> bool:
    """Whether a container may be asked for: nothing blocks it, no backoff or config file is awaited. When not, says
    why and when to look again."""
    st = d.st
    if blocked:
        return False
    if st.nextAttemptAt and st.nextAttemptAt > d.now:
        d.requeue_in((st.nextAttemptAt - d.now).total_seconds())
        return False
    if d.desired.config_missing:
        if st.reason != "ConfigFileMissing":
            d.event("ConfigFileMissing", d.desired.config_missing, warning=True)
        d.set_phase("Pending", "ConfigFileMissing", d.desired.config_missing)
        d.requeue_in(10)
        return False
    return True


def want(d: Draft, container: str, attempt: int, new_attempt: bool, blocked: bool) -> None:
    if may_ask(d, blocked):
        d.want = Want(container, attempt, new_attempt)


def engine_waits(d: Draft, c: ContainerInfo) -> None:
    """The engine holds a created container until it has room for it (Swarm: "no suitable node"): the job is
    Pending with the engine's reason and words, and looked at again now and then (the engine's events come first)."""
    st = d.st
    reason, message = c.waiting, c.error or f"the engine has no place for {c.name} yet"
    if not (st.phase == "Pending" and st.reason == reason and st.message == message):
        if st.reason != reason:
            d.event("Waiting", f"{reason}: {message}")
        d.set_phase("Pending", reason, message)
    d.condition("Pending", "True", reason, message)
    d.requeue_in(ENGINE_WAIT_POLL)


def resolve(d: Draft, admission: Admission | None) -> Decision:
    """Finish a decision: the wanted container is created if the scheduler admits the job (None: no scheduler)."""
    w = d.want
    if w is not None and _admitted(d, admission):
        st = d.st
        if w.new_attempt:
            st.attempts = w.attempt
            st.containerName = w.container
            st.containerId = None
            st.exitCode = None
            st.startedAt = None
            st.nextAttemptAt = None
            st.stopping = None
            d.set_phase("Pending", "Starting", f"creating container {st.containerName}")
            d.event("Creating", f"attempt {st.attempts}: creating container {st.containerName}")
        d.actions.append(Create(w.container, w.attempt, tuple(st.gpuIds)))
        d.requeue_in(START_POLL)
    if d.st is not None:
        conditions.settle(d)
        _settle_pending(d)
    return d.decision()


def _admitted(d: Draft, a: Admission | None) -> bool:
    """A container is asked for only once the scheduler admits the job; one that never fits fails."""
    st = d.st
    if a is None or a.admitted:
        st.gpuIds = list(a.gpu_ids) if a is not None else []
        return True
    if a.verdict == "Unschedulable":
        d.finish("Failed", "Unschedulable", a.message)
        return False
    message = f"{a.message}; position {a.position} of {a.waiting} in the queue"
    if st.reason != a.reason:
        d.event("Waiting", f"{a.reason}: {message}")
    d.set_phase("Pending", a.reason, message)
    st.queuePosition = a.position
    d.condition("Pending", "True", a.reason, message)
    d.waiting = True
    return False


def _settle_pending(d: Draft) -> None:
    """The `Pending` condition and the queue position say why a job waits, and only while it waits."""
    st = d.st
    if not d.waiting and st.queuePosition is not None:
        st.queuePosition = None
    cond = st.condition("Pending")
    if cond is not None and cond.status == "True" and not (st.phase == "Pending" and st.reason == cond.reason):
        d.condition("Pending", "False", st.reason)
