"""The pure decision: (desired spec, observed containers, recorded status, facts) -> new status, events, actions.

No I/O and no clocks: `facts.now` is the time. Like the Kubernetes job controller's syncJob, it keeps no memory of
past events; everything it needs is in its arguments, so a lost event costs latency, never correctness. Intent is
part of the returned status (the attempt about to be created, the stop about to be sent); the caller writes that
status before it performs the actions.

One rule family per module, each a few functions over the `Draft` (core.py):
  newrun.py         a new job, or a new run when the generation or runId changes
  attempts.py       an attempt started, exited (failure policy, backoff), or was recovered from a lost status
  interruptions.py  attempts ended by the machine, not the job; signal deaths given time to settle
  deadlines.py      activeDeadlineSeconds and progressDeadlineSeconds
  stopping.py       spec deleted, suspend and resume, superseded and leftover containers
  retention.py      TTL collection of finished records whose spec is gone
  gate.py           admission: the job's own gate, then the scheduler's answer
  cases.py          the order the families are applied in, for a valid spec, an invalid file, no file

Capacity, the one input asked for on demand: the scheduler is asked only when the job wants a container, and which
container (the next attempt's name) is known only once the rules have run. So the decision runs in two steps:
`propose` applies every rule and stops at the gate with `Proposal.want`; `Proposal.admit(admission)` finishes it
with the scheduler's answer (None: no scheduler, every job fits). The controller asks its scheduler between the two,
once. `decide` is both steps with `observed.admission`, for callers that know the answer beforehand (tests, plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..scheduler import Admission
from ..status import JobStatus
from . import cases, gate
from .core import (
    DEFAULT_GRACE,
    LABEL_RUN_ID,
    LOG_DRAIN_POLL,
    START_POLL,
    Action,
    Collect,
    Create,
    Decision,
    Desired,
    Draft,
    Facts,
    Observed,
    Remove,
    Start,
    Stop,
    Want,
    container_name,
    current_attempt,
    run_key,
)
from .interruptions import SIGNAL_SETTLE

__all__ = [
    "DEFAULT_GRACE",
    "LABEL_RUN_ID",
    "LOG_DRAIN_POLL",
    "SIGNAL_SETTLE",
    "START_POLL",
    "Action",
    "Collect",
    "Create",
    "Decision",
    "Desired",
    "Facts",
    "Observed",
    "Proposal",
    "Remove",
    "Start",
    "Stop",
    "Want",
    "container_name",
    "decide",
    "fail_attempt_start",
    "propose",
    "run_key",
]


@dataclass
class Proposal:
    """Every rule applied, stopped at the capacity gate."""

    _draft: Draft

    @property
    def want(self) -> Want | None:
        """The container the job asks for, if any: the scheduler's question."""
        return self._draft.want

    @property
    def status(self) -> JobStatus | None:
        return self._draft.st

    def admit(self, admission: Admission | None) -> Decision:
        """The decision, with the scheduler's answer to `want` (None: admitted, no GPUs). Call once."""
        return gate.resolve(self._draft, admission)


def propose(desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts) -> Proposal:
    d = Draft(desired, observed, recorded, facts)
    if desired.manifest is not None:
        cases.valid_spec(d, desired.manifest)
    elif desired.error is not None:
        cases.invalid_spec(d, desired.error)
    else:
        cases.spec_deleted(d)
    return Proposal(d)


def decide(desired: Desired, observed: Observed, recorded: JobStatus | None, facts: Facts) -> Decision:
    return propose(desired, observed, recorded, facts).admit(observed.admission)


def fail_attempt_start(status: JobStatus, reason: str, message: str, now: datetime) -> Decision:
    """The engine refused to start an attempt (image missing, bad definition): the job fails, with the message."""
    d = Draft(Desired(status.name), Observed(), status, Facts(now=now))
    d.record_history(current_attempt(status, status.containerName or ""), "Failed", reason)
    d.finish("Failed", reason, message)
    return gate.resolve(d, None)
