"""The decision's vocabulary: its inputs, its outputs, and the draft every rule family writes to.

No I/O and no clocks: `facts.now` is the time. A rule family is a few functions over a `Draft`; the draft starts as
a working copy of the recorded status and collects the events, actions and requeue the rules imply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..runtime.base import ContainerInfo
from ..scheduler import Admission
from ..spec import JobManifest
from ..status import AttemptRecord, Event, JobStatus

LOG_DRAIN_POLL = 0.5  # seconds between looks while a finished container's log is drained
START_POLL = 1.0
DEFAULT_GRACE = 30  # seconds, when no spec says otherwise (its file was deleted)
LABEL_RUN_ID = "opeva.runId"


# ---- inputs ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Desired:
    """What the specs folder says about one job name: nothing, an invalid file, or a manifest."""

    name: str
    manifest: JobManifest | None = None
    error: str | None = None
    spec_file: str | None = None
    config_missing: str | None = None  # configFile named but absent: wait, do not fail
    deleted: bool = False  # the user deleted the job itself (DELETE /job/ID): collect it, artifacts archived
    # where the file came from (git: repoURL, ref, commit, path, digest); not part of the desired state itself
    source: dict[str, str] | None = field(default=None, compare=False)

    @property
    def exists(self) -> bool:
        return self.manifest is not None or self.error is not None


@dataclass(frozen=True)
class Observed:
    containers: tuple[ContainerInfo, ...] = ()
    logs_complete: frozenset[str] = frozenset()  # container names whose output is fully in the log file
    progress_at: datetime | None = None  # last change of progress/progress.json
    admission: Admission | None = None  # the scheduler's answer, for `decide`; None = go (see decide/__init__.py)


@dataclass(frozen=True)
class Facts:
    now: datetime
    instance: str = "local"  # the data folder's id: containers of other data folders are not ours
    boot_time: datetime | None = None
    daemon_started_at: datetime | None = None
    outages: tuple[tuple[datetime, datetime], ...] = ()  # spans when the controller saw the engine gone
    keep_finished_containers: bool = False
    ttl_succeeded: float | None = None  # seconds after finishing before a spec-less record is collected
    ttl_failed: float | None = None
    # nodes whose attempts are given up (node id -> why), see controller/nodes.py: lost ones (down for longer than the
    # settle time) have their attempt removed at once; drained ones have it stopped; either runs again elsewhere
    lost_nodes: Mapping[str, str] = field(default_factory=dict)
    drained_nodes: Mapping[str, str] = field(default_factory=dict)


# ---- outputs --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Create:
    container: str
    attempt: int
    gpu_ids: tuple[str, ...] = ()  # assigned by the scheduler; the container gets exactly these


@dataclass(frozen=True)
class Start:
    container: str


@dataclass(frozen=True)
class Stop:
    container: str
    grace: int
    reason: str


@dataclass(frozen=True)
class Remove:
    container: str


@dataclass(frozen=True)
class Collect:
    """Remove the job's record; its artifacts go as the controller's retention setting says (archived when the
    job was deleted by a user, whatever the setting)."""

    phase: str
    archive: bool = False


Action = Create | Start | Stop | Remove | Collect


@dataclass
class Decision:
    status: JobStatus | None
    events: list[Event] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None


@dataclass(frozen=True)
class Want:
    """The container a job asks for, once nothing but capacity stands in its way (see `gate`)."""

    container: str
    attempt: int
    new_attempt: bool  # True: the next attempt, recorded when admitted; False: the recorded attempt's, again


def run_key(generation: str, run_id: str | None) -> str:
    """Identifies one run: a generation, or a generation rerun under a new runId."""
    if not run_id:
        return generation[:12]
    return hashlib.sha256(f"{generation}\0{run_id}".encode()).hexdigest()[:12]


def container_name(instance: str, job: str, key: str, attempt: int) -> str:
    """Deterministic per (data folder, job, run, attempt), so a second create of one attempt fails in the engine."""
    return f"opeva-{instance}-{job}-{key[:8]}-{attempt}"


def is_live(c: ContainerInfo) -> bool:
    """Running, or created and never started: either must be stopped before its job is done with it."""
    return c.running or c.state == "created"


# ---- the draft ------------------------------------------------------------------------------------------------
class Draft:
    """One decision in progress: a draft status plus the events, actions and requeue it implies.

    Only the small verbs every rule family uses live here; the rules themselves are in the family modules.
    """

    def __init__(self, desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts):
        self.desired = desired
        self.observed = observed
        self.facts = facts
        self.now = facts.now
        self.st: JobStatus = recorded.working_copy() if recorded is not None else None
        self.events: list[Event] = []
        self.actions: list[Action] = []
        self.requeue: float | None = None
        self.want: Want | None = None  # set when the job asks for a container; `gate` answers it
        self.waiting = False  # for capacity, this decision

    def decision(self) -> Decision:
        return Decision(self.st, self.events, self.actions, self.requeue)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        st = self.st
        self.events.append(
            Event(
                time=self.now,
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                attempt=st.attempts if st else None,
                generation=st.observedGeneration if st else None,
            )
        )

    def requeue_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def set_phase(self, phase: str, reason: str | None, message: str | None = None) -> None:
        self.st.phase = phase  # type: ignore[assignment]
        self.st.reason = reason
        self.st.message = message

    def condition(
        self, type_: str, status: Literal["True", "False"], reason: str | None, message: str | None = None
    ) -> None:
        self.st.set_condition(type_, status, reason, message, self.now)

    def stop(self, c: ContainerInfo, reason: str) -> None:
        """SIGTERM, then SIGKILL after the grace period the container was created with; never-started ones go."""
        if c.state == "created":
            self.actions.append(Remove(c.name))
        else:
            self.actions.append(Stop(c.name, c.stop_grace if c.stop_grace is not None else DEFAULT_GRACE, reason))

    def remove_when_drained(self, c: ContainerInfo) -> None:
        """A finished container goes once its exit and log are durably recorded; the record never needs it."""
        if c.name not in self.observed.logs_complete:
            self.requeue_in(LOG_DRAIN_POLL)
        elif not self.facts.keep_finished_containers:
            self.actions.append(Remove(c.name))

    def pause_clock(self) -> None:
        if self.st.activeSince is not None:
            self.st.activeSeconds += max((self.now - self.st.activeSince).total_seconds(), 0.0)
            self.st.activeSince = None

    def active_seconds(self) -> float:
        extra = (self.now - self.st.activeSince).total_seconds() if self.st.activeSince else 0.0
        return self.st.activeSeconds + max(extra, 0.0)

    def record_history(self, c: ContainerInfo, outcome: str, reason: str | None, counted: bool = False) -> None:
        self.st.history.append(
            AttemptRecord(
                attempt=c.attempt,
                generation=c.generation,
                runId=c.labels.get(LABEL_RUN_ID) or None,
                containerName=c.name,
                containerId=c.id or None,
                startedAt=c.started_at,
                finishedAt=c.finished_at,
                exitCode=c.exit_code,
                outcome=outcome,
                reason=reason,
                counted=counted,
                source=c.source,  # what its container was created with, whichever run it belonged to
            )
        )

    def record_unseen_exit(self, c: ContainerInfo, reason: str | None) -> None:
        """An exited container of a run being stopped: its exit goes in the history once its log is complete."""
        if not self.st.recorded(c.name) and c.name in self.observed.logs_complete:
            self.record_history(c, "Stopped", reason)

    def ensure_status(self, phase: str, reason: str) -> JobStatus:
        if self.st is None:
            self.st = JobStatus(name=self.desired.name, phase=phase, reason=reason, submittedAt=self.now)  # type: ignore[arg-type]
        return self.st

    def finish(self, phase: str, reason: str, message: str | None, finished_at: datetime | None = None) -> None:
        st = self.st
        self.pause_clock()
        self.set_phase(phase, reason, message)
        st.finishedAt = finished_at or self.now
        st.nextAttemptAt = None
        self.condition("Running", "False", reason)
        if phase == "Failed":
            self.condition("FailureTarget", "True", reason, message)
        self.condition(phase, "True", reason, message)
        self.event(phase, f"{reason}: {message}" if message else reason, warning=phase == "Failed")


def current_attempt(st: JobStatus, name: str) -> ContainerInfo:
    """The current attempt as status knows it, for a history entry when its container is gone or never was."""
    return ContainerInfo(
        id=st.containerId or "",
        name=name,
        job=st.name,
        generation=st.observedGeneration or "",
        run="",
        attempt=st.attempts,
        state="exited",
        started_at=st.startedAt,
        labels={LABEL_RUN_ID: st.runId} if st.runId else {},
    )
