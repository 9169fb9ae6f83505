"""`POST /run-simulation` as the OPEVA clients send it, turned into a spec file like any other.

The old backend's rules, kept: a config named by `config_path` (`ppo.yaml`, `configs/ppo.yaml`) is looked up in
DATA/configs/; an inline `config` is saved there under `save_as` first; dataset paths in the config are rewritten to the
container's `/data/...` and the job is given that copy (`jobs/ID/config.resolved.yaml`); the image is
`<simulator repository>:<image_tag>`; the human `job_name`, `submitted_by` and the config's experiment and run names are
recorded (spec annotations and job_info.json), never turned into environment variables.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.spec import ENV_NAME_RE, MAX_NAME
from controller.status import iso, utcnow
from controller.store import DataStore, atomic_write_bytes

from .configs import ConfigFolder, render_config
from .errors import CannotRunHere, InvalidInput, NotFound
from .hosts import LocalHost

CONTAINER_DATA = "/data"
DEFAULT_SIMULATOR_IMAGE = "calof/opeva_simulator"
SEED_STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL when a simulation is stopped, as the old backend gave
ANNOTATION_PREFIX = "opeva/"
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
PROFILES = ("auto", "gpu", "cpu")


def seed_name(job_name: str | None) -> str:
    """A DNS-1123 name from a free-form job name plus a random suffix, so repeated launches never collide."""
    base = re.sub(r"[^a-z0-9]+", "-", (job_name or "").lower()).strip("-")
    base = base[: MAX_NAME - 9].strip("-") or "sim"
    return f"{base}-{secrets.token_hex(4)}"


# ---- the config's own words ---------------------------------------------------------------------------------------
def experiment_identity(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(experiment, run) as the simulator names them: `metadata.experiment_name` / `metadata.run_name`, else the
    legacy `experiment.name` / `experiment.run_name`; None where the config names none."""

    def text(section: Any, key: str) -> str | None:
        value = section.get(key) if isinstance(section, dict) else None
        return str(value).strip() or None if value is not None else None

    meta, legacy = config.get("metadata"), config.get("experiment")
    experiment = text(meta, "experiment_name") or text(legacy, "name")
    run = text(meta, "run_name") or text(legacy, "run_name")
    return experiment, run


def container_path(value: str, host_roots: list[tuple[str, str]]) -> str:
    """A dataset path as the container sees it: `./datasets/X` and host paths under the data folder -> `/data/...`."""
    raw = value.strip()
    normalized = raw.replace("\\", "/")
    if normalized == CONTAINER_DATA or normalized.startswith(CONTAINER_DATA + "/"):
        return raw
    for host_root, mapped in host_roots:
        host_root = host_root.rstrip("/")
        if host_root and (normalized == host_root or normalized.startswith(host_root + "/")):
            return mapped + normalized[len(host_root) :]
    relative = normalized[2:] if normalized.startswith("./") else normalized
    relative = relative.lstrip("/")
    if relative == "datasets" or relative.startswith("datasets/"):
        return f"{CONTAINER_DATA}/{relative}"
    return raw


def resolve_dataset_paths(config: dict[str, Any], host_roots: list[tuple[str, str]]) -> tuple[dict[str, Any], bool]:
    """The old backend's `_resolve_runtime_config`: `simulator.dataset_path` made a container path, or derived
    from `simulator.dataset_name` (`/data/datasets/NAME/schema.json`). Returns (config, changed); the input stays."""
    resolved = copy.deepcopy(config)
    simulator = resolved.get("simulator")
    if not isinstance(simulator, dict):
        return resolved, False
    path, name = simulator.get("dataset_path"), simulator.get("dataset_name")
    if isinstance(path, str) and path.strip():
        new = container_path(path, host_roots)
        if new != path:
            simulator["dataset_path"] = new
            return resolved, True
        return resolved, False
    if isinstance(name, str) and name.strip():
        simulator["dataset_path"] = f"{CONTAINER_DATA}/datasets/{name.strip()}/schema.json"
        return resolved, True
    return resolved, False


# ---- the request ----------------------------------------------------------------------------------------------------
def image_for(image: str | None, tag: str | None, repository: str) -> tuple[str, str | None]:
    """(image reference, tag): a full `image` wins; else `<repository>:<image_tag or latest>`, the tag checked."""
    if image is not None:
        image = image.strip()
        if not image or any(ch.isspace() for ch in image) or len(image) > 512:
            raise InvalidInput("image must be an image reference without spaces (at most 512 characters)")
        return image, None
    tag = (tag or "").strip() or "latest"
    if not _TAG_RE.match(tag):
        raise InvalidInput(f"image_tag {tag!r} is not a tag (letters, digits, '_', '.', '-'; no '/', ':' or '@')")
    return f"{repository}:{tag}", tag


