"""Job specs: the pydantic model, file loading and the generation hash.

The same code validates a dropped file, an API request and `opeva apply`, so a spec is accepted or
rejected identically wherever it comes from. Unknown fields are errors: a typo must not be silently
ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from .constraints import MAX_CONSTRAINT, parse_constraints

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63
MAX_SPEC_BYTES = 1024 * 1024
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
MAX_EXPANDED_BYTES = 2 * MAX_SPEC_BYTES  # a spec's decoded size, YAML aliases counted each time they are used
MAX_BACKOFF_SECONDS = 86_400.0  # a day: a bigger backoff would leave a job Pending for good
MAX_GRACE_SECONDS = 3_600
# Fields that steer a job without redefining it: changing them never makes a new generation.
CONTROL_FIELDS = frozenset({"suspend", "runId", "ttlSecondsAfterFinished", "priority", "queue"})
# Fields added after specs were written: left out of the generation while they hold their default, so an upgrade
# does not give every existing job a new generation (and rerun finished ones).
LATER_FIELD_DEFAULTS = {
    "imagePullPolicy": None,
    "sharedData": "ReadOnly",
    "init": True,
    "capabilities": None,
    "user": None,
    "placement": None,
    "secretEnv": {},
    "mountSpecs": False,
}
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
# Kubernetes quantities (K/M/G/T decimal, Ki/Mi/Gi/Ti binary) and Docker's (b, k/m/g/t and kb/mb/gb/tb, binary).
_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kb": 2**10,
    "mb": 2**20,
    "gb": 2**30,
    "tb": 2**40,
}

DnsName = Annotated[str, StringConstraints(max_length=MAX_NAME, pattern=NAME_RE.pattern)]
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a file directly in the secrets folder: a plain name, never a path, never hidden (controller/jobsecrets.py)
SecretName = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def parse_memory(value: str | int) -> int:
    """Bytes from `4Gi`, `512M` (Kubernetes: decimal), `512m` (Docker: binary) or `1000000`."""
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(value.strip())
    unit = match.group(2) if match else None
    if unit not in _MEMORY_UNITS:
        unit = unit.lower() if unit and unit.lower() in ("kb", "mb", "gb", "tb") else None
    if not match or unit is None:
        raise ValueError(f"memory {value!r} is not a quantity like 512Mi, 4Gi, 512m (Docker) or 1000000")
    return int(float(match.group(1)) * _MEMORY_UNITS[unit])


class Metadata(_Strict):
    name: DnsName
    labels: dict[str, str] = Field(default_factory=dict)
    # Kubernetes' meaning: free-form notes about the job (who submitted it, its human name, its config) that never
    # select, run or rerun anything. Not part of the generation.
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        reserved = [k for k in labels if k.startswith("opeva.")]
        if reserved:
            raise ValueError(f"label keys starting with 'opeva.' are reserved: {', '.join(sorted(reserved))}")
        return labels


class Resources(_Strict):
    cpus: float | None = Field(default=None, gt=0)
    memory: str | int | None = None
    gpus: int | None = Field(default=None, ge=0)

    @field_validator("cpus", mode="before")
    @classmethod
    def _int_cpus(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("memory")
    @classmethod
    def _valid_memory(cls, v: str | int | None) -> str | int | None:
        if v is not None and parse_memory(v) <= 0:
            raise ValueError("memory must be positive")
        return v

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class Backoff(_Strict):
    initialSeconds: float = Field(default=10.0, gt=0, le=MAX_BACKOFF_SECONDS)
    maxSeconds: float = Field(default=300.0, gt=0, le=MAX_BACKOFF_SECONDS)

    @field_validator("initialSeconds", "maxSeconds", mode="before")
    @classmethod
    def _int_ok(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class FailureRule(_Strict):
    action: Literal["FailJob", "Ignore", "Count"]
    exitCodes: list[int] | None = None
    oomKilled: bool | None = None

    @model_validator(mode="after")
    def _has_matcher(self) -> FailureRule:
        if not self.exitCodes and self.oomKilled is None:
            raise ValueError("a failurePolicy rule needs exitCodes (non-empty) or oomKilled")
        return self


class MlflowSpec(_Strict):
    experiment: str | None = None
    runName: str | None = None
    enabled: bool = True


class Capabilities(_Strict):
    """Linux capabilities a job needs beyond the small default set (controller/jobsecurity.py), and why."""

    add: list[Annotated[str, StringConstraints(pattern=r"^(CAP_)?[A-Za-z_]+$", max_length=40)]] = Field(min_length=1)
    reason: Annotated[str, StringConstraints(min_length=3, max_length=500)]

    @field_validator("add")
    @classmethod
    def _no_all(cls, caps: list[str]) -> list[str]:
        if any(c.upper().removeprefix("CAP_") in ("ALL", "SYS_ADMIN") for c in caps):
            raise ValueError("ALL and SYS_ADMIN are never granted to a job")
        return caps


class PlacementSpec(_Strict):
    """Where the job may run, in Docker Swarm's constraint syntax (all must hold), as compose's
    `deploy.placement.constraints`. On the single-engine runtime they must hold on this machine."""

    constraints: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONSTRAINT)]] = Field(
        default_factory=list, max_length=32
    )

    @field_validator("constraints")
    @classmethod
    def _valid_constraints(cls, constraints: list[str]) -> list[str]:
        parse_constraints(constraints)  # ValueError names the bad one
        return constraints


class JobSpec(_Strict):
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # environment variables whose values are read from files in the secrets folder when an attempt starts (never
    # written into the spec, status, job_info, events or logs): {MLFLOW_TRACKING_TOKEN: mlflow-token}
    secretEnv: dict[str, SecretName] = Field(default_factory=dict)
    workingDir: str | None = None
    configFile: str | None = None
    resources: Resources = Field(default_factory=Resources)
    restartPolicy: Literal["Never", "OnFailure"] = "Never"
    backoffLimit: int | None = Field(default=None, ge=0)
    backoff: Backoff = Field(default_factory=Backoff)
    failurePolicy: list[FailureRule] = Field(default_factory=list)
    interruptionPolicy: Literal["Restart", "Fail"] = "Restart"
    activeDeadlineSeconds: int | None = Field(default=None, gt=0)
    progressDeadlineSeconds: int | None = Field(default=None, gt=0)
    terminationGracePeriodSeconds: int = Field(default=30, ge=0, le=MAX_GRACE_SECONDS)
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    suspend: bool = False
    runId: str | None = None
    priority: int = 0
    queue: str | None = None
    network: str | None = None
    mlflow: MlflowSpec | None = None
    logCapture: bool = True
    # Kubernetes' meaning: Always pulls before each attempt (a moved tag is picked up), IfNotPresent pulls only a
    # missing image, Never never pulls. Default: Always for `:latest` or no tag, IfNotPresent otherwise.
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    # ReadWrite mounts the whole data folder writable, as the old OPEVA workers did (the simulator creates
    # /data/mlflow/mlruns); the specs, the controller's state and other jobs' folders stay read-only.
    sharedData: Literal["ReadOnly", "ReadWrite"] = "ReadOnly"
    init: bool = True  # Docker's init as PID 1, so SIGTERM reaches the job's own process
    capabilities: Capabilities | None = None
    user: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$", max_length=64)] | None = (
        None
    )
    placement: PlacementSpec | None = None
    mountSpecs: bool = False  # true: the specs folder is visible (read-only) in the job's /data; hidden by default

    @field_validator("env", "secretEnv")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not ENV_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable names: {', '.join(bad)}")
        return env

    @model_validator(mode="after")
    def _one_source_per_variable(self) -> JobSpec:
        both = sorted(set(self.env) & set(self.secretEnv))
        if both:
            raise ValueError(f"set in both env and secretEnv: {', '.join(both)}; a variable has one source")
        return self

    @field_validator("runId")
    @classmethod
    def _empty_run_id_is_none(cls, v: str | None) -> str | None:
        return v or None  # "" and unset are the same run

    @field_validator("configFile")
    @classmethod
    def _relative_config(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or ".." in Path(v).parts):
            raise ValueError("configFile must be a path relative to the data folder, without '..'")
        return v

    @property
    def pull_policy(self) -> str:
        if self.imagePullPolicy is not None:
            return self.imagePullPolicy
        return "Always" if image_tag(self.image) in (None, "latest") else "IfNotPresent"

    @property
    def effective_backoff_limit(self) -> int:
        if self.backoffLimit is not None:
            return self.backoffLimit
        return 3 if self.restartPolicy == "OnFailure" else 0


class JobManifest(_Strict):
    apiVersion: Literal["opeva/v1"]
    kind: Literal["Job"]
    metadata: Metadata
    spec: JobSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @cached_property
    def generation(self) -> str:
        return generation_hash(self)  # the manifest is frozen, so once is enough

    def to_document(self) -> dict[str, Any]:
        """The manifest as a plain dict without defaults, suitable for writing back to a file."""
        return self.model_dump(mode="json", exclude_defaults=True)


def generation_hash(manifest: JobManifest) -> str:
    """Hash of the run-defining part of a spec: equal specs always hash equal, control fields excluded.

    Defaults are filled in first, so writing `restartPolicy: Never` explicitly does not rerun a job.
    Labels are excluded too: relabelling a job does not run it again.
    """
    spec = manifest.spec.model_dump(mode="json", exclude=set(CONTROL_FIELDS))
    spec["backoffLimit"] = manifest.spec.effective_backoff_limit  # writing the default out is no change
    for key, default in LATER_FIELD_DEFAULTS.items():
        if spec.get(key) == default:
            del spec[key]
    canonical = json.dumps({"name": manifest.metadata.name, "spec": spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class SpecError(Exception):
    """A spec that cannot be used; the message names the file, field and problem."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(document)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _name_hint(doc: Any) -> str | None:
    if isinstance(doc, dict):
        meta = doc.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str) and is_valid_name(meta["name"]):
            return meta["name"]
    return None


