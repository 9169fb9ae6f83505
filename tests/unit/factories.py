"""Builders for the unit tests: manifests, containers and a job driven through `decide` step by step.

Everything here is pure: times are fixed datetimes, containers are plain `ContainerInfo` values, and a
`Job` only threads each decision's status into the next call, the way the reconciler does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.decide import (
    LABEL_RUN_ID,
    Create,
    Decision,
    Desired,
    Facts,
    Observed,
    Remove,
    Stop,
    container_name,
    decide,
    run_key,
)
from controller.runtime.base import LABEL_ATTEMPT, LABEL_GENERATION, LABEL_JOB, LABEL_RUN, ContainerInfo
from controller.spec import JobManifest, parse_document
from controller.status import JobStatus

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INSTANCE = "a1b2c3"
IMAGE = "busybox:latest"


def at(seconds: float) -> datetime:
    """A fixed instant `seconds` after T0."""
    return T0 + timedelta(seconds=seconds)


# ---- specs ----------------------------------------------------------------------------------------------------
def doc(name: str = "job", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A spec document as a user writes it; `spec` fields override the minimal one."""
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "opeva/v1", "kind": "Job", "metadata": metadata, "spec": {"image": IMAGE, **spec}}


def manifest(name: str = "job", labels: dict[str, str] | None = None, **spec: Any) -> JobManifest:
    return parse_document(doc(name, labels, **spec))


def key_of(m: JobManifest) -> str:
    return run_key(m.generation, m.spec.runId)


def name_of(m: JobManifest, attempt: int) -> str:
    """The container name the controller gives attempt `attempt` of the manifest's run."""
    return container_name(INSTANCE, m.name, key_of(m), attempt)


# ---- containers -----------------------------------------------------------------------------------------------
def container(
    m: JobManifest,
    attempt: int = 1,
    state: str = "running",
    *,
    exit_code: int | None = None,
    oom: bool = False,
    started: datetime | None = T0,
    finished: datetime | None = None,
) -> ContainerInfo:
    """The engine's view of one attempt's container, labelled as the reconciler labels it."""
    key = key_of(m)
    labels = {LABEL_JOB: m.name, LABEL_GENERATION: m.generation, LABEL_ATTEMPT: str(attempt), LABEL_RUN: key}
    if m.spec.runId:
        labels[LABEL_RUN_ID] = m.spec.runId
    if state == "created":
        started = None
    # Docker ids are unique per container: a later run reusing a name gets a new id (same start, same container)
    cid = f"id-{key[:6]}-{attempt}-{int(started.timestamp()) if started else 'new'}"
    return ContainerInfo(
        id=cid,
        name=name_of(m, attempt),
        job=m.name,
        generation=m.generation,
        run=key,
        attempt=attempt,
        state=state,
        exit_code=exit_code,
        oom_killed=oom,
        created_at=started,
        started_at=started,
        finished_at=finished,
        stop_grace=m.spec.terminationGracePeriodSeconds,
        labels=labels,
    )


def exited(
    m: JobManifest,
    attempt: int = 1,
    code: int = 0,
    *,
    oom: bool = False,
    started: datetime | None = T0,
    finished: datetime | None = None,
) -> ContainerInfo:
    """A finished attempt; it ends 30 s after it started unless told otherwise."""
    if finished is None:
        finished = (started or T0) + timedelta(seconds=30)
    return container(m, attempt, "exited", exit_code=code, oom=oom, started=started, finished=finished)


# ---- decisions ------------------------------------------------------------------------------------------------
def desired_for(m: JobManifest | None, name: str = "job", **kw: Any) -> Desired:
    if m is None:
        return Desired(name, **kw)
    return Desired(m.name, manifest=m, spec_file=f"{m.name}.yaml", **kw)


def observed(
    *containers: ContainerInfo, undrained: tuple[str, ...] = (), progress_at: datetime | None = None
) -> Observed:
    """What the controller sees; every exited container's log is complete unless named in `undrained`."""
    complete = frozenset(c.name for c in containers if c.exited and c.name not in undrained)
    return Observed(containers=tuple(containers), logs_complete=complete, progress_at=progress_at)


def facts(now: datetime = T0, **kw: Any) -> Facts:
    return Facts(now=now, instance=INSTANCE, **kw)


class Job:
    """One job driven through `decide`: each step feeds the previous decision's status back in."""

    def __init__(self, m: JobManifest | None, status: JobStatus | None = None, **desired_kw: Any):
        self.m = m
        self.name = m.name if m is not None else "job"
        self.status = status
        self.desired_kw = desired_kw
        self.last: Decision | None = None

    def desired(self) -> Desired:
        return desired_for(self.m, self.name, **self.desired_kw)

    def step(
        self,
        *containers: ContainerInfo,
        now: datetime = T0,
        undrained: tuple[str, ...] = (),
        progress_at: datetime | None = None,
        **fact_kw: Any,
    ) -> Decision:
        d = decide(
            self.desired(),
            observed(*containers, undrained=undrained, progress_at=progress_at),
            self.status,
            facts(now, **fact_kw),
        )
        self.status = d.status
        self.last = d
        return d

    def edit(self, m: JobManifest | None = None, **desired_kw: Any) -> Job:
        """Change what the specs folder says (a new manifest, deletion with `None`, or an error/config note)."""
        self.m = m
        self.desired_kw = desired_kw
        return self


def running_job(m: JobManifest, started: datetime = T0, **desired_kw: Any) -> tuple[Job, ContainerInfo]:
    """A job whose attempt 1 was created at `started` and is now seen running."""
    job = Job(m, **desired_kw)
    job.step(now=started)
    c = container(m, 1, started=started)
    job.step(c, now=started)
    return job, c


def fail_attempt(job: Job, attempt: int, now: datetime, code: int = 1, **fact_kw: Any) -> Decision:
    """Attempt `attempt` ran from `now` and exited with `code` 30 s later; decide on that exit."""
    assert job.m is not None
    job.step(container(job.m, attempt, started=now), now=now, **fact_kw)
    return job.step(exited(job.m, attempt, code, started=now), now=now + timedelta(seconds=30), **fact_kw)


def finished_job(m: JobManifest, code: int = 0) -> Job:
    """A job whose only attempt exited with `code`, recorded, and whose container is gone."""
    job, _ = running_job(m)
    job.step(exited(m, 1, code), now=at(30))
    job.step(now=at(31))
    return job


# ---- reading decisions ----------------------------------------------------------------------------------------
def reasons(d: Decision) -> list[str]:
    return [e.reason for e in d.events]


def of_type(d: Decision, kind: type) -> list[Any]:
    return [a for a in d.actions if isinstance(a, kind)]


def creates(d: Decision) -> list[Create]:
    return of_type(d, Create)


def stops(d: Decision) -> list[Stop]:
    return of_type(d, Stop)


def removes(d: Decision) -> list[Remove]:
    return of_type(d, Remove)


def fail_repeatedly(job: Job, count: int, code: int = 1, **fact_kw: Any) -> list[Decision]:
    """Attempts 1..count each run 30 s and exit with `code`; each next attempt is created as soon as it is due."""
    if job.status is None:
        job.step(now=T0)
    t, out = T0, []
    for attempt in range(1, count + 1):
        out.append(fail_attempt(job, attempt, t, code, **fact_kw))
        t = job.status.nextAttemptAt or (t + timedelta(seconds=30))
        if attempt < count:
            job.step(now=t, **fact_kw)
    return out