def gpus_for(profile: str | None, gpus: int | None, host: LocalHost, target: str | None = None) -> int:
    """GPUs for the job: an explicit count; `cpu` none; `gpu` all of this host's (none is an error); else all it has,
    as the old workers gave the simulator every GPU. On Swarm "this host" is the target node, or the whole cluster."""
    available = len(host.gpus_for_target(target))
    if gpus is not None:
        if gpus > available:
            raise CannotRunHere(f"the job asks for {gpus} GPUs; this host has {available}")
        return gpus
    wanted = (profile or "auto").strip().lower() or "auto"
    if wanted not in PROFILES:
        raise InvalidInput(f"target_worker_profile {profile!r} is not one of {', '.join(PROFILES)}")
    if wanted == "cpu":
        return 0
    if wanted == "gpu" and not available:
        raise CannotRunHere("target_worker_profile 'gpu' asks for GPUs, and this host has none; use 'cpu' or 'auto'")
    return available


def env_from_extras(extra: dict[str, Any]) -> dict[str, str]:
    """Unknown request keys become environment variables named after the key in upper case (this service's own
    extension; the old backend refused unknown keys)."""
    env: dict[str, str] = {}
    for key, value in extra.items():
        var = key.upper()
        if not ENV_NAME_RE.match(var):
            raise InvalidInput(f"parameter {key!r} cannot be an environment variable name (letters, digits, '_')")
        if value is None:
            continue
        if isinstance(value, str):
            env[var] = value
        elif isinstance(value, (bool, int, float, list, dict)):
            env[var] = json.dumps(value)
        else:
            raise InvalidInput(f"parameter {key!r} has a value that cannot be passed as an environment variable")
    return env


@dataclass(frozen=True)
class SimulationRequest:
    """What a client asked for, already typed (the route's model gives this)."""

    config_path: str | None = None
    config_file: str | None = None
    config: dict[str, Any] | None = None
    save_as: str | None = None
    overwrite: bool = False
    job_name: str | None = None
    submitted_by: str | None = None
    image: str | None = None
    image_tag: str | None = None
    target_host: str | None = None
    target_worker_profile: str | None = None
    gpus: int | None = None
    deucalion_options: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Submission:
    name: str
    document: dict[str, Any]  # the spec file's content
    info: dict[str, Any]  # the first job_info, as the old backend wrote it at submission
    resolved_config: bytes | None  # jobs/NAME/config.resolved.yaml, when dataset paths were rewritten
    saved_config: tuple[str, bytes, bool] | None  # (name, text, overwrite): an inline config to save first