def parse_document(doc: Any, source: str = "request") -> JobManifest:
    """Validate an already-decoded spec document."""
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: a spec must be a mapping with apiVersion, kind, metadata and spec")
    try:
        return JobManifest.model_validate(doc)
    except ValidationError as err:
        raise SpecError(f"{source}: {format_validation_error(err)}", name=_name_hint(doc)) from None


def parse_text(text: str | bytes, source: str = "request", fmt: str = "yaml") -> JobManifest:
    """Decode YAML or JSON text and validate it. JSON is a subset of YAML, but JSON files get JSON errors."""
    if isinstance(text, bytes):
        if b"\x00" in text:
            raise SpecError(f"{source}: binary content, not a YAML or JSON spec")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"{source}: not UTF-8 text") from None
    try:
        if fmt == "json":
            doc = json.loads(text)
        else:
            docs = [
                d
                for d in yaml.load_all(text, Loader=yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)
                if d is not None
            ]
            if len(docs) > 1:
                raise SpecError(f"{source}: holds {len(docs)} documents; one job per file")
            doc = docs[0] if docs else None
            if _expanded_size(doc, MAX_EXPANDED_BYTES) > MAX_EXPANDED_BYTES:  # before anything walks it in full
                raise SpecError(
                    f"{source}: YAML aliases expand it to more than {MAX_EXPANDED_BYTES} bytes; "
                    "write the values out or use fewer aliases"
                )
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SpecError(
            f"{source}: cannot parse {fmt.upper()}: {str(err).splitlines()[0] if str(err) else err}"
        ) from None
    except (RecursionError, ValueError) as err:  # e.g. thousands of nested brackets
        raise SpecError(
            f"{source}: cannot parse {fmt.upper()}: {type(err).__name__}: nested too deeply or malformed"
        ) from None
    if doc is None:
        raise SpecError(f"{source}: empty file")
    return parse_document(doc, source)


