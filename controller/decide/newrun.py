"""A new run: the first record of a job, or a fresh start when its generation or runId changes."""

from __future__ import annotations

from ..spec import JobManifest
from ..status import JobStatus
from .core import Draft

# Conditions of the previous run that say nothing about the new one.
RUN_CONDITIONS = ("Running", "Succeeded", "Failed", "FailureTarget", "BackingOff", "Interrupted")


def accept(d: Draft, m: JobManifest) -> None:
    """Make sure the draft is this manifest's run: accepted if new, restarted if the spec or runId changed."""
    generation, run_id = m.generation, m.spec.runId
    st = d.st
    if st is None:
        d.st = JobStatus(name=m.name, submittedAt=d.now, observedGeneration=generation, runId=run_id, reason="Accepted")
        d.condition("Accepted", "True", "Accepted")
        d.st.source = d.desired.source
        d.event("Accepted", f"new job, generation {generation}")
    elif st.observedGeneration != generation or st.runId != run_id:
        why = (
            f"spec changed: generation {st.observedGeneration} -> {generation}"
            if st.observedGeneration != generation
            else f"rerun requested: runId {st.runId!r} -> {run_id!r}"
        )
        new_run(d, generation, run_id)
        d.event("GenerationChanged" if "generation" in why else "Rerun", why)
    st = d.st
    st.labels = dict(m.metadata.labels)
    st.specFile = d.desired.spec_file
    st.ttlSecondsAfterFinished = m.spec.ttlSecondsAfterFinished
    if (cond := st.condition("SpecValid")) and cond.status == "False":
        d.condition("SpecValid", "True", "Valid")
        if st.reason == "InvalidSpec":
            d.set_phase("Pending", "Accepted")
            st.finishedAt = None


def new_run(d: Draft, generation: str, run_id: str | None) -> None:
    st = d.st
    st.observedGeneration, st.runId = generation, run_id
    st.attempts = st.failures = 0
    st.exitCode = st.containerName = st.containerId = None
    st.startedAt = st.finishedAt = st.nextAttemptAt = st.activeSince = None
    st.activeSeconds = 0.0
    st.stopping = None
    st.submittedAt = d.now
    st.source = d.desired.source  # the commit that launched this run
    st.runHistoryStart = len(st.history)
    d.set_phase("Pending", "Accepted")
    for t in RUN_CONDITIONS:
        if st.condition(t):
            d.condition(t, "False", "NewRun")
