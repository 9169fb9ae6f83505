"""The old backend's job operations (delete, /ops/...), as spec-file writes the controller then carries out.

A job is never marked failed or removed by hand here: stop, cancel and fail suspend it (the controller stops its
container; phase Stopped), requeue starts a new run, delete stops it and has the controller move its files to
DATA/archive/deleted/ (kept for OPEVA_ARCHIVE_RETENTION_DAYS), and the job leaves every listing at once.
"""

from __future__ import annotations

from typing import Any

import structlog

from controller.status import ACTIVE_PHASES, FINAL_PHASES

from .context import ApiContext
from .errors import AlreadyExists, NotFound
from .specfiles import new_run_id

log = structlog.get_logger("opeva.api.ops")


class JobOps:
    def __init__(self, ctx: ApiContext):
        self.ctx = ctx

    def _phase(self, name: str) -> str | None:
        self.ctx.require_job(name)
        status = self.ctx.store.read_status(name)
        return status.phase if status is not None else "Pending"

    def delete(self, name: str) -> dict[str, Any]:
        if not self.ctx.job_known(name):
            raise NotFound(f"job {name!r} not found or already deleted")
        self.ctx.store.mark_deleted(name)  # first: the job leaves the listings even if the next step fails
        if self.ctx.specs.find(name) is not None:
            self.ctx.specs.delete(name)
        log.info("job_deleted", job=name)
        return {
            "message": f"Job {name} deleted successfully",
            "job_id": name,
            "detail": "the job is stopped; its files move to DATA/archive/deleted/ once its container is gone",
        }

    def suspend(self, name: str, reason: str, verb: str) -> dict[str, Any]:
        phase = self._phase(name)
        outcome = self.ctx.specs.set_control(name, {"suspend": True}, verb)
        if outcome.action == "unchanged":
            message = f"Job is already {verb}"
        elif phase == "Pending":
            message = "Job canceled from queue"
        elif phase == "Running":
            message = "Stop requested; the controller stops the job's container"
        else:
            message = f"Job already finished ({phase}); it will not run again"
        log.info("job_suspended_by_ops", job=name, reason=reason, verb=verb)
        return {"message": message, "job_id": name, "status": "stopped", "reason": reason}

    def requeue(self, name: str, force: bool) -> dict[str, Any]:
        phase = self._phase(name)
        if phase in ACTIVE_PHASES and not force:
            raise AlreadyExists(f"job {name!r} is {phase.lower()}; pass force=true to start it over")
        self.ctx.specs.set_control(name, {"suspend": False, "runId": new_run_id()}, "requeued")
        return {"message": "Job requeued", "job_id": name, "status": "queued"}

    def cleanup_queue(self, force: bool) -> dict[str, Any]:
        """Nothing stale can sit in this queue (it is derived from the jobs); `force` cancels every waiting job."""
        removed = []
        if force:
            for row in self.ctx.index.query({"Pending"}).items:
                if self.ctx.specs.find(row["name"]) is not None:
                    self.ctx.specs.set_control(row["name"], {"suspend": True}, "canceled")
                    removed.append(row["name"])
        return {"removed": removed, "count": len(removed)}

    def cleanup_jobs(self, keep: list[str] | None) -> dict[str, Any]:
        """Delete every finished job except those in `keep` (their files are archived, as for DELETE)."""
        keep_set = set(keep or ())
        removed, kept, active = [], [], []
        deleted = self.ctx.store.deleted_jobs()
        for row in self.ctx.index.query().items:
            name = row["name"]
            if name in deleted:
                continue
            if name in keep_set:
                kept.append(name)
            elif row.get("phase") in FINAL_PHASES:
                self.delete(name)
                removed.append(name)
            else:
                active.append(name)
        return {
            "removed": removed,
            "removed_dirs": [],
            "orphan_removed": [],
            "filesystem_errors": [],
            "kept": kept,
            "active_kept": sorted(active),
            "count": len(removed),
        }