def image_tag(image: str) -> str | None:
    """The tag of an image reference (`repo:tag`), None when it has none or is pinned by digest."""
    if "@" in image:
        return "digest"
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _expanded_size(doc: Any, limit: int) -> int:
    """The size of a decoded YAML document with every alias expanded, computed without expanding (an alias is the
    same Python object used again, so sizes are memoised per object); stops counting once past `limit`."""
    sizes: dict[int, int] = {}

    def size(obj: Any) -> int:
        if isinstance(obj, (str, bytes)):
            return len(obj)
        if not isinstance(obj, (list, dict)):
            return 8
        key = id(obj)
        if key not in sizes:
            sizes[key] = 0  # a recursive alias counts once
            items = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
            total = 2
            for item in items:
                total += size(item)
                if total > limit:
                    break
            sizes[key] = total
        return sizes[key]

    return size(doc)


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(NAME_RE.match(name))


def name_from_stem(path: Path) -> str:
    """A DNS-safe job name for a file whose content names no job (the contract: record under the stem)."""
    stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:MAX_NAME].strip("-")
    return stem or "invalid-spec"


def is_spec_file(rel: Path) -> bool:
    """Hidden files and folders, editor swap/backup files and temp files are never specs."""
    return not any(part.startswith(".") for part in rel.parts) and is_spec_name(rel.name)


