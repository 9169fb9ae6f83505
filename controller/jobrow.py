"""One job's row of the job list (job_track.json, the seed's index): a tuple of plain values in `TRACK_FIELDS` order.

Settled jobs are kept in memory as just this row, so it is a tuple (small) rather than a dict or a model.
"""

from __future__ import annotations

from typing import Any

from .status import SEED_STATUS, JobStatus, iso

# One job-list row (job_track.json), as a tuple in this order: 100,000 settled jobs are kept in memory this way.
TRACK_FIELDS = (
    "job_id",
    "container_id",
    "container_name",
    "status",
    "phase",
    "reason",
    "attempts",
    "queue_position",
    "labels",
    "updated_at",
    "submitted_at",
    "started_at",
    "finished_at",
    "outcomes",
)
Row = tuple[Any, ...]


def track_row(s: JobStatus) -> Row:
    return (
        s.name,
        s.containerId,
        s.containerName,
        SEED_STATUS.get(s.phase, s.phase.lower()),
        s.phase,
        s.reason,
        s.attempts,
        s.queuePosition,
        s.labels,
        iso(s.updatedAt),
        iso(s.submittedAt),
        iso(s.startedAt),
        iso(s.finishedAt),
        outcome_counts(s),
    )


def outcome_counts(s: JobStatus) -> dict[str, int]:
    """Finished attempts by outcome, and `Running` for an attempt under way, for the attempt metrics."""
    counts: dict[str, int] = {}
    for h in s.history:
        counts[h.outcome] = counts.get(h.outcome, 0) + 1
    if s.phase == "Running" and s.containerName and not s.recorded(s.containerName):
        counts["Running"] = 1
    return counts


def row_dict(row: Row) -> dict[str, Any]:
    return dict(zip(TRACK_FIELDS, row, strict=True))
