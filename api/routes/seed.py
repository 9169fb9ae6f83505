"""The old backend's endpoints, with its request and response shapes, on top of spec files and the data folder.

These are what energaize_ui, ai-manager-ui and the Algorithms scripts call (see the README, "Using the OPEVA UI and
simulator"). Routes stay thin: submissions are planned in api/simulations.py, configs live in api/configs.py, read
views in api/seedviews.py and api/joblog.py, operations in api/seedops.py. `GET /jobs` is shared with the resource API
(api/routes/jobs.py): its items keep the old keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from controller.jobpaths import RESULT_FILE
from controller.status import FINAL_PHASES, SEED_STATUS

from ..configs import MAX_CONFIG_BYTES
from ..context import ApiContext, Ctx
from ..errors import ApiError, NotFound, not_found
from ..hosts import LocalHost
from ..joblog import MergedLog
from ..models import (
    ConfigCreate,
    ConfigUpdate,
    JobId,
    OpsForce,
    OpsKeep,
    OpsReason,
    OpsRequeue,
    RunSimulationRequest,
    RunSimulationResponse,
    SeedStatus,
    SeedStop,
    SimulationDataFileRequest,
    SimulationDataIndexRequest,
)
from ..seedops import JobOps
from ..seedviews import CHUNK_MAX_BYTES, CHUNK_TAIL_DEFAULT, SimulationData, hosts_view, job_info_view, queue_rows
from ..simulations import SimulationRequest
from .logs import log_file, whole_log

router = APIRouter(tags=["seed (compatibility)"])
YAML = "text/yaml"
LOGS_NOT_YET = "Logs not available yet. Job is still initializing or running."


@router.post("/run-simulation", response_model=RunSimulationResponse, summary="Launch a simulation (old backend)")
async def run_simulation(req: RunSimulationRequest, ctx: Ctx) -> dict[str, Any]:
    fields = req.model_dump(exclude_unset=False)
    request = SimulationRequest(**{k: v for k, v in fields.items() if k in SimulationRequest.__dataclass_fields__})
    request = SimulationRequest(**{**request.__dict__, "extra": dict(req.model_extra or {})})
    return await run_in_threadpool(_submit, ctx, request)


def _submit(ctx: ApiContext, request: SimulationRequest) -> dict[str, Any]:
    sub = ctx.simulations.plan(request, LocalHost.read(ctx.store))
    if sub.saved_config is not None:
        name, text, overwrite = sub.saved_config
        ctx.configs.write(name, text, create=True, replace=overwrite)
    ctx.simulations.write_job_files(sub)
    outcome = ctx.specs.apply_document(sub.name, sub.document, create_only=True)
    info = sub.info
    return {
        "job_id": sub.name,
        "job_name": info["job_name"],
        "image": info["image"],
        "image_tag": info["image_tag"],
        "status": SEED_STATUS["Pending"],
        "phase": "Pending",
        "container_id": None,
        "host": info["target_host"],
        "spec_file": outcome.spec_file,
    }


@router.get("/status/{job_id}", response_model=SeedStatus, summary="A job's status in the seed's words")
def seed_status(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    status = None if ctx.store.is_deleted(job_id) else ctx.store.read_status(job_id)
    if status is None:
        ctx.require_job(job_id)  # a spec the controller has not picked up yet is queued
        return {
            "job_id": job_id,
            "status": SEED_STATUS["Pending"],
            "phase": "Pending",
            "reason": None,
            "message": "waiting for the controller to pick up the spec",
        }
    return {
        "job_id": job_id,
        "status": status.seed_status,
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
    }


@router.get(
    "/result/{job_id}",
    summary="A job's result (old backend)",
    response_description='result.json with simulation_data_* and kpi_source added, or {"status": "pending", ...}',
)
def seed_result(job_id: JobId, ctx: Ctx) -> Any:
    ctx.require_job(job_id)
    found, value = ctx.store.read_job_json(ctx.store.job_dir(job_id) / RESULT_FILE)
    value = value if found else {"status": "pending", "message": "Result not ready yet."}
    if not isinstance(value, dict):
        value = {"result": value}
    return {**value, **SimulationData(ctx.store, job_id).summary(), "kpi_source": _kpi_source(value)}


def _kpi_source(result: dict[str, Any]) -> str:
    if isinstance(result.get("kpi_source"), str):
        return result["kpi_source"]
    evaluation = result.get("evaluation")
    if isinstance(evaluation, dict) and isinstance(evaluation.get("kpis"), dict):
        return "result.evaluation.kpis"
    return "result.kpis" if isinstance(result.get("kpis"), dict) else "unknown"


@router.get(
    "/progress/{job_id}",
    summary="A job's progress (seed)",
    response_description='progress.json, or {"progress": "No updates yet."}',
)
def seed_progress(job_id: JobId, ctx: Ctx) -> Any:
    ctx.require_job(job_id)
    found, value = ctx.store.read_job_json(ctx.store.progress_path(job_id))
    return value if found else {"progress": "No updates yet."}


@router.get(
    "/logs/{job_id}",
    response_class=PlainTextResponse,
    summary="A job's whole log: container output, then the log file the job wrote (old backend)",
    responses={200: {"content": {"text/plain": {"example": "epoch 1 reward 0.31\n"}}}},
)
def seed_logs(job_id: JobId, ctx: Ctx) -> Response:
    ctx.require_job(job_id)
    log = MergedLog.open(ctx.store, job_id)
    if not log.exists:
        if _active(ctx, job_id):
            return PlainTextResponse(LOGS_NOT_YET + "\n")
        raise ApiError(404, "Logs not available for this job")
    return StreamingResponse(log.stream(), media_type="text/plain; charset=utf-8")


@router.get(
    "/file-logs/{job_id}",
    response_class=PlainTextResponse,
    summary="The log file the job wrote itself (logs/ID.log), without container output (old backend)",
)
def file_logs(job_id: JobId, ctx: Ctx) -> Response:
    ctx.require_job(job_id)
    if log_file(ctx, job_id) is None:
        raise NotFound("Log file not found")
    return whole_log(ctx, job_id)


@router.get("/logs-chunk/{job_id}", summary="A piece of a job's log, for polling (old backend)")
def logs_chunk(
    job_id: JobId,
    ctx: Ctx,
    offset: Annotated[int | None, Query(ge=0, description="Continue from this next_offset.")] = None,
    tail_lines: Annotated[int, Query(ge=1, le=5000, description="Without offset: the last N lines.")] = (
        CHUNK_TAIL_DEFAULT
    ),
    max_bytes: Annotated[int, Query(ge=1024, le=2097152, description="At most this many bytes.")] = CHUNK_MAX_BYTES,
) -> dict[str, Any]:
    ctx.require_job(job_id)
    log = MergedLog.open(ctx.store, job_id)
    try:
        if not log.exists:
            if not _active(ctx, job_id):
                raise ApiError(404, "Logs not available for this job")
            return {
                "job_id": job_id,
                "text": "",
                "next_offset": offset or 0,
                "truncated": False,
                "available": False,
                "message": LOGS_NOT_YET,
            }
        text, next_offset, truncated = log.chunk(offset, tail_lines, max_bytes)
    finally:
        log.close()
    return {
        "job_id": job_id,
        "text": text,
        "next_offset": next_offset,
        "truncated": truncated,
        "available": True,
        "message": None,
    }


def _active(ctx: ApiContext, job_id: str) -> bool:
    status = ctx.store.read_status(job_id)
    return status is None or status.phase not in FINAL_PHASES


@router.post("/stop/{job_id}", response_model=SeedStop, summary="Stop a job (seed): sets spec.suspend=true")
def seed_stop(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    outcome = ctx.specs.set_control(job_id, {"suspend": True}, "stopped")
    message = "stop requested" if outcome.action == "updated" else "already stopped"
    return {"job_id": job_id, "message": message, "action": outcome.action}


@router.get(
    "/job-info/{job_id}",
    summary="A job's job_info (old backend)",
    response_description="What the job and the controller recorded: human name, submitter, config, experiment and "
    "run, image, container, MLflow run and URL, times and durations.",
)
def seed_job_info(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    if not ctx.job_known(job_id):
        raise not_found(job_id)
    info = ctx.store.read_job_info(job_id)
    if info is None:  # a spec written by PUT /jobs that the controller has not seen yet
        found = ctx.specs.find(job_id)
        manifest = found.loaded.manifest if found else None
        info = {"job_id": job_id, "status": SEED_STATUS["Pending"]}
        if manifest is not None:
            info.update(image=manifest.spec.image, labels=dict(manifest.metadata.labels))
    return job_info_view(ctx.store, job_id, info, ctx.index.get(job_id))


@router.get("/job-resolved-config/{job_id}", summary="The config the job was given (old backend)")
def job_resolved_config(job_id: JobId, ctx: Ctx) -> Response:
    ctx.require_job(job_id)
    f = ctx.store.open_job_file(ctx.store.job_dir(job_id) / "config.resolved.yaml")
    if f is None:
        raise NotFound("Resolved config not found")
    with f:
        return Response(f.read(MAX_CONFIG_BYTES + 1)[:MAX_CONFIG_BYTES], media_type=YAML)


@router.delete("/job/{job_id}", summary="Delete a job: stop it, drop it from listings, archive its files")
def delete_job(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    return JobOps(ctx).delete(job_id)


# ---- queue and hosts -------------------------------------------------------------------------------------------
@router.get("/queue", summary="Jobs waiting to run, in order (old backend)")
def queue(ctx: Ctx) -> list[dict[str, Any]]:
    rows = ctx.index.query({"Pending"}).items
    deleted = ctx.store.deleted_jobs()
    rows = [r for r in rows if r["name"] not in deleted]
    infos = {r["name"]: ctx.store.read_job_info(r["name"]) or {} for r in rows}
    return queue_rows(rows, infos)


@router.get("/hosts", summary="This machine, from the controller's heartbeat (old backend)")
def hosts(ctx: Ctx) -> dict[str, Any]:
    return hosts_view(LocalHost.read(ctx.store), ctx.index.query({"Running"}).items)


@router.get("/job-images/versions", summary="Simulator image tags known here (old backend)")
def job_image_versions(
    ctx: Ctx,
    repository: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int | None, Query(ge=1, le=200)] = None,
) -> dict[str, Any]:
    return ctx.simulations.image_versions(repository, limit or 50)


# ---- experiment configs ----------------------------------------------------------------------------------------
@router.get("/experiment-configs", summary="Config files in DATA/configs (old backend)")
def list_configs(ctx: Ctx) -> list[str]:
    return ctx.configs.list()


@router.get("/experiment-config/{file_name:path}", response_class=PlainTextResponse, summary="A config's YAML")
def get_config(file_name: str, ctx: Ctx) -> Response:
    return Response(ctx.configs.read(file_name).text, media_type=YAML)


@router.post("/experiment-config/create", summary="Create a config (409 if the name is taken)")
def create_config(body: ConfigCreate, ctx: Ctx) -> dict[str, Any]:
    name = ctx.configs.write(body.file_name, body.yaml_content.encode(), create=True, replace=False)
    return {"message": "Config saved", "file": name}


@router.put("/experiment-config/{file_name:path}", summary="Replace a config's YAML (404 if it does not exist)")
def update_config(file_name: str, body: ConfigUpdate, ctx: Ctx) -> dict[str, Any]:
    name = ctx.configs.write(file_name, body.yaml_content.encode(), create=False, replace=True)
    return {"message": "Config updated", "file": name}


@router.delete("/experiment-config/{file_name:path}", summary="Delete a config")
def delete_config(file_name: str, ctx: Ctx) -> dict[str, Any]:
    name = ctx.configs.delete(file_name)
    return {"message": f"Config {name} deleted successfully", "file": name}


# ---- simulation data -------------------------------------------------------------------------------------------
@router.post("/simulation-data/index", summary="A job's simulation data files and days (old backend)")
def simulation_data_index(body: SimulationDataIndexRequest, ctx: Ctx) -> dict[str, Any]:
    ctx.require_job(body.job_id)
    return SimulationData(ctx.store, body.job_id).index(body.session)


@router.post("/simulation-data/file", summary="One simulation data file, e.g. a CSV (old backend)")
def simulation_data_file(body: SimulationDataFileRequest, ctx: Ctx) -> Response:
    ctx.require_job(body.job_id)
    content, media_type = SimulationData(ctx.store, body.job_id).file(body.session, body.relative_path)
    return Response(content, media_type=media_type)


# ---- operations ------------------------------------------------------------------------------------------------
@router.post("/ops/jobs/{job_id}/stop", summary="Stop a job (suspend it)")
def ops_stop(job_id: JobId, ctx: Ctx, body: OpsReason | None = None) -> dict[str, Any]:
    return JobOps(ctx).suspend(job_id, (body.reason if body else None) or "ops_stop", "stopped")


@router.post("/ops/jobs/{job_id}/cancel", summary="Cancel a job (suspend it)")
def ops_cancel(job_id: JobId, ctx: Ctx, body: OpsReason | None = None) -> dict[str, Any]:
    return JobOps(ctx).suspend(job_id, (body.reason if body else None) or "ops_canceled", "canceled")


@router.post("/ops/jobs/{job_id}/fail", summary="Fail a job by hand: it is stopped (phase Stopped)")
def ops_fail(job_id: JobId, ctx: Ctx, body: OpsReason | None = None) -> dict[str, Any]:
    return JobOps(ctx).suspend(job_id, (body.reason if body else None) or "ops_failed", "failed")


@router.post("/ops/jobs/{job_id}/requeue", summary="Run a job again (a new run; force for an active job)")
def ops_requeue(job_id: JobId, ctx: Ctx, body: OpsRequeue | None = None) -> dict[str, Any]:
    return JobOps(ctx).requeue(job_id, bool(body and body.force))


@router.post("/ops/queue/cleanup", summary="Clean the queue (force: cancel every waiting job)")
def ops_queue_cleanup(ctx: Ctx, body: OpsForce | None = None) -> dict[str, Any]:
    return JobOps(ctx).cleanup_queue(bool(body and body.force))


@router.post("/ops/jobs/cleanup", summary="Delete every finished job except those kept")
def ops_jobs_cleanup(ctx: Ctx, body: OpsKeep | None = None) -> dict[str, Any]:
    return JobOps(ctx).cleanup_jobs(body.keep if body else None)
