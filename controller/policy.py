"""Small pure helpers of the lifecycle policy: backoff, exit-code rules, telling interruptions apart."""

from __future__ import annotations

from datetime import datetime, timedelta

from .runtime.base import ContainerInfo
from .spec import FailureRule

# Docker stops containers during its shutdown (live-restore off) and marks lost ones dead right after it starts, so
# an exit inside this window around the daemon's start belongs to the restart, not to the job.
DAEMON_WINDOW_BEFORE = timedelta(seconds=120)
DAEMON_WINDOW_AFTER = timedelta(seconds=60)
# The engine's event stream breaks only after a shutting-down daemon has stopped its containers (up to its
# shutdown timeout, 15 s by default), so an exit this long before an outage began belongs to it.
OUTAGE_SLACK = timedelta(seconds=30)


def backoff_delay(failures: int, initial: float, maximum: float) -> float:
    """Seconds before the next attempt after `failures` counted failures: initial, doubling, capped."""
    if failures <= 0:
        return 0.0
    return min(initial * (2 ** min(failures - 1, 62)), maximum)


def match_failure_rule(rules: list[FailureRule], exit_code: int | None, oom_killed: bool) -> tuple[int | None, str]:
    """The first rule that matches the exit, like Kubernetes' podFailurePolicy; `Count` when none does."""
    for i, rule in enumerate(rules):
        by_code = rule.exitCodes is not None and exit_code in rule.exitCodes
        by_oom = rule.oomKilled is not None and rule.oomKilled == oom_killed
        if rule.exitCodes is not None and rule.oomKilled is not None:
            matched = by_code and by_oom
        else:
            matched = by_code or by_oom
        if matched:
            return i, rule.action
    return None, "Count"


def interruption_cause(
    c: ContainerInfo,
    boot_time: datetime | None,
    daemon_started_at: datetime | None,
    outages: tuple[tuple[datetime, datetime], ...],
) -> str | None:
    """Why a non-zero exit was the machine's doing and not the job's, or None when it was the job's.

    - started before the host booted: the VM rebooted under it;
    - started before the Docker daemon's current process and ended around its start: the daemon restarted;
    - ended while the controller saw the engine unreachable: the engine went away.
    """
    if c.started_at is None:
        return None
    if (
        boot_time is not None
        and c.started_at < boot_time
        and (c.finished_at is None or c.finished_at >= boot_time - DAEMON_WINDOW_BEFORE)
    ):
        return "the machine rebooted while the attempt ran"
    if daemon_started_at is not None and c.started_at < daemon_started_at:
        end = c.finished_at or daemon_started_at
        if daemon_started_at - DAEMON_WINDOW_BEFORE <= end <= daemon_started_at + DAEMON_WINDOW_AFTER:
            return "the Docker daemon restarted while the attempt ran"
    if c.finished_at is not None:
        for start, end in outages:
            if start - OUTAGE_SLACK <= c.finished_at <= end + timedelta(seconds=5):
                return "the Docker engine went away while the attempt ran"
    return None
