"""An attempt's outcome: it started, it exited (judged by the failure policy and backoff), or its exit was lost."""

from __future__ import annotations

from datetime import timedelta

from ..policy import backoff_delay, match_failure_rule
from ..runtime.base import ContainerInfo
from ..spec import JobManifest
from . import interruptions, stopping
from .core import Draft


def started(d: Draft, c: ContainerInfo) -> None:
    """The attempt's container runs: the job is Running (once per container)."""
    st = d.st
    if st.phase == "Running" and st.containerId == c.id:
        return
    st.containerId, st.containerName = c.id, c.name
    st.startedAt = c.started_at or d.now
    st.nextAttemptAt = None
    d.set_phase("Running", "Started")
    d.condition("Running", "True", "Started", f"container {c.name}")
    for cond in ("BackingOff", "Interrupted"):
        if st.condition(cond):
            d.condition(cond, "False", "Started")
    d.event("Started", f"attempt {st.attempts} running in container {c.name}")


def recover_unrecorded(d: Draft, current: dict[str, ContainerInfo], name: str | None) -> None:
    """Older attempts of this run whose exit was never recorded (the status was lost): record what they did."""
    st = d.st
    for other in current.values():
        if (
            other.exited
            and other.name != name
            and not st.recorded(other.name)
            and other.name in d.observed.logs_complete
        ):
            d.record_history(other, "Succeeded" if other.exit_code == 0 else "Failed", "RecoveredRecord")
        if other.exited and st.recorded(other.name):
            d.remove_when_drained(other)


def adopt_newer(d: Draft, current: dict[str, ContainerInfo]) -> None:
    """A live container of a later attempt than recorded (status lost or restored from backup) is adopted."""
    live = [c for c in current.values() if (c.running or c.state == "created") and c.attempt > d.st.attempts]
    if live:
        c = max(live, key=lambda x: x.attempt)
        d.st.attempts = c.attempt
        d.st.containerName = c.name
        d.event("Adopted", f"adopted running container {c.name} (attempt {c.attempt})")


def record_exit(d: Draft, c: ContainerInfo, m: JobManifest) -> None:
    """Classify a finished attempt and apply the lifecycle policy. The exit is recorded exactly once."""
    st = d.st
    st.exitCode = c.exit_code
    st.containerId = c.id
    st.startedAt = c.started_at or st.startedAt  # a quick job may exit before it is ever seen running
    intent = st.stopping if st.stopping and st.stopping.containerName == c.name else None
    st.stopping = None
    d.event(
        "Exited",
        f"container {c.name} exited with code {c.exit_code}" + (" (out of memory)" if c.oom_killed else ""),
    )
    if intent is not None and intent.reason == "NodeDrained":
        d.record_history(c, "Interrupted", "NodeDrained")
        interruptions.interrupted(d, m, "its node was drained; the job runs again on another node")
        return
    if intent is not None and intent.reason != "ProgressStalled":
        d.record_history(c, "Stopped", intent.reason)
        if intent.reason == "Suspended":
            stopping.mark_suspended(d)
            d.event("Suspended", f"attempt {st.attempts} stopped; job suspended")
        return
    if c.exit_code == 0 and intent is None:
        d.record_history(c, "Succeeded", "Completed")
        d.finish("Succeeded", "Completed", None, c.finished_at)
        return
    if intent is None and (why := interruptions.cause(d, c)):
        d.record_history(c, "Interrupted", "Interrupted")
        interruptions.interrupted(d, m, why)
        return
    _failed(d, c, m, stalled=intent is not None)


def _failed(d: Draft, c: ContainerInfo, m: JobManifest, stalled: bool) -> None:
    """A failed attempt: the failure policy's first matching rule, else counted against backoffLimit."""
    st = d.st
    if stalled:
        reason, detail = "ProgressStalled", "stopped after progress stalled"
    elif c.oom_killed:
        reason, detail = "OOMKilled", "killed: out of memory"
    else:
        reason, detail = "Error", f"exit code {c.exit_code}"
    rule_index, action = match_failure_rule(m.spec.failurePolicy, c.exit_code, c.oom_killed)
    rule_note = f" (failurePolicy rule {rule_index + 1}: {action})" if rule_index is not None else ""
    if action == "FailJob":
        d.record_history(c, "Failed", reason)
        d.finish("Failed", reason, detail + rule_note, c.finished_at)
        return
    if action == "Ignore":
        d.record_history(c, "Ignored", reason)
        d.set_phase("Pending", reason, detail + rule_note + "; retrying without counting it")
        d.event("Retrying", f"attempt {st.attempts} failed ({detail}){rule_note}; not counted", warning=True)
        return
    st.failures += 1
    d.record_history(c, "Failed", reason, counted=True)
    limit = m.spec.effective_backoff_limit
    if st.failures > limit:
        final = reason if limit == 0 else "BackoffLimitExceeded"
        msg = detail if limit == 0 else f"{detail}; {st.failures} failures, backoffLimit {limit}"
        d.finish("Failed", final, msg + rule_note, c.finished_at)
        return
    delay = backoff_delay(st.failures, m.spec.backoff.initialSeconds, m.spec.backoff.maxSeconds)
    st.nextAttemptAt = d.now + timedelta(seconds=delay)
    msg = f"{detail}; failure {st.failures} of {limit + 1} allowed, next attempt at {st.nextAttemptAt.isoformat()}"
    d.set_phase("Pending", "BackingOff", msg)
    d.condition("BackingOff", "True", reason, msg)
    d.condition("Pending", "True", "BackingOff", msg)
    d.condition("Running", "False", reason)
    d.event("BackingOff", f"attempt {st.attempts} failed: {msg}", warning=True)
    d.requeue_in(delay)
