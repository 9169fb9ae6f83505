"""Conditions describe the current state: after every decision, a condition that no longer holds is set False, and
`Terminating` says whether a requested stop is still under way. A transition never has to remember which
conditions an earlier one set."""

from __future__ import annotations

from ..status import ACTIVE_PHASES, JobStatus
from .core import Draft


def _holds(st: JobStatus) -> dict[str, bool]:
    """Whether each condition that may go stale is still true of the job."""
    return {
        "Running": st.phase == "Running",
        "BackingOff": st.phase == "Pending" and st.nextAttemptAt is not None,
        "Interrupted": st.phase == "Pending" or (st.phase == "Failed" and st.reason == "Interrupted"),
        "Suspended": st.phase == "Stopped" and st.reason == "Suspended",
        "Terminating": st.stopping is not None and st.phase in ACTIVE_PHASES,
    }


def settle(d: Draft) -> None:
    st = d.st
    for type_, holds in _holds(st).items():
        cond = st.condition(type_)
        if holds and type_ == "Terminating" and st.stopping is not None:
            if cond is None or cond.status != "True" or cond.reason != st.stopping.reason:
                d.condition(type_, "True", st.stopping.reason, f"stopping container {st.stopping.containerName}")
        elif not holds and cond is not None and cond.status == "True":
            d.condition(type_, "False", st.reason)