def is_spec_name(name: str) -> bool:
    """A file name (not its folders) that can hold a spec."""
    if (
        name.startswith(".")
        or name.endswith("~")
        or name.endswith((".swp", ".swx", ".tmp"))
        or (name.startswith("#") and name.endswith("#"))
    ):
        return False
    return name.endswith(SPEC_SUFFIXES)


def walk_spec_files(root: Path | str) -> Iterator[os.DirEntry[str]]:
    """The spec files under `root`, top-down and sorted by name in each folder (a folder's files before its
    subfolders). Hidden files and folders and editor files are skipped; symlinked folders are not followed.
    Plain scandir: a resync over thousands of specs is one cheap walk."""
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                elif is_spec_name(entry.name):
                    yield entry
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def spec_format(path: Path | str) -> str:
    """The format of a spec file, from its suffix: `json` for .json, else `yaml`."""
    return "json" if str(path).endswith(".json") else "yaml"


def text_format(body: bytes, content_type: str | None = None) -> str:
    """`json` or `yaml` for spec text: from a Content-Type when it names one, else from the first character."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype.endswith("json"):
        return "json"
    if "yaml" in ctype:
        return "yaml"
    return "json" if body.lstrip()[:1] in (b"{", b"[") else "yaml"


@dataclass(frozen=True)
class LoadedSpec:
    """One spec file's outcome: a manifest, or an error recorded under `name`."""

    path: Path
    name: str
    manifest: JobManifest | None = None
    error: str | None = None
    digest: str | None = field(default=None, compare=False)  # sha256 of the file's bytes (provenance)


def read_spec_bytes(path: Path | str, shown: str) -> bytes:
    """The bytes of a spec file: a regular file (a FIFO or a device is never opened for reading: the open does not
    block and nothing is read) under MAX_SPEC_BYTES; SpecError otherwise, OSError when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(f"{shown}: not a regular file")
        if st.st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{shown}: file is {st.st_size} bytes; specs are limited to {MAX_SPEC_BYTES}")
        return os.read(fd, MAX_SPEC_BYTES + 1)
    finally:
        os.close(fd)


def load_spec_file(path: Path, root: Path) -> LoadedSpec:
    """Read one spec file safely: size-capped, no symlinks out of the folder, never raises."""
    rel = path.relative_to(root)
    fallback = name_from_stem(path)
    try:
        try:
            real = path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 reports a symlink loop this way
            return LoadedSpec(path, fallback, error=f"{rel}: symlink loop")
        if not real.is_relative_to(root.resolve()):
            return LoadedSpec(path, fallback, error=f"{rel}: symlink points outside the specs folder")
        data = read_spec_bytes(real, str(rel))
    except SpecError as err:
        return LoadedSpec(path, fallback, error=str(err))
    except OSError as err:
        return LoadedSpec(path, fallback, error=f"{rel}: cannot read: {err.strerror or err}")
    try:
        manifest = parse_text(data, str(rel), spec_format(path))
    except SpecError as err:
        return LoadedSpec(path, err.name or fallback, error=str(err), digest=hashlib.sha256(data).hexdigest())
    return LoadedSpec(path, manifest.name, manifest=manifest, digest=hashlib.sha256(data).hexdigest())
