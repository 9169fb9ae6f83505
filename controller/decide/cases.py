"""The three cases of the desired state (a valid spec, an invalid file, no file), each an ordered walk through the
rule families. Everything here only orders; the rules are in the family modules."""

from __future__ import annotations

from ..spec import JobManifest
from . import attempts, deadlines, gate, interruptions, newrun, retention, stopping
from .core import LOG_DRAIN_POLL, START_POLL, Draft, Start, container_name, is_live, run_key


def spec_deleted(d: Draft) -> None:
    if d.st is None and not d.observed.containers:
        return
    d.ensure_status("Stopped", "SpecDeleted")
    stopping.spec_deleted(d)
    if not d.observed.containers:
        retention.collect_when_due(d)


def invalid_spec(d: Draft, error: str) -> None:
    """A broken file never stops a running container (a typo must not kill a three-day training).

    An attempt that exits meanwhile is not recorded: its container waits until the file is valid again, when the
    exit is judged by the job's own policy (or until the file is deleted).
    """
    st = d.ensure_status("Failed", "InvalidSpec")
    running = [c for c in d.observed.containers if c.running]
    for c in d.observed.containers:
        if c.exited and st.recorded(c.name):
            d.remove_when_drained(c)
    cond = st.condition("SpecValid")
    if cond is None or cond.status != "False" or cond.message != error:
        d.event("InvalidSpec", error, warning=True)
    d.condition("SpecValid", "False", "InvalidSpec", error)
    if running:
        d.requeue_in(10)
        return
    if st.terminal and st.reason != "InvalidSpec":
        return  # a finished run stays finished; restoring the file must not run it again
    if not (st.phase == "Failed" and st.reason == "InvalidSpec" and st.message == error):
        d.pause_clock()
        d.set_phase("Failed", "InvalidSpec", error)
        st.finishedAt = d.now


def valid_spec(d: Draft, m: JobManifest) -> None:
    newrun.accept(d, m)
    st = d.st
    key = run_key(m.generation, m.spec.runId)
    blocked = stopping.settle_stale(d, key)
    if st.terminal:
        stopping.finished_run(d, key)
        return
    earlier = st.earlier_run_containers()
    current = {c.name: c for c in d.observed.containers if c.run == key and c.id not in earlier}
    attempts.adopt_newer(d, current)
    name = container_name(d.facts.instance, m.name, key, st.attempts) if st.attempts else None
    c = current.get(name) if name else None

    if c is not None and c.exited and not st.recorded(c.name) and (gone := interruptions.orphaned(d, c)):
        interruptions.record_node_lost(d, c, m, gone)
    elif c is not None and c.exited and not st.recorded(c.name):
        if c.name not in d.observed.logs_complete:
            d.requeue_in(LOG_DRAIN_POLL)
            return
        wait = interruptions.signal_settle_left(d, c)
        if wait > 0:
            d.requeue_in(wait)
            return
        attempts.record_exit(d, c, m)
    elif c is None and name and not st.recorded(name) and st.containerId is not None:
        interruptions.record_vanished(d, name, m)
    elif c is not None and is_live(c) and not st.recorded(c.name) and (lost := interruptions.node_lost(d, c)):
        interruptions.record_node_lost(d, c, m, lost)
    interruptions.remove_recorded_live(d, current)
    if c is not None and is_live(c) and st.recorded(c.name):
        c = None  # recorded as interrupted (its node was lost) and being removed: the job wants its next attempt

    if st.terminal:  # the exit just recorded finished the run
        for other in current.values():
            if other.exited:
                d.remove_when_drained(other)
        return
    attempts.recover_unrecorded(d, current, name)

    if m.spec.suspend:
        stopping.suspend(d, c)
        return
    if st.phase == "Stopped":
        stopping.resume(d)
    if st.activeSince is None:
        st.activeSince = d.now
    if deadlines.active_deadline_passed(d, m, c):
        return

    if c is not None and c.running:
        attempts.started(d, c)
        if not stopping.requested(d, c) and not interruptions.leave_drained_node(d, c):
            deadlines.check_progress(d, m, c)
    elif c is not None and c.state == "created" and c.waiting:
        gate.engine_waits(d, c)
    elif c is not None and c.state == "created":
        d.actions.append(Start(c.name))
        d.requeue_in(START_POLL)
    elif c is None and name and not st.recorded(name):
        gate.want(d, name, st.attempts, new_attempt=False, blocked=blocked)  # recorded, not created yet: create it
    elif st.attempts == 0 or st.recorded(name or ""):
        nxt = st.attempts + 1
        gate.want(d, container_name(d.facts.instance, m.name, key, nxt), nxt, new_attempt=True, blocked=blocked)
