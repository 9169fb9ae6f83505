"""The status.json model: phases, reasons, conditions and the attempt ledger.

Only the controller writes status. It is also the controller's memory between restarts: intent (the attempt about
to be created, the stop about to be sent) is written here before acting, so a crash at any instant is resolved by
reading this file next to the containers Docker still has.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Stopped"]
PHASES: tuple[str, ...] = get_args(Phase)
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})
FINAL_PHASES: frozenset[str] = TERMINAL_PHASES | {"Stopped"}  # a job stays here until someone changes its spec

# The seed's lowercase words, for its /status endpoint and job_track.json.
SEED_STATUS = {
    "Pending": "queued",
    "Running": "running",
    "Succeeded": "finished",
    "Failed": "failed",
    "Stopped": "stopped",
}
STOP_REQUESTED = "stop_requested"  # the seed's word for a job whose stop is in its grace period (phase Running)
ACTIVE_PHASES: frozenset[str] = frozenset({"Pending", "Running"})


def seed_word(phase: str, stopping: bool) -> str:
    """The seed's status word: `stop_requested` while a requested stop waits for the container to go."""
    if stopping and phase in ACTIVE_PHASES:
        return STOP_REQUESTED
    return SEED_STATUS.get(phase, phase.lower())


_SEED_TO_PHASE = {word: phase for phase, word in SEED_STATUS.items()} | {STOP_REQUESTED: "Running"}


def normalize_phase(value: str) -> str | None:
    """A phase from its name in any case, or from the seed's lowercase word (`running`, `finished`, ...)."""
    low = value.strip().lower()
    for phase in PHASES:
        if phase.lower() == low:
            return phase
    return _SEED_TO_PHASE.get(low)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 time as written by `iso` (or without a zone, read as UTC); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def epoch(raw: object) -> float | None:
    """Seconds since the epoch of a record's time (`iso`), None for anything else."""
    t = parse_iso(raw)
    return None if t is None else t.timestamp()


class _Model(BaseModel):
    # Unknown keys are ignored on read so an older controller can read a newer file.
    model_config = ConfigDict(extra="ignore")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    type: str
    status: ConditionStatus = "True"
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: datetime


class AttemptRecord(_Model):
    """One finished attempt, kept in status so each run's history outlives its containers."""

    attempt: int
    generation: str
    runId: str | None = None
    containerName: str
    containerId: str | None = None
    startedAt: datetime | None = None
    finishedAt: datetime | None = None
    exitCode: int | None = None
    outcome: str  # Succeeded | Failed | Interrupted | Stopped | Ignored
    reason: str | None = None
    counted: bool = False  # counted against backoffLimit
    source: dict[str, str] | None = None  # provenance of the run's spec (git: repoURL, ref, commit, path, digest)


class StopIntent(_Model):
    """A stop we asked for, so the container's exit is attributed to us, not to the job or the machine."""

    containerName: str
    reason: str
    requestedAt: datetime


class JobStatus(_Model):
    name: str
    phase: Phase = "Pending"
    reason: str | None = None
    message: str | None = None
    observedGeneration: str | None = None
    runId: str | None = None
    attempts: int = 0
    failures: int = 0
    exitCode: int | None = None
    containerName: str | None = None
    containerId: str | None = None
    submittedAt: datetime | None = None
    startedAt: datetime | None = None
    finishedAt: datetime | None = None
    updatedAt: datetime | None = None
    nextAttemptAt: datetime | None = None
    queuePosition: int | None = None  # while waiting for capacity: place among the waiting jobs, 1 = next
    gpuIds: list[str] = Field(default_factory=list)  # GPU device ids given to the current (or last) attempt
    activeSeconds: float = 0.0  # deadline clock: time spent not suspended, up to activeSince
    activeSince: datetime | None = None
    stopping: StopIntent | None = None
    specFile: str | None = None  # relative to the specs folder, so the API can rewrite control fields
    source: dict[str, str] | None = None  # where the current run's spec came from (git), set when the run began
    labels: dict[str, str] = Field(default_factory=dict)
    ttlSecondsAfterFinished: int | None = None  # from the spec, kept for when the spec is gone
    conditions: list[Condition] = Field(default_factory=list)
    history: list[AttemptRecord] = Field(default_factory=list)
    runHistoryStart: int = 0  # history[runHistoryStart:] are the current run's attempts

    def working_copy(self) -> JobStatus:
        """A copy a decision may change without touching the recorded status.

        Only the containers are copied: the models inside (conditions, attempt records, the stop intent) are never
        changed in place, only replaced. That makes a decision over thousands of settled jobs cheap (a deep copy
        was most of a full resync).
        """
        return self.model_copy(
            update={
                "conditions": list(self.conditions),
                "history": list(self.history),
                "labels": dict(self.labels),
                "gpuIds": list(self.gpuIds),
            }
        )

    @property
    def seed_status(self) -> str:
        return seed_word(self.phase, self.stopping is not None)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def recorded(self, container_name: str) -> bool:
        """Whether this run already recorded the container's exit (an earlier run may have used the same name)."""
        return any(h.containerName == container_name for h in self.history[self.runHistoryStart :])

    def earlier_run_containers(self) -> set[str]:
        """Ids of containers recorded by earlier runs: leftovers if seen again, never this run's attempts."""
        return {h.containerId for h in self.history[: self.runHistoryStart] if h.containerId}

    def set_condition(
        self, type_: str, status: ConditionStatus, reason: str | None, message: str | None, now: datetime
    ) -> None:
        """Upsert a condition; lastTransitionTime moves only when its status flips."""
        for i, c in enumerate(self.conditions):
            if c.type == type_:
                moved = c.status != status
                self.conditions[i] = Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    lastTransitionTime=now if moved else c.lastTransitionTime,
                )
                return
        self.conditions.append(
            Condition(type=type_, status=status, reason=reason, message=message, lastTransitionTime=now)
        )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class Event(_Model):
    """One line of events.jsonl."""

    time: datetime
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str
    attempt: int | None = None
    generation: str | None = None
