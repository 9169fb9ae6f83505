"""Spec -> container request, and the job_info.json fields: pure mappings, no I/O.

What a job's container looks like from inside (env, mounts under /data) and which labels let a restarted
controller recognise it are decided here, in one place, and tested as tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decide import LABEL_RUN_ID, Create, run_key
from .jobpaths import JOB_SUBDIRS, JOBS_DIR, log_file
from .jobsecurity import capabilities, network_refusal
from .runtime.base import (
    LABEL_ATTEMPT,
    LABEL_GENERATION,
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_LOG_CAPTURE,
    LABEL_MANAGED,
    LABEL_RUN,
    LABEL_SOURCE,
    ContainerInfo,
    ContainerRequest,
    CreateRejected,
    Mount,
)
from .scheduler import LABEL_QUEUE
from .spec import JobManifest
from .status import JobStatus, iso

# mounted read-only over the job's writable folder (appended in place, so the mount holds; status.json is replaced by
# rename, which detaches such a mount: its authoritative copy lives in DATA/.opeva/status instead)
PROTECTED_RECORDS = ("events.jsonl",)
ANNOTATION_JOB_NAME = (
    "opeva/job-name"  # the human name /run-simulation records (OPEVA_JOB_NAME, as the old workers set)
)
STATE_DIR = ".opeva"  # the controller's state (and a git source's checkouts): never seen by a job
GUARDED = (STATE_DIR, "jobs", "archive")  # read-only even when a job gets the shared folder writable
EMPTY_DIR = f"{STATE_DIR}/empty"  # an empty folder, mounted read-only over every folder a job must not see


@dataclass(frozen=True)
class Placement:
    """Where this controller puts containers: its data folder's id and host path, and the default network.

    `guarded` lists what stays read-only under a writable shared folder (folders relative to the data folder that
    exist, and `job_track.json`): the controller's state, the archive, every job folder and the specs when they
    live in the data folder."""

    instance: str
    host_data: Path
    default_network: str | None = None
    guarded: tuple[str, ...] = GUARDED
    # folders (relative to the data folder) hidden from every job: the controller's state and the secrets folder
    hidden: tuple[str, ...] = (STATE_DIR,)
    specs: str | None = None  # the specs folder, when it is a folder of the data folder: hidden unless mountSpecs
    job_user: str | None = None  # --job-user: every job runs as this user unless its spec names one
    networks_allowed: tuple[str, ...] = ()  # besides none, bridge and the default (jobsecurity.network_refusal)
    allow_host_network: bool = False


def data_mounts(where: Placement, name: str, shared_writable: bool, show_specs: bool = False) -> tuple[Mount, ...]:
    """The data folder as a job sees it at /data.

    Read-only, except its own folder /data/jobs/NAME, writable as a whole (the OPEVA simulator creates bundle/,
    checkpoints/, config.resolved.yaml and merges its keys into job_info.json there). Its four standard folders are
    mounts of their own, so the job cannot replace them with links the controller would then follow, and its
    history (events.jsonl) is mounted read-only over it; its status is kept outside the folder (see
    DataStore.status_path): nothing the job writes changes what the controller decides. With `shared_writable` the
    whole folder is writable, as the old workers mounted it, except what `where.guarded` names.

    What a job must not read is covered by an empty read-only folder: the controller's state, the secrets folder
    and, unless `show_specs`, the specs folder (specs may name other jobs' secrets and settings).
    """
    job = f"/data/jobs/{name}"
    host_job = where.host_data / JOBS_DIR / name
    hidden = [*where.hidden, *([where.specs] if where.specs and not show_specs else [])]
    mounts = [Mount(str(where.host_data), "/data", not shared_writable)]
    if shared_writable:
        mounts += [Mount(str(where.host_data / d), f"/data/{d}", True) for d in where.guarded if d not in hidden]
    mounts += [Mount(str(where.host_data / EMPTY_DIR), f"/data/{d}", True) for d in hidden]
    mounts.append(Mount(str(host_job), job, False))
    mounts += [Mount(str(host_job / sub), f"{job}/{sub}", False) for sub in JOB_SUBDIRS]
    mounts += [Mount(str(host_job / rec), f"{job}/{rec}", True) for rec in PROTECTED_RECORDS]
    return tuple(mounts)


def container_request(
    m: JobManifest,
    action: Create,
    where: Placement,
    extra_env: dict[str, str] | None = None,
    source: dict[str, str] | None = None,
    exclusions: tuple[str, ...] = (),
    secret_env: dict[str, str] | None = None,
) -> ContainerRequest:
    """`source`: the run's provenance (git), kept on the container so each attempt's record says where it came from.
    `exclusions`: constraints keeping every job off nodes the controller refuses (one that does not see the data
    folder), after the spec's own. `secret_env`: the values of `spec.secretEnv`, read by the caller (jobsecrets.py);
    they go into the container's environment and nowhere else."""
    spec = m.spec
    name = m.name
    generation = m.generation
    labels = {
        **m.metadata.labels,
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: where.instance,
        LABEL_JOB: name,
        LABEL_GENERATION: generation,
        LABEL_ATTEMPT: str(action.attempt),
        LABEL_RUN: run_key(generation, spec.runId),
    }
    if spec.runId:
        labels[LABEL_RUN_ID] = spec.runId
    if not spec.logCapture:
        labels[LABEL_LOG_CAPTURE] = "false"
    if spec.queue:
        labels[LABEL_QUEUE] = spec.queue
    if source:
        labels[LABEL_SOURCE] = json.dumps(source, separators=(",", ":"), sort_keys=True)
    job_dir = f"/data/jobs/{name}"
    env = {
        **spec.env,
        **(secret_env or {}),
        **(extra_env or {}),
        "OPEVA_JOB_ID": name,
        "OPEVA_JOB_NAME": m.metadata.annotations.get(ANNOTATION_JOB_NAME) or name,
        "OPEVA_JOB_DIR": job_dir,
        "OPEVA_ATTEMPT": str(action.attempt),
    }
    if spec.configFile:
        env["OPEVA_CONFIG"] = f"/data/{spec.configFile}"
    network = spec.network or where.default_network
    refused = network_refusal(network, where.default_network, where.networks_allowed, where.allow_host_network)
    if refused:
        raise CreateRejected(refused)  # the job fails with this message; nothing is created
    if spec.mountSpecs and where.specs is None:
        raise CreateRejected(
            "spec.mountSpecs: the specs folder is not a folder of the data folder (it is a git checkout or lies "
            "elsewhere), so it cannot be shown to the job"
        )
    mounts = data_mounts(where, name, spec.sharedData == "ReadWrite", spec.mountSpecs)
    return ContainerRequest(
        name=action.container,
        image=spec.image,
        labels=labels,
        env=env,
        mounts=tuple(mounts),
        entrypoint=spec.command,
        command=spec.args,
        working_dir=spec.workingDir,
        network=network,
        cpus=spec.resources.cpus,
        memory=spec.resources.memory_bytes,
        gpu_ids=action.gpu_ids,
        stop_grace=spec.terminationGracePeriodSeconds,
        pull_policy=spec.pull_policy,
        init=spec.init,
        cap_add=capabilities(spec.capabilities.add if spec.capabilities else ()),
        user=spec.user or where.job_user,
        placement=tuple(spec.placement.constraints if spec.placement else ()) + exclusions,
    )


def created_info(m: JobManifest, status: JobStatus, attempt: int, info: ContainerInfo) -> dict[str, Any]:
    """job_info.json fields written once an attempt's container exists."""
    return {
        "job_id": m.name,
        "image": m.spec.image,
        "command": m.spec.command,
        "args": m.spec.args,
        "labels": dict(m.metadata.labels),
        "generation": m.generation,
        "run_id": m.spec.runId,
        "attempt": attempt,
        "container_name": info.name,
        "container_id": info.id,
        "created_at": iso(info.created_at),
        "spec_file": status.specFile,
        "log_file": log_file(m.name, m.spec.logCapture),
        **({"source": status.source} if status.source else {}),  # the folder follows git: where the spec came from
    }


def phase_info(status: JobStatus) -> dict[str, Any]:
    """job_info.json fields rewritten when a job's phase or container changes."""
    return {
        "status": status.seed_status,
        "phase": status.phase,
        "reason": status.reason,
        "exit_code": status.exitCode,
        "started_at": iso(status.startedAt),
        "finished_at": iso(status.finishedAt),
        "submitted_at": iso(status.submittedAt),
    }


def phase_info_changed(old: JobStatus | None, new: JobStatus) -> bool:
    return old is None or (old.phase, old.containerId, old.seed_status) != (new.phase, new.containerId, new.seed_status)
