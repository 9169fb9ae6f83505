"""Request and response shapes, as they appear in the OpenAPI document (/docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from controller.spec import MAX_NAME, NAME_RE

JobName = Annotated[
    str,
    Path(
        pattern=NAME_RE.pattern,
        max_length=MAX_NAME,
        examples=["ppo-seed-42"],
        description="The job's name (metadata.name), a DNS-1123 label.",
    ),
]
JobId = Annotated[
    str,
    Path(
        pattern=NAME_RE.pattern,
        max_length=MAX_NAME,
        examples=["ppo-seed-42"],
        description="The job's id, which is its name (a DNS-1123 label).",
    ),
]


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong, in words meant for the user.")
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "job 'ppo-seed-42' not found"}]})


class WriteResult(BaseModel):
    """The outcome of a write: which spec file changed and how. The controller acts on it asynchronously."""

    name: str
    action: Literal["created", "updated", "unchanged", "deleted"]
    specFile: str = Field(description="Path of the spec file, relative to the specs folder.")
    generation: str | None = Field(None, description="Hash of the run-defining part of the spec now in the file.")
    suspend: bool | None = None
    runId: str | None = None
    message: str
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "ppo-seed-42",
                    "action": "created",
                    "specFile": "ppo-seed-42.yaml",
                    "generation": "3f2a9c1d4b5e6f70",
                    "suspend": False,
                    "runId": None,
                    "message": "spec file ppo-seed-42.yaml created",
                }
            ]
        }
    )


class JobListItem(BaseModel):
    """One job in `GET /jobs`: the seed's keys (`job_id`, `status`, `job_info`) and the controller's index row."""

    job_id: str
    name: str
    status: str = Field(description="The seed's word: queued, running, finished, failed, stopped (unknown if none).")
    phase: str | None = Field(description="Pending, Running, Succeeded, Failed or Stopped.")
    reason: str | None
    attempts: int | None
    labels: dict[str, str]
    updated_at: str | None
    container_id: str | None
    container_name: str | None
    queue_position: int | None = Field(None, description="Place among the waiting jobs, 1 = next.")
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    outcomes: dict[str, int] = Field(
        default_factory=dict, description="Attempts by outcome (Succeeded, Failed, ...; Running for one under way)."
    )
    job_info: dict[str, Any] = Field(
        description="The job's job_info.json (image, container, MLflow ids, times, and for /run-simulation jobs "
        "job_name, config_path, submitted_by, experiment_name, run_name, target_host), with durations."
    )
    queue_wait_seconds: float | None = None
    run_duration_seconds: float | None = None
    total_duration_seconds: float | None = None
    requeue_count: int = 0
    attempt_number: int = 0
    job_meta: dict[str, Any] = Field(default_factory=dict, description="The old backend's submission metadata.")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "ppo-seed-42",
                    "name": "ppo-seed-42",
                    "status": "running",
                    "phase": "Running",
                    "reason": None,
                    "attempts": 1,
                    "labels": {"experiment": "citylearn"},
                    "updated_at": "2026-11-27T20:41:00Z",
                    "container_id": "4f1c2e...",
                    "container_name": "opeva-ppo-seed-42-3f2a9c1d-1",
                    "job_info": {"image": "calof/opeva_simulator:latest"},
                }
            ]
        }
    )


class JobMetadata(BaseModel):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)


class JobDetail(BaseModel):
    """Spec and status of one job, Kubernetes style."""

    apiVersion: Literal["opeva/v1"] = "opeva/v1"
    kind: Literal["Job"] = "Job"
    metadata: JobMetadata
    spec: dict[str, Any] | None = Field(
        description="The spec as written in its file (defaults omitted); null when the spec file is gone or invalid."
    )
    specFile: str | None = Field(description="The spec file, relative to the specs folder.")
    specError: str | None = Field(description="Why the spec file cannot be used, if it cannot.")
    status: dict[str, Any] | None = Field(
        description="status.json as the controller wrote it; null before the controller has seen the job."
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "apiVersion": "opeva/v1",
                    "kind": "Job",
                    "metadata": {"name": "ppo-seed-42", "labels": {"experiment": "x"}},
                    "spec": {"image": "calof/opeva_simulator:latest", "args": ["--config", "/data/configs/ppo.yaml"]},
                    "specFile": "ppo-seed-42.yaml",
                    "specError": None,
                    "status": {"name": "ppo-seed-42", "phase": "Running", "reason": None, "attempts": 1},
                }
            ]
        }
    )


class Event(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "time": "2026-11-27T20:41:00Z",
                    "type": "Normal",
                    "reason": "Started",
                    "message": "attempt 1 started",
                    "attempt": 1,
                }
            ]
        },
    )


class ControllerHealth(BaseModel):
    alive: bool = Field(description="True when the controller's heartbeat is fresh.")
    heartbeatAge: float | None = Field(description="Seconds since the last heartbeat; null if there is none.")
    time: str | None
    pid: int | None


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="ok when the controller is alive and Docker answers.")
    api: Literal["ok"] = "ok"
    controller: ControllerHealth
    docker: bool | None = Field(
        description="Whether Docker answered the controller (null: unknown, no fresh heartbeat)."
    )
    phases: dict[str, int] = Field(description="How many jobs are in each phase.")
    jobs: int
    access: dict[str, Any] = Field(
        default_factory=dict,
        description="How the API is protected: mode (loopback-only, token, open-networks, token-or-open-networks), "
        "whether a token is set, the networks that need none, the web origins allowed.",
    )
    source: dict[str, Any] | None = Field(
        default=None, description="The git repository the specs folder follows, in brief (GET /source); null: none."
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "api": "ok",
                    "controller": {"alive": True, "heartbeatAge": 1.2, "time": "2026-11-27T20:41:00Z", "pid": 4242},
                    "docker": True,
                    "phases": {"Pending": 0, "Running": 2, "Succeeded": 5, "Failed": 1, "Stopped": 0},
                    "jobs": 8,
                }
            ]
        }
    )


class RunSimulationRequest(BaseModel):
    """The old backend's launch request, as energaize_ui, ai-manager-ui and the Algorithms scripts send it. Any other
    key is a free parameter, passed to the job as an environment variable named after the key in upper case
    (`{"param1": "a"}` -> `PARAM1=a`)."""

    config_path: str | None = Field(
        None, description="A config in DATA/configs/: `ppo.yaml`, `configs/ppo.yaml` or `/data/configs/ppo.yaml`."
    )
    config_file: str | None = Field(None, description="A config file name in DATA/configs/ (the oldest field).")
    config: dict[str, Any] | None = Field(None, description="An inline config, saved to DATA/configs/ first.")
    save_as: str | None = Field(None, description="File name for the inline config (default: a random name).")
    overwrite: bool = Field(False, description="Replace an existing config named `save_as`.")
    job_name: str | None = Field(None, description="A human name, kept; the job id is derived from it.")
    submitted_by: str | None = Field(None, description="Who submitted the job (shown by the UIs).")
    image: str | None = Field(None, description="Full image reference; default <simulator repository>:<image_tag>.")
    image_tag: str | None = Field(None, description="Tag of the simulator image (default latest).")
    target_host: str | None = Field(
        None, description="This machine's name, or on Swarm the node's (see /hosts); empty/auto for any."
    )
    target_worker_profile: str | None = Field(
        None, description="auto (all of this host's GPUs, if any), gpu (all GPUs, required) or cpu (none)."
    )
    gpus: int | None = Field(None, ge=0, description="An exact number of GPUs instead of a profile.")
    deucalion_options: dict[str, Any] | None = Field(
        None, description="Recorded with the job; Deucalion itself is not a target here."
    )
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"config_path": "ppo.yaml", "job_name": "PPO seed 42", "submitted_by": "ana", "image_tag": "latest"}
            ]
        },
    )


class RunSimulationResponse(BaseModel):
    job_id: str
    job_name: str = Field(description="The human name (the request's job_name, or experiment-run from the config).")
    image: str
    image_tag: str | None
    status: str = Field(description="The seed's word for the job's state (queued right after launch).")
    phase: str
    container_id: str | None = Field(description="Always null here: the controller starts the container.")
    host: str | None
    spec_file: str
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "ppo-seed-42-1a2b3c4d",
                    "job_name": "PPO seed 42",
                    "image": "calof/opeva_simulator:latest",
                    "image_tag": "latest",
                    "status": "queued",
                    "phase": "Pending",
                    "container_id": None,
                    "host": "local",
                    "spec_file": "ppo-seed-42-1a2b3c4d.yaml",
                }
            ]
        }
    )


class SeedStatus(BaseModel):
    job_id: str
    status: str = Field(description="queued, running, finished, failed or stopped.")
    phase: str
    reason: str | None
    message: str | None


class SeedStop(BaseModel):
    job_id: str
    message: str
    action: Literal["updated", "unchanged"]


class ConfigCreate(BaseModel):
    file_name: str = Field(description="A file name in DATA/configs/, ending in .yaml or .yml.")
    yaml_content: str


class ConfigUpdate(BaseModel):
    yaml_content: str


class SimulationDataIndexRequest(BaseModel):
    job_id: str = Field(pattern=NAME_RE.pattern, max_length=MAX_NAME)
    session: str | None = "latest"


class SimulationDataFileRequest(SimulationDataIndexRequest):
    relative_path: str


class OpsReason(BaseModel):
    reason: str | None = None
    force: bool = False


class OpsRequeue(BaseModel):
    force: bool = False
    preferred_host: str | None = None
    require_host: bool | None = None


class OpsForce(BaseModel):
    force: bool = False


class OpsKeep(BaseModel):
    keep: list[str] | None = None
