"""Retention: a finished job whose spec is gone is collected once its TTL has passed."""

from __future__ import annotations

from datetime import timedelta

from ..status import FINAL_PHASES
from .core import Collect, Draft


def collect_when_due(d: Draft) -> None:
    """Never while anything runs (the caller checks that no container is left); the TTL counts from finishedAt.
    A job its user deleted (not just its spec) goes at once."""
    st = d.st
    if d.desired.deleted and st.phase in FINAL_PHASES:
        d.actions.append(Collect(st.phase, archive=True))
        return
    if st.phase == "Succeeded":
        ttl = st.ttlSecondsAfterFinished if st.ttlSecondsAfterFinished is not None else d.facts.ttl_succeeded
    elif st.phase in ("Failed", "Stopped"):
        ttl = st.ttlSecondsAfterFinished if st.ttlSecondsAfterFinished is not None else d.facts.ttl_failed
    else:
        return
    if ttl is None:
        return
    st.finishedAt = st.finishedAt or d.now
    left = (st.finishedAt + timedelta(seconds=ttl) - d.now).total_seconds()
    if left > 0:
        d.requeue_in(left)
    else:
        d.actions.append(Collect(st.phase))