class Simulations:
    """Plans and writes `/run-simulation` submissions."""

    def __init__(
        self,
        store: DataStore,
        configs: ConfigFolder,
        repository: str,
        host_data: Path | None = None,
        tags: tuple[str, ...] = (),
    ):
        self.store = store
        self.configs = configs
        self.repository = repository
        self.tags = tags
        roots = [(str(store.root / "datasets"), f"{CONTAINER_DATA}/datasets"), (str(store.root), CONTAINER_DATA)]
        if host_data is not None:
            roots[:0] = [(str(host_data / "datasets"), f"{CONTAINER_DATA}/datasets"), (str(host_data), CONTAINER_DATA)]
        self.host_roots = roots

    def plan(self, req: SimulationRequest, host: LocalHost) -> Submission:
        target = host.check_target(req.target_host)
        config_name, config, saved = self._config(req)
        env = env_from_extras(req.extra or {})
        image, tag = image_for(req.image, req.image_tag, self.repository)
        gpus = gpus_for(req.target_worker_profile, req.gpus, host, target)
        experiment, run = experiment_identity(config)
        job_name = (req.job_name or "").strip() or f"{experiment or 'UnnamedExperiment'}-{run or 'UnnamedRun'}"
        name = seed_name(req.job_name if (req.job_name or "").strip() else None)
        resolved, changed = resolve_dataset_paths(config, self.host_roots)
        runtime_config = f"jobs/{name}/config.resolved.yaml" if changed else f"configs/{config_name}"
        spec: dict[str, Any] = {
            "image": image,
            "args": ["--config", f"{CONTAINER_DATA}/{runtime_config}", "--job_id", name],
            "configFile": runtime_config,
            "logCapture": False,
            "sharedData": "ReadWrite",  # as the old workers mounted it: the simulator creates /data/mlflow/mlruns
            "terminationGracePeriodSeconds": SEED_STOP_GRACE,
        }
        if gpus:
            spec["resources"] = {"gpus": gpus}
        placement = host.placement_for(target)  # Swarm: target_host is the node the job must run on
        if placement:
            spec["placement"] = {"constraints": placement}
        if env:
            spec["env"] = env
        # The controller's MLflow run must be the one the job's set_experiment() + start_run() resumes; with no
        # experiment name in the config the job's experiment cannot be known, so no run is opened for it.
        spec["mlflow"] = (
            {"experiment": experiment, **({"runName": run} if run else {})} if experiment else {"enabled": False}
        )
        info: dict[str, Any] = {
            "job_id": name,
            "job_name": job_name,
            "config_path": f"configs/{config_name}",
            "target_host": target,
            "experiment_name": experiment or "UnnamedExperiment",
            "run_name": run or "UnnamedRun",
            "submitted_by": (req.submitted_by or "").strip() or None,
            "image": image,
            "image_tag": tag,
            "deucalion_options": req.deucalion_options or None,
            "target_worker_profile": req.target_worker_profile,
            "gpus": gpus,
            "status": "queued",
            "submitted_at": iso(utcnow()),
        }
        annotations = {
            f"{ANNOTATION_PREFIX}{key.replace('_', '-')}": value if isinstance(value, str) else json.dumps(value)
            for key, value in info.items()
            if key not in ("job_id", "status", "submitted_at", "image", "gpus") and value is not None
        }
        labels = {"submitted-via": "run-simulation"}
        document = {
            "apiVersion": "opeva/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": spec,
        }
        text = yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True).encode() if changed else None
        return Submission(name, document, info, text, saved)

    def image_versions(self, repository: str | None, limit: int) -> dict[str, Any]:
        """Tags offered for the simulator image. The old backend asked Docker Hub; this service does not reach out to
        registries from the API, so it offers `latest` and the tags named in $OPEVA_SIMULATOR_TAGS."""
        repo = (repository or self.repository).strip()
        names = ["latest"] + [t for t in self.tags if t != "latest"]
        tags = [{"name": n, "last_updated": None, "digest": None, "deucalion_ready": False} for n in names[:limit]]
        return {"repository": repo, "tags": tags, "count": len(tags), "cached": True, "fetched_at": None}

    def write_job_files(self, sub: Submission) -> None:
        """The job's first files, before its spec: job_info.json (so /job-info answers at once) and the resolved
        config it is given. A crash before the spec is written leaves a folder no listing shows."""
        job_dir = self.store.job_dir(sub.name)
        job_dir.mkdir(parents=True, exist_ok=True)
        if sub.resolved_config is not None:
            atomic_write_bytes(job_dir / "config.resolved.yaml", sub.resolved_config)
        self.store.write_job_info(sub.name, sub.info)

    def _config(self, req: SimulationRequest) -> tuple[str, dict[str, Any], tuple[str, bytes, bool] | None]:
        given = [k for k in ("config_path", "config_file", "config") if getattr(req, k) is not None]
        if len(given) > 1:
            raise InvalidInput(f"give one of config_path, config_file or config, not both ({', '.join(given)})")
        if not given:
            raise InvalidInput(
                "config_path (a file in DATA/configs/, e.g. ppo.yaml) or an inline config (with save_as) is required"
            )
        if req.config is not None:
            if not isinstance(req.config, dict) or not req.config:
                raise InvalidInput("config must be a non-empty JSON object")
            name = (req.save_as or "").strip() or f"{secrets.token_hex(8)}.yaml"
            self.configs.check_name(name)
            text = render_config(req.config, name)
            return name, req.config, (name, text, req.overwrite)
        if req.save_as is not None:
            raise InvalidInput("save_as is only used with an inline config")
        raw = req.config_path if req.config_path is not None else req.config_file
        assert raw is not None
        name = self.configs.name_from_request(raw)
        try:
            _, config = self.configs.load(name)
        except NotFound:
            raise InvalidInput(f"config {name!r} does not exist in DATA/configs") from None
        return name, config, None
