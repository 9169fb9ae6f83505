"""Deadlines: activeDeadlineSeconds fails the run, progressDeadlineSeconds stops a stalled attempt."""

from __future__ import annotations

from ..runtime.base import ContainerInfo
from ..spec import JobManifest
from . import stopping
from .core import Draft


def active_deadline_passed(d: Draft, m: JobManifest, c: ContainerInfo | None) -> bool:
    """True when the run has been active past its deadline: it fails and its container is stopped."""
    limit = m.spec.activeDeadlineSeconds
    if limit is None:
        return False
    left = limit - d.active_seconds()
    if left > 0:
        d.requeue_in(left)
        return False
    d.pause_clock()
    if c is not None and c.running:
        stopping.request(d, c, "DeadlineExceeded", overrule=True)
    d.finish("Failed", "DeadlineExceeded", f"active for more than activeDeadlineSeconds={limit}")
    return True


def check_progress(d: Draft, m: JobManifest, c: ContainerInfo) -> None:
    """A running attempt whose progress file has not changed for progressDeadlineSeconds is stopped (and retried
    under the failure policy when its exit is recorded)."""
    limit = m.spec.progressDeadlineSeconds
    if limit is None:
        return
    st = d.st
    last = max(t for t in (d.observed.progress_at, c.started_at, st.startedAt) if t is not None)
    quiet = (d.now - last).total_seconds()
    if quiet < limit:
        d.requeue_in(limit - quiet)
        return
    stopping.request(d, c, "ProgressStalled")
    d.event("ProgressStalled", f"no progress for {int(quiet)} s (limit {limit} s); stopping attempt", warning=True)
