"""The pure decision: (desired spec, observed containers, recorded status, facts) -> new status, events, actions.

No I/O and no clocks: `facts.now` is the time. Like the Kubernetes job controller's syncJob, it keeps no memory of
past events; everything it needs is in its arguments, so a lost event costs latency, never correctness. Intent is
part of the returned status (the attempt about to be created, the stop about to be sent); the caller writes that
status before it performs the actions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .policy import backoff_delay, interruption_cause, match_failure_rule
from .runtime.base import ContainerInfo
from .scheduler import Admission
from .spec import JobManifest
from .status import AttemptRecord, Event, JobStatus, StopIntent

LOG_DRAIN_POLL = 0.5  # seconds between looks while a finished container's log is drained
START_POLL = 1.0
SIGNAL_SETTLE = 20.0  # seconds a signal death waits before it is taken for the job's own failure
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

    @property
    def exists(self) -> bool:
        return self.manifest is not None or self.error is not None


@dataclass(frozen=True)
class Observed:
    containers: tuple[ContainerInfo, ...] = ()
    logs_complete: frozenset[str] = frozenset()  # container names whose output is fully in the log file
    progress_at: datetime | None = None  # last change of progress/progress.json
    admission: Admission | None = None  # the scheduler's answer, asked only when the job wants a container; None = go


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


def run_key(generation: str, run_id: str | None) -> str:
    """Identifies one run: a generation, or a generation rerun under a new runId."""
    if not run_id:
        return generation[:12]
    return hashlib.sha256(f"{generation}\0{run_id}".encode()).hexdigest()[:12]


def container_name(instance: str, job: str, key: str, attempt: int) -> str:
    """Deterministic per (data folder, job, run, attempt), so a second create of one attempt fails in the engine."""
    return f"opeva-{instance}-{job}-{key[:8]}-{attempt}"


# ---- the decision ---------------------------------------------------------------------------------------------
def decide(desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts) -> Decision:
    sync = _Sync(desired, observed, recorded, facts)
    if desired.manifest is not None:
        sync.valid_spec(desired.manifest)
    elif desired.error is not None:
        sync.invalid_spec(desired.error)
    else:
        sync.spec_deleted()
    return sync.decision()


def fail_attempt_start(status: JobStatus, reason: str, message: str, now: datetime) -> Decision:
    """The engine refused to start an attempt (image missing, bad definition): the job fails, with the message."""
    sync = _Sync(Desired(status.name), Observed(), status, Facts(now=now))
    sync.record_history(_current_attempt(status, status.containerName or ""), "Failed", reason)
    sync.finish("Failed", reason, message)
    return sync.decision()


def _current_attempt(st: JobStatus, name: str) -> ContainerInfo:
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


class _Sync:
    """One decision in progress: a draft status plus the events, actions and requeue it implies."""

    def __init__(self, desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts):
        self.desired = desired
        self.observed = observed
        self.facts = facts
        self.now = facts.now
        self.st = recorded.working_copy() if recorded is not None else None
        self.events: list[Event] = []
        self.actions: list[Action] = []
        self.requeue: float | None = None
        self.waiting = False  # for capacity, this decision

    # -- small helpers --
    def decision(self) -> Decision:
        if self.st is not None:
            self.settle_pending()
        return Decision(self.st, self.events, self.actions, self.requeue)

    def settle_pending(self) -> None:
        """The `Pending` condition and the queue position say why a job waits, and only while it waits."""
        st = self.st
        if not self.waiting and st.queuePosition is not None:
            st.queuePosition = None
        cond = st.condition("Pending")
        if cond is not None and cond.status == "True" and not (st.phase == "Pending" and st.reason == cond.reason):
            st.set_condition("Pending", "False", st.reason, None, self.now)

    def admitted(self) -> bool:
        """Capacity: a container is asked for only once the scheduler admits the job; one that never fits fails."""
        a, st = self.observed.admission, self.st
        if a is None or a.admitted:
            st.gpuIds = list(a.gpu_ids) if a is not None else []
            return True
        if a.verdict == "Unschedulable":
            self.finish("Failed", "Unschedulable", a.message)
            return False
        message = f"{a.message}; position {a.position} of {a.waiting} in the queue"
        if st.reason != a.reason:
            self.event("Waiting", f"{a.reason}: {message}")
        self.set_phase("Pending", a.reason, message)
        st.queuePosition = a.position
        st.set_condition("Pending", "True", a.reason, message, self.now)
        self.waiting = True
        return False

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
            )
        )

    def ensure_status(self, phase: str, reason: str) -> JobStatus:
        if self.st is None:
            self.st = JobStatus(name=self.desired.name, phase=phase, reason=reason, submittedAt=self.now)  # type: ignore[arg-type]
        return self.st

    # -- the three cases of the desired state --
    def spec_deleted(self) -> None:
        containers = self.observed.containers
        if self.st is None and not containers:
            return
        st = self.ensure_status("Stopped", "SpecDeleted")
        for c in containers:
            if c.running or c.state == "created":
                if c.name == st.containerName and not (st.stopping and st.stopping.containerName == c.name):
                    st.stopping = StopIntent(containerName=c.name, reason="SpecDeleted", requestedAt=self.now)
                self.stop(c, "SpecDeleted")
                self.requeue_in(START_POLL)
            elif c.exited:
                if not st.recorded(c.name) and c.name in self.observed.logs_complete:
                    self.record_history(c, "Stopped", "SpecDeleted")
                self.remove_when_drained(c)
        if st.phase in ("Pending", "Running") or (st.phase == "Stopped" and st.reason != "SpecDeleted"):
            self.pause_clock()
            self.set_phase("Stopped", "SpecDeleted", "the spec file was removed")
            if st.startedAt:
                st.finishedAt = st.finishedAt or self.now
            st.set_condition("Running", "False", "SpecDeleted", None, self.now)
            self.event("SpecDeleted", "spec file removed; job stopped, record and artifacts kept")
        if not containers:
            self.collect_when_due()

    def collect_when_due(self) -> None:
        """A finished job whose spec is gone is collected once its TTL has passed (never while anything runs)."""
        st = self.st
        if self.desired.deleted and st.phase in ("Succeeded", "Failed", "Stopped"):
            self.actions.append(Collect(st.phase, archive=True))
            return
        if st.phase == "Succeeded":
            ttl = st.ttlSecondsAfterFinished if st.ttlSecondsAfterFinished is not None else self.facts.ttl_succeeded
        elif st.phase in ("Failed", "Stopped"):
            ttl = st.ttlSecondsAfterFinished if st.ttlSecondsAfterFinished is not None else self.facts.ttl_failed
        else:
            return
        if ttl is None:
            return
        st.finishedAt = st.finishedAt or self.now
        left = (st.finishedAt + timedelta(seconds=ttl) - self.now).total_seconds()
        if left > 0:
            self.requeue_in(left)
        else:
            self.actions.append(Collect(st.phase))

    def invalid_spec(self, error: str) -> None:
        """A broken file never stops a running container (a typo must not kill a three-day training).

        An attempt that exits meanwhile is not recorded: its container waits until the file is valid again, when the
        exit is judged by the job's own policy (or until the file is deleted).
        """
        st = self.ensure_status("Failed", "InvalidSpec")
        running = [c for c in self.observed.containers if c.running]
        for c in self.observed.containers:
            if c.exited and st.recorded(c.name):
                self.remove_when_drained(c)
        cond = st.condition("SpecValid")
        if cond is None or cond.status != "False" or cond.message != error:
            self.event("InvalidSpec", error, warning=True)
        st.set_condition("SpecValid", "False", "InvalidSpec", error, self.now)
        if running:
            self.requeue_in(10)
            return
        if st.terminal and st.reason != "InvalidSpec":
            return  # a finished run stays finished; restoring the file must not run it again
        if not (st.phase == "Failed" and st.reason == "InvalidSpec" and st.message == error):
            self.pause_clock()
            self.set_phase("Failed", "InvalidSpec", error)
            st.finishedAt = self.now

    def valid_spec(self, m: JobManifest) -> None:
        spec = m.spec
        generation = m.generation
        st = self.st
        if st is None:
            st = self.st = JobStatus(
                name=m.name, submittedAt=self.now, observedGeneration=generation, runId=spec.runId, reason="Accepted"
            )
            st.set_condition("Accepted", "True", "Accepted", None, self.now)
            self.event("Accepted", f"new job, generation {generation}")
        elif st.observedGeneration != generation or st.runId != spec.runId:
            why = (
                f"spec changed: generation {st.observedGeneration} -> {generation}"
                if st.observedGeneration != generation
                else f"rerun requested: runId {st.runId!r} -> {spec.runId!r}"
            )
            self.new_run(generation, spec.runId)
            self.event("GenerationChanged" if "generation" in why else "Rerun", why)
        st = self.st
        st.labels = dict(m.metadata.labels)
        st.specFile = self.desired.spec_file
        st.ttlSecondsAfterFinished = spec.ttlSecondsAfterFinished
        if (cond := st.condition("SpecValid")) and cond.status == "False":
            st.set_condition("SpecValid", "True", "Valid", None, self.now)
            if st.reason == "InvalidSpec":
                self.set_phase("Pending", "Accepted")
                st.finishedAt = None

        key = run_key(generation, spec.runId)
        blocked = self.settle_stale(key)
        if st.terminal:
            self.finished_run(key)
            return
        earlier = st.earlier_run_containers()
        current = {c.name: c for c in self.observed.containers if c.run == key and c.id not in earlier}
        self.adopt_newer_attempt(current)
        name = container_name(self.facts.instance, m.name, key, st.attempts) if st.attempts else None
        c = current.get(name) if name else None

        if c is not None and c.exited and not st.recorded(c.name):
            if c.name not in self.observed.logs_complete:
                self.requeue_in(LOG_DRAIN_POLL)
                return
            wait = self.signal_settle_left(c)
            if wait > 0:
                self.requeue_in(wait)
                return
            self.record_exit(c, m)
        elif c is None and name and not st.recorded(name) and st.containerId is not None:
            self.record_vanished(name, m)

        if st.terminal:  # the exit just recorded finished the run
            for other in current.values():
                if other.exited:
                    self.remove_when_drained(other)
            return
        for other in current.values():
            if (
                other.exited
                and other.name != name
                and not st.recorded(other.name)
                and other.name in self.observed.logs_complete
            ):
                # an older attempt whose exit was never recorded (the status was lost): record what it did
                self.record_history(other, "Succeeded" if other.exit_code == 0 else "Failed", "RecoveredRecord")
            if other.exited and st.recorded(other.name):
                self.remove_when_drained(other)

        if spec.suspend:
            self.suspend(c)
            return
        if st.phase == "Stopped":
            if st.condition("Suspended"):
                st.set_condition("Suspended", "False", "Resumed", None, self.now)
            why = "suspend cleared" if st.reason == "Suspended" else "spec file restored"
            self.set_phase("Pending", "Resumed")
            self.event("Resumed", f"{why}; the job runs again as a new attempt")
        if st.activeSince is None:
            st.activeSince = self.now

        if spec.activeDeadlineSeconds is not None:
            left = spec.activeDeadlineSeconds - self.active_seconds()
            if left <= 0:
                self.fail_deadline(c, spec.activeDeadlineSeconds)
                return
            self.requeue_in(left)

        if c is not None and c.running:
            self.running(c, m)
        elif c is not None and c.state == "created":
            self.actions.append(Start(c.name))
            self.requeue_in(START_POLL)
        elif c is None and name and not st.recorded(name):
            self.create_or_wait(name, st.attempts, blocked)
        elif st.attempts == 0 or st.recorded(name or ""):
            self.next_attempt(m, key, blocked)

    # -- pieces of a valid spec's sync --
    def new_run(self, generation: str, run_id: str | None) -> None:
        st = self.st
        st.observedGeneration, st.runId = generation, run_id
        st.attempts = st.failures = 0
        st.exitCode = st.containerName = st.containerId = None
        st.startedAt = st.finishedAt = st.nextAttemptAt = st.activeSince = None
        st.activeSeconds = 0.0
        st.stopping = None
        st.submittedAt = self.now
        st.runHistoryStart = len(st.history)
        self.set_phase("Pending", "Accepted")
        for t in ("Running", "Succeeded", "Failed", "FailureTarget", "BackingOff", "Interrupted"):
            if st.condition(t):
                st.set_condition(t, "False", "NewRun", None, self.now)

    def settle_stale(self, key: str) -> bool:
        """Stop and clear containers of earlier runs; True while any still blocks a new container."""
        blocked = False
        earlier = self.st.earlier_run_containers()
        for c in self.observed.containers:
            if c.run == key and c.id not in earlier:
                continue
            if c.running or c.state == "created":
                self.stop(c, "Superseded")
                blocked = True
                self.requeue_in(START_POLL)
            elif c.exited:
                if not self.st.recorded(c.name) and c.name in self.observed.logs_complete:
                    self.record_history(c, "Stopped", "Superseded")
                if c.name not in self.observed.logs_complete:
                    blocked = True  # its log must be drained before the next attempt appends to the same file
                self.remove_when_drained(c)
        return blocked

    def finished_run(self, key: str) -> None:
        """A finished run never runs again; only leftovers are tidied."""
        earlier = self.st.earlier_run_containers()
        for c in self.observed.containers:
            if c.run != key or c.id in earlier:
                continue
            if c.running or c.state == "created":
                self.stop(c, self.st.reason or "Finished")
                self.requeue_in(START_POLL)
            elif c.exited:
                if not self.st.recorded(c.name) and c.name in self.observed.logs_complete:
                    self.record_history(c, "Stopped", self.st.reason)
                self.remove_when_drained(c)

    def adopt_newer_attempt(self, current: dict[str, ContainerInfo]) -> None:
        """A live container of a later attempt than recorded (status lost or restored from backup) is adopted."""
        live = [c for c in current.values() if (c.running or c.state == "created") and c.attempt > self.st.attempts]
        if live:
            c = max(live, key=lambda x: x.attempt)
            self.st.attempts = c.attempt
            self.st.containerName = c.name
            self.event("Adopted", f"adopted running container {c.name} (attempt {c.attempt})")

    def running(self, c: ContainerInfo, m: JobManifest) -> None:
        st = self.st
        if st.phase != "Running" or st.containerId != c.id:
            st.containerId, st.containerName = c.id, c.name
            st.startedAt = c.started_at or self.now
            st.nextAttemptAt = None
            self.set_phase("Running", "Started")
            st.set_condition("Running", "True", "Started", f"container {c.name}", self.now)
            for cond in ("BackingOff", "Interrupted"):
                if st.condition(cond):
                    st.set_condition(cond, "False", "Started", None, self.now)
            self.event("Started", f"attempt {st.attempts} running in container {c.name}")
        if st.stopping and st.stopping.containerName == c.name:
            self.stop(c, st.stopping.reason)
            self.requeue_in(START_POLL)
            return
        limit = m.spec.progressDeadlineSeconds
        if limit is not None:
            last = max(t for t in (self.observed.progress_at, c.started_at, st.startedAt) if t is not None)
            quiet = (self.now - last).total_seconds()
            if quiet >= limit:
                st.stopping = StopIntent(containerName=c.name, reason="ProgressStalled", requestedAt=self.now)
                self.stop(c, "ProgressStalled")
                self.event(
                    "ProgressStalled",
                    f"no progress for {int(quiet)} s (limit {limit} s); stopping attempt",
                    warning=True,
                )
                self.requeue_in(START_POLL)
            else:
                self.requeue_in(limit - quiet)

    def may_create(self, blocked: bool) -> bool:
        """Whether a container may be asked for now: nothing blocks it, no backoff or config file is awaited, and
        the machine has room. When not, says why and when to look again."""
        st = self.st
        if blocked:
            return False
        if st.nextAttemptAt and st.nextAttemptAt > self.now:
            self.requeue_in((st.nextAttemptAt - self.now).total_seconds())
            return False
        if self.desired.config_missing:
            if st.reason != "ConfigFileMissing":
                self.event("ConfigFileMissing", self.desired.config_missing, warning=True)
            self.set_phase("Pending", "ConfigFileMissing", self.desired.config_missing)
            self.requeue_in(10)
            return False
        return self.admitted()

    def create_or_wait(self, name: str, attempt: int, blocked: bool) -> None:
        """The attempt is recorded but its container is not there yet: create it (again)."""
        if self.may_create(blocked):
            self.actions.append(Create(name, attempt, tuple(self.st.gpuIds)))
            self.requeue_in(START_POLL)

    def next_attempt(self, m: JobManifest, key: str, blocked: bool) -> None:
        """Record the next attempt (the intent), then ask for its container."""
        if not self.may_create(blocked):
            return
        st = self.st
        st.attempts += 1
        st.containerName = container_name(self.facts.instance, m.name, key, st.attempts)
        st.containerId = None
        st.exitCode = None
        st.startedAt = None
        st.nextAttemptAt = None
        st.stopping = None
        self.set_phase("Pending", "Starting", f"creating container {st.containerName}")
        self.event("Creating", f"attempt {st.attempts}: creating container {st.containerName}")
        self.actions.append(Create(st.containerName, st.attempts, tuple(st.gpuIds)))
        self.requeue_in(START_POLL)

    def suspend(self, c: ContainerInfo | None) -> None:
        st = self.st
        self.pause_clock()
        if c is not None and (c.running or c.state == "created"):
            if not (st.stopping and st.stopping.containerName == c.name):
                st.stopping = StopIntent(containerName=c.name, reason="Suspended", requestedAt=self.now)
                self.event("Stopping", f"suspend requested; stopping {c.name}")
            self.stop(c, "Suspended")
            self.requeue_in(START_POLL)
            return
        if not (st.phase == "Stopped" and st.reason == "Suspended"):
            self.set_phase("Stopped", "Suspended", "spec.suspend is true")
            st.set_condition("Suspended", "True", "Suspended", None, self.now)
            st.set_condition("Running", "False", "Suspended", None, self.now)
            self.event("Suspended", "job suspended" + (" before it started" if not st.startedAt else ""))

    def fail_deadline(self, c: ContainerInfo | None, limit: int) -> None:
        st = self.st
        self.pause_clock()
        message = f"active for more than activeDeadlineSeconds={limit}"
        if c is not None and c.running:
            st.stopping = StopIntent(containerName=c.name, reason="DeadlineExceeded", requestedAt=self.now)
            self.stop(c, "DeadlineExceeded")
            self.requeue_in(START_POLL)
        self.finish("Failed", "DeadlineExceeded", message)

    def finish(self, phase: str, reason: str, message: str | None, finished_at: datetime | None = None) -> None:
        st = self.st
        self.pause_clock()
        self.set_phase(phase, reason, message)
        st.finishedAt = finished_at or self.now
        st.nextAttemptAt = None
        st.set_condition("Running", "False", reason, None, self.now)
        if phase == "Failed":
            st.set_condition("FailureTarget", "True", reason, message, self.now)
        st.set_condition(phase, "True", reason, message, self.now)
        self.event(phase, f"{reason}: {message}" if message else reason, warning=phase == "Failed")

    def record_vanished(self, name: str, m: JobManifest) -> None:
        """The attempt's container is gone without a recorded exit: removed behind our back, or lost."""
        st = self.st
        self.record_history(_current_attempt(st, name), "Interrupted", "ContainerRemoved")
        self.interrupted(m, f"container {name} disappeared (removed outside the controller)")

    def interrupted(self, m: JobManifest, cause: str) -> None:
        st = self.st
        st.set_condition("Interrupted", "True", "Interrupted", cause, self.now)
        if m.spec.interruptionPolicy == "Fail":
            self.finish("Failed", "Interrupted", cause)
            return
        self.set_phase("Pending", "Interrupted", cause)
        st.nextAttemptAt = None
        self.event("Interrupted", f"attempt {st.attempts} interrupted ({cause}); starting a new attempt", warning=True)

    def signal_settle_left(self, c: ContainerInfo) -> float:
        """Seconds to wait before blaming a signal death we did not ask for on the job.

        A daemon shutting down kills containers (exit 137/143) while its event stream still runs, before anyone
        can tell that it is going away. Recording such an exit waits until SIGNAL_SETTLE has passed, by which
        time a daemon restart or an engine outage shows in the facts and the exit is classified an interruption.
        """
        st = self.st
        asked = st.stopping is not None and st.stopping.containerName == c.name
        if asked or c.oom_killed or c.exit_code is None or c.exit_code < 128 or c.finished_at is None:
            return 0.0
        if interruption_cause(c, self.facts.boot_time, self.facts.daemon_started_at, self.facts.outages):
            return 0.0
        return SIGNAL_SETTLE - (self.now - c.finished_at).total_seconds()

    def record_exit(self, c: ContainerInfo, m: JobManifest) -> None:
        """Classify a finished attempt and apply the lifecycle policy. The exit is recorded exactly once."""
        st = self.st
        st.exitCode = c.exit_code
        st.containerId = c.id
        st.startedAt = c.started_at or st.startedAt  # a quick job may exit before it is ever seen running
        intent = st.stopping if st.stopping and st.stopping.containerName == c.name else None
        st.stopping = None
        self.event(
            "Exited",
            f"container {c.name} exited with code {c.exit_code}" + (" (out of memory)" if c.oom_killed else ""),
        )
        if intent is not None and intent.reason != "ProgressStalled":
            self.record_history(c, "Stopped", intent.reason)
            if intent.reason == "Suspended":
                self.pause_clock()
                self.set_phase("Stopped", "Suspended", "spec.suspend is true")
                st.set_condition("Suspended", "True", "Suspended", None, self.now)
                st.set_condition("Running", "False", "Suspended", None, self.now)
                self.event("Suspended", f"attempt {st.attempts} stopped; job suspended")
            return
        if c.exit_code == 0 and intent is None:
            self.record_history(c, "Succeeded", "Completed")
            self.finish("Succeeded", "Completed", None, c.finished_at)
            return
        if intent is None:
            cause = interruption_cause(c, self.facts.boot_time, self.facts.daemon_started_at, self.facts.outages)
            if cause:
                self.record_history(c, "Interrupted", "Interrupted")
                self.interrupted(m, cause)
                return
        if intent is not None:
            reason, detail = "ProgressStalled", "stopped after progress stalled"
        elif c.oom_killed:
            reason, detail = "OOMKilled", "killed: out of memory"
        else:
            reason, detail = "Error", f"exit code {c.exit_code}"
        rule_index, action = match_failure_rule(m.spec.failurePolicy, c.exit_code, c.oom_killed)
        rule_note = f" (failurePolicy rule {rule_index + 1}: {action})" if rule_index is not None else ""
        if action == "FailJob":
            self.record_history(c, "Failed", reason)
            self.finish("Failed", reason, detail + rule_note, c.finished_at)
            return
        if action == "Ignore":
            self.record_history(c, "Ignored", reason)
            self.set_phase("Pending", reason, detail + rule_note + "; retrying without counting it")
            self.event("Retrying", f"attempt {st.attempts} failed ({detail}){rule_note}; not counted", warning=True)
            return
        st.failures += 1
        self.record_history(c, "Failed", reason, counted=True)
        limit = m.spec.effective_backoff_limit
        if st.failures > limit:
            final = reason if limit == 0 else "BackoffLimitExceeded"
            msg = detail if limit == 0 else f"{detail}; {st.failures} failures, backoffLimit {limit}"
            self.finish("Failed", final, msg + rule_note, c.finished_at)
            return
        delay = backoff_delay(st.failures, m.spec.backoff.initialSeconds, m.spec.backoff.maxSeconds)
        st.nextAttemptAt = self.now + timedelta(seconds=delay)
        msg = f"{detail}; failure {st.failures} of {limit + 1} allowed, next attempt at {st.nextAttemptAt.isoformat()}"
        self.set_phase("Pending", "BackingOff", msg)
        st.set_condition("BackingOff", "True", reason, msg, self.now)
        st.set_condition("Pending", "True", "BackingOff", msg, self.now)
        st.set_condition("Running", "False", reason, None, self.now)
        self.event("BackingOff", f"attempt {st.attempts} failed: {msg}", warning=True)
        self.requeue_in(delay)
