"""The seed service's endpoints, with its request and response shapes, on top of spec files and the data folder.

`POST /run-simulation` becomes a spec file like any other: a generated DNS-safe name, the image's own entrypoint, and
the seed's arguments `--config /data/<config> --job_id <id>`. The simulators write their own log file, so the spec
sets `logCapture: false`. `GET /jobs` is shared with the resource API (api/routes/jobs.py): its items keep the seed's
keys.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

from controller.spec import MAX_NAME, MAX_SPEC_BYTES
from controller.status import SEED_STATUS
from controller.store import read_json

from ..context import ApiContext, Ctx
from ..errors import ApiError, not_found
from ..jobfiles import read_json_file
from ..models import JobId, RunSimulationRequest, RunSimulationResponse, SeedStatus, SeedStop
from .logs import whole_log

router = APIRouter(tags=["seed (compatibility)"])

SEED_IMAGE = "calof/opeva_simulator"
_KNOWN_KEYS = set(RunSimulationRequest.model_fields)
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def seed_name(job_name: str | None) -> str:
    """A DNS-1123 name from a free-form job name plus a random suffix, so repeated launches never collide."""
    base = re.sub(r"[^a-z0-9]+", "-", (job_name or "").lower()).strip("-")
    base = base[: MAX_NAME - 9].strip("-") or "sim"
    return f"{base}-{secrets.token_hex(4)}"


def _config_rel(ctx: ApiContext, req: RunSimulationRequest) -> str:
    if req.config_path and req.config_file:
        raise ApiError(422, "give config_path or config_file, not both")
    if req.config_path:
        rel = req.config_path.strip().removeprefix("/data/")
    elif req.config_file:
        rel = "configs/" + req.config_file.strip()
    else:
        raise ApiError(422, "config_path (relative to the data folder) or config_file (in DATA/configs/) is required")
    path = Path(rel)
    if not rel or path.is_absolute() or ".." in path.parts or "\x00" in rel:
        raise ApiError(422, f"config {rel!r} must be a path inside the data folder, without '..'")
    full = ctx.store.root / path
    try:
        inside = full.resolve().is_relative_to(ctx.store.root.resolve())
        exists = full.is_file()
    except (OSError, ValueError):
        inside = exists = False
    if not inside:
        raise ApiError(422, f"config {rel!r} points outside the data folder")
    if not exists:
        raise ApiError(422, f"config {rel!r} does not exist in the data folder")
    return path.as_posix()


def _env(extra: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in extra.items():
        var = key.upper()
        if not _ENV_RE.match(var):
            raise ApiError(422, f"parameter {key!r} cannot be an environment variable name (letters, digits, '_')")
        if value is None:
            continue
        if isinstance(value, str):
            env[var] = value
        elif isinstance(value, (bool, int, float, list, dict)):
            env[var] = json.dumps(value)
        else:
            raise ApiError(422, f"parameter {key!r} has a value that cannot be passed as an environment variable")
    return env


def _mlflow_from_config(path: Path) -> dict[str, str] | None:
    """The seed named MLflow experiment and run from the config's `experiment: {name, run_name}`."""
    try:
        with open(path, "rb") as f:
            config = yaml.safe_load(f.read(MAX_SPEC_BYTES))
    except (OSError, yaml.YAMLError, ValueError):
        return None
    exp = config.get("experiment") if isinstance(config, dict) else None
    if not isinstance(exp, dict):
        return None
    out = {k2: str(exp[k1]) for k1, k2 in (("name", "experiment"), ("run_name", "runName")) if exp.get(k1)}
    return out or None


@router.post("/run-simulation", response_model=RunSimulationResponse, summary="Launch a simulation (seed)")
async def run_simulation(req: RunSimulationRequest, ctx: Ctx) -> dict[str, Any]:
    config = _config_rel(ctx, req)
    env = _env(dict(req.model_extra or {}))
    image = req.image if req.image is not None else f"{SEED_IMAGE}:{req.image_tag or 'latest'}"
    name = seed_name(req.job_name)
    spec: dict[str, Any] = {
        "image": image,
        "args": ["--config", f"/data/{config}", "--job_id", name],
        "configFile": config,
        "logCapture": False,
    }
    if env:
        spec["env"] = env
    mlflow = _mlflow_from_config(ctx.store.root / config)
    if mlflow:
        spec["mlflow"] = mlflow
    labels = {"submitted-via": "run-simulation"}
    doc = {"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": name, "labels": labels}, "spec": spec}
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=4096).encode()
    outcome = await run_in_threadpool(ctx.specs.apply, name, text, "yaml", create_only=True)
    return {
        "job_id": name,
        "job_name": name,
        "status": SEED_STATUS["Pending"],
        "phase": "Pending",
        "container_id": None,
        "host": req.target_host or "local",
        "spec_file": outcome.spec_file,
    }


@router.get("/status/{job_id}", response_model=SeedStatus, summary="A job's status in the seed's words")
def seed_status(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    status = ctx.store.read_status(job_id)
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
        "status": SEED_STATUS.get(status.phase, status.phase.lower()),
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
    }


@router.get(
    "/result/{job_id}",
    summary="A job's result (seed)",
    response_description='result.json, or {"status": "pending", "message": "Result not ready yet."}',
)
def seed_result(job_id: JobId, ctx: Ctx) -> Any:
    ctx.require_job(job_id)
    found, value = read_json_file(ctx.store.job_dir(job_id) / "results" / "result.json", ctx.store.root)
    return value if found else {"status": "pending", "message": "Result not ready yet."}


@router.get(
    "/progress/{job_id}",
    summary="A job's progress (seed)",
    response_description='progress.json, or {"progress": "No updates yet."}',
)
def seed_progress(job_id: JobId, ctx: Ctx) -> Any:
    ctx.require_job(job_id)
    found, value = read_json_file(ctx.store.progress_path(job_id), ctx.store.root)
    return value if found else {"progress": "No updates yet."}


@router.get(
    "/logs/{job_id}",
    response_class=PlainTextResponse,
    summary="A job's whole log file (seed)",
    responses={200: {"content": {"text/plain": {"example": "epoch 1 reward 0.31\n"}}}},
)
def seed_logs(job_id: JobId, ctx: Ctx) -> StreamingResponse:
    ctx.require_job(job_id)
    return whole_log(ctx, job_id)


@router.post("/stop/{job_id}", response_model=SeedStop, summary="Stop a job (seed): sets spec.suspend=true")
def seed_stop(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    outcome = ctx.specs.set_control(job_id, {"suspend": True}, "stopped")
    message = "stop requested" if outcome.action == "updated" else "already stopped"
    return {"job_id": job_id, "message": message, "action": outcome.action}


@router.get(
    "/job-info/{job_id}",
    summary="A job's job_info.json (seed)",
    response_description="Image, container name and id, labels, MLflow ids and run URL, timestamps.",
)
def seed_job_info(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    # job_info.json is written by the controller, not by the job, so it is read like status.json
    info = read_json(ctx.store.job_dir(job_id) / "job_info.json")
    if not isinstance(info, dict):
        if ctx.job_known(job_id):
            raise ApiError(
                404, f"job {job_id!r} has no job_info.json yet (the controller writes it when it starts the job)"
            )
        raise not_found(job_id)
    return info
