"""The job resource: list, apply, read, delete, stop/resume/rerun, events, progress, result.

Writes go to spec files (see api/specfiles.py); reads come from the data folder. Nothing here talks to Docker.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from controller.jobpaths import PROGRESS_FILE, RESULT_FILE
from controller.selectors import parse_label_selector
from controller.spec import text_format
from controller.status import normalize_phase
from controller.store import read_json

from ..context import ApiContext, Ctx
from ..errors import ApiError, not_found
from ..models import Event, JobDetail, JobListItem, JobName, WriteResult
from ..specfiles import WriteOutcome, new_run_id

router = APIRouter(tags=["jobs"])

_EXAMPLE_YAML = """apiVersion: opeva/v1
kind: Job
metadata:
  name: ppo-seed-42
  labels: {experiment: citylearn}
spec:
  image: calof/opeva_simulator:latest
  args: [--config, /data/configs/ppo.yaml, --job_id, ppo-seed-42]
  env: {SEED: "42"}
"""
_EXAMPLE_JSON = {
    "apiVersion": "opeva/v1",
    "kind": "Job",
    "metadata": {"name": "ppo-seed-42", "labels": {"experiment": "citylearn"}},
    "spec": {"image": "calof/opeva_simulator:latest", "env": {"SEED": "42"}},
}
SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "A job spec (apiVersion opeva/v1, kind Job), as YAML or "
        "JSON, validated exactly as a spec file dropped into the specs folder.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobManifest"}, "example": _EXAMPLE_JSON},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/JobManifest"}, "example": _EXAMPLE_YAML},
        },
    }
}
MAX_PAGE = 1000


def write_result(outcome: WriteOutcome) -> dict[str, Any]:
    m = outcome.manifest
    return {
        "name": outcome.name,
        "action": outcome.action,
        "specFile": outcome.spec_file,
        "generation": m.generation if m else None,
        "suspend": m.spec.suspend if m else None,
        "runId": m.spec.runId if m else None,
        "message": outcome.message,
    }


# ---- list ------------------------------------------------------------------------------------------------------
@router.get(
    "/jobs",
    response_model=list[JobListItem],
    summary="List jobs (filters, pagination)",
    response_description="Jobs sorted by name. `X-Total-Count` holds the number of matching jobs; "
    "`X-Continue` (when present) is the `continue` value that fetches the next page.",
    responses={
        200: {
            "headers": {
                "X-Total-Count": {"schema": {"type": "integer"}, "description": "Matching jobs, all pages."},
                "X-Continue": {"schema": {"type": "string"}, "description": "Token for the next page."},
            }
        }
    },
)
def list_jobs(
    ctx: Ctx,
    request: Request,
    phase: Annotated[
        list[str] | None,
        Query(
            description="Keep jobs in these phases (Pending, Running, Succeeded, "
            "Failed, Stopped, or the seed's words). Repeatable."
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        Query(
            description="Label requirement `key=value` or `key` (present). Repeatable, comma-separated; all must hold."
        ),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE, description="Page size; without it, all jobs (the seed's behaviour).")
    ] = None,
    continue_: Annotated[
        str | None, Query(alias="continue", max_length=63, description="Return jobs after this name (from X-Continue).")
    ] = None,
) -> Response:
    phases: set[str] | None = None
    if phase:
        phases = set()
        for raw in (p for value in phase for p in value.split(",") if p.strip()):
            norm = normalize_phase(raw)
            if norm is None:
                raise ApiError(
                    422,
                    f"phase {raw!r} is not one of Pending, Running, Succeeded, Failed, Stopped "
                    "(or queued, running, finished, failed, stopped)",
                )
            phases.add(norm)
    try:
        selector = parse_label_selector(label or [])
    except ValueError as err:
        raise ApiError(422, str(err)) from None
    snap = ctx.index.snapshot()
    page = ctx.index.query(phases, selector, limit, continue_, snap)
    deleted = ctx.store.deleted_jobs()  # deleted by a user, waiting for the controller to archive them
    rows = [row for row in page.items if row["name"] not in deleted] if deleted else page.items
    body, tag = ctx.rows.listing(snap, (request.url.query, frozenset(deleted)), rows)
    hidden = sum(1 for name in deleted if ctx.index.get(name) is not None)
    headers = {"X-Total-Count": str(max(0, page.total - hidden))}
    if page.next_after:
        headers["X-Continue"] = page.next_after
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "continue"]
        headers["Link"] = f'<{request.url.path}?{urlencode(params + [("continue", page.next_after)])}>; rel="next"'
    headers["ETag"] = _list_etag(tag, headers)
    if _not_modified(headers["ETag"], request.headers.get("if-none-match")):
        return Response(status_code=304, headers={"ETag": headers["ETag"]})
    return Response(body, media_type="application/json", headers=headers)


def _list_etag(tag: str, headers: dict[str, str]) -> str:
    """A validator for one listing: the rows' tag (it changes with the array) and the headers. Weak: a running job's
    durations advance in steps (api/listrows.py LIVE_TICK)."""
    digest = hashlib.blake2b(f"{tag}\0{sorted(headers.items())!r}".encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def _not_modified(etag: str, if_none_match: str | None) -> bool:
    """If-None-Match holds this tag (compared weakly, RFC 9110 13.1.2) or `*`."""
    tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


# ---- create / apply --------------------------------------------------------------------------------------------
@router.post(
    "/jobs",
    response_model=WriteResult,
    status_code=201,
    summary="Create a job (409 if it exists)",
    openapi_extra=SPEC_BODY,
)
async def create_job(ctx: Ctx, request: Request) -> JSONResponse:
    body = await request.body()
    fmt = text_format(body, request.headers.get("content-type"))
    name = _name_in_body(body, fmt)
    outcome = await run_in_threadpool(ctx.specs.apply, name, body, fmt, create_only=True)
    return JSONResponse(write_result(outcome), status_code=201)


@router.put(
    "/jobs/{name}",
    response_model=WriteResult,
    summary="Apply a job: create or update (idempotent)",
    responses={201: {"model": WriteResult, "description": "Created: a new spec file."}},
    response_description="Updated, or unchanged when the spec is identical to the file's.",
    openapi_extra=SPEC_BODY,
)
async def apply_job(name: JobName, ctx: Ctx, request: Request) -> JSONResponse:
    body = await request.body()
    fmt = text_format(body, request.headers.get("content-type"))
    outcome = await run_in_threadpool(ctx.specs.apply, name, body, fmt)
    return JSONResponse(write_result(outcome), status_code=201 if outcome.action == "created" else 200)


def _name_in_body(body: bytes, fmt: str) -> str:
    """metadata.name of a POSTed spec, so the full validation can run against the right name."""
    from controller.spec import SpecError, parse_text

    try:
        return parse_text(body, "request body", fmt).name
    except SpecError as err:
        raise ApiError(422, str(err)) from None


# ---- read ------------------------------------------------------------------------------------------------------
@router.get("/jobs/{name}", response_model=JobDetail, summary="A job's spec and status")
def get_job(name: JobName, ctx: Ctx) -> dict[str, Any]:
    status = read_json(ctx.store.status_path(name))
    status = status if isinstance(status, dict) else None
    found = ctx.specs.find(name)
    if status is None and found is None and not ctx.store.job_dir(name).is_dir():
        raise not_found(name)
    manifest = found.loaded.manifest if found else None
    doc = manifest.to_document() if manifest else None
    labels = manifest.metadata.labels if manifest else (status or {}).get("labels") or {}
    return {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {str(k): str(v) for k, v in dict(labels).items()}},
        "spec": doc["spec"] if doc else None,
        "specFile": found.rel if found else (status or {}).get("specFile"),
        "specError": found.loaded.error if found else None,
        "status": status,
    }


@router.get("/jobs/{name}/events", response_model=list[Event], summary="A job's events, oldest first")
def get_events(
    name: JobName,
    ctx: Ctx,
    limit: Annotated[int | None, Query(ge=1, le=100000, description="Only the last N events.")] = None,
) -> list[dict[str, Any]]:
    ctx.require_job(name)
    return [e for e in ctx.store.read_events(name, limit) if isinstance(e, dict)]


@router.get(
    "/jobs/{name}/progress",
    summary="The job's progress/progress.json",
    response_description='Whatever JSON the job wrote, e.g. {"percent": 45, "stage": "training"}.',
)
def get_progress(name: JobName, ctx: Ctx) -> Any:
    return _job_json(ctx, name, PROGRESS_FILE, "has not reported progress yet")


@router.get(
    "/jobs/{name}/result",
    summary="The job's results/result.json",
    response_description="Whatever JSON the job wrote as its result.",
)
def get_result(name: JobName, ctx: Ctx) -> Any:
    return _job_json(ctx, name, RESULT_FILE, "has no result yet")


def _job_json(ctx: ApiContext, name: str, rel: str, missing: str) -> Any:
    ctx.require_job(name)
    found, value = ctx.store.read_job_json(ctx.store.job_dir(name) / rel)
    if not found:
        raise ApiError(404, f"job {name!r} {missing} ({rel} does not exist)")
    return value


# ---- delete and control ----------------------------------------------------------------------------------------
@router.delete(
    "/jobs/{name}",
    response_model=WriteResult,
    summary="Delete a job's spec file",
    response_description="The spec file is gone; the controller stops a running container and keeps "
    "the record (phase Stopped, reason SpecDeleted) and artifacts.",
)
def delete_job(name: JobName, ctx: Ctx) -> dict[str, Any]:
    return write_result(ctx.specs.delete(name))


@router.post("/jobs/{name}/stop", response_model=WriteResult, summary="Stop: set spec.suspend=true")
def stop_job(name: JobName, ctx: Ctx) -> dict[str, Any]:
    return write_result(ctx.specs.set_control(name, {"suspend": True}, "stopped"))


@router.post("/jobs/{name}/resume", response_model=WriteResult, summary="Resume: set spec.suspend=false")
def resume_job(name: JobName, ctx: Ctx) -> dict[str, Any]:
    return write_result(ctx.specs.set_control(name, {"suspend": False}, "resumed"))


@router.post(
    "/jobs/{name}/rerun", response_model=WriteResult, summary="Run again: set a new spec.runId (and spec.suspend=false)"
)
def rerun_job(name: JobName, ctx: Ctx) -> dict[str, Any]:
    return write_result(ctx.specs.set_control(name, {"runId": new_run_id(), "suspend": False}, "rerun"))
