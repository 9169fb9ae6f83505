"""Every setting, declared once: its environment variable, default, help text and (for some) its command-line flag.

A command-line flag wins over the environment, which wins over the default. `cli/settingflags.py` turns the fields
that name a `flag` into click options for `opeva run` and `opeva api`, so a setting is never written twice; the
README's settings table and `.env.example` follow these declarations.

- `Settings`: the controller and the server (`opeva run`, `opeva api`).
- `MlflowSettings`: the MLflow client's details besides the tracking URI (controller/tracking).
- `ClientSettings`: where the client commands find the API (cli/config.py layers the config file under it).

A bad value raises `SettingsError` naming the variable (or the flag) and the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .capacity import parse_gpu_list, parse_queues
from .spec import parse_memory

ARTIFACT_POLICIES = ("keep", "archive", "delete")


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the variable or flag and says why.

    `given` is true when a bad value was passed in (a flag), not read from the environment.
    """

    def __init__(self, message: str, given: bool = False) -> None:
        super().__init__(message)
        self.given = given


def setting(default: Any, env: str, help: str, flag: str | None = None, **constraints: Any) -> Any:
    """A field read from `env` (and settable by its field name in code), with its help and optional flag."""
    return Field(
        default,
        validation_alias=env,
        description=help,
        json_schema_extra={"env": env, "flag": flag},
        **constraints,
    )


_CONFIG = SettingsConfigDict(populate_by_name=True, extra="ignore", env_ignore_empty=True, validate_default=False)


class _Base(BaseSettings):
    model_config = _CONFIG

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """The settings from the environment, with the given (non-None) values winning: flags, or a test's own."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as err:
            raise SettingsError(describe_errors(cls, err), given=_any_given(cls, err)) from None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Self:
        """The settings from `env` only (not the process environment): for tests and for checking a file's values."""
        names = {info.validation_alias: name for name, info in cls.model_fields.items()}
        values = {names[key]: value for key, value in env.items() if key in names and value != ""}
        try:  # every field given, so nothing is taken from the process environment
            return cls(**(_defaults(cls) | values))
        except ValidationError as err:
            raise SettingsError(describe_errors(cls, err)) from None


def _defaults(cls: type[BaseSettings]) -> dict[str, Any]:
    return {name: info.default for name, info in cls.model_fields.items()}


def env_name(cls: type[BaseSettings], field: str) -> str:
    return str(cls.model_fields[field].validation_alias)


def flag_name(cls: type[BaseSettings], field: str) -> str | None:
    extra = cls.model_fields[field].json_schema_extra
    return extra.get("flag") if isinstance(extra, dict) else None  # type: ignore[return-value]


def _any_given(cls: type[BaseSettings], err: ValidationError) -> bool:
    return any(e["loc"] and e["loc"][0] in cls.model_fields for e in err.errors())


def describe_errors(cls: type[BaseSettings], err: ValidationError) -> str:
    """One line per bad value, naming the environment variable (when it came from there) or the flag."""
    by_env = {env_name(cls, name): name for name in cls.model_fields}
    lines = []
    for e in err.errors():
        key = str(e["loc"][0]) if e["loc"] else "?"
        if key in by_env:
            where = key
        else:
            where = flag_name(cls, key) or env_name(cls, key) if key in cls.model_fields else key
        message = str(e["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}={e['input']!r}: {message}" if isinstance(e["input"], str) else f"{where}: {message}")
    return "; ".join(lines)


def _text_parser(parse: Callable[[str], Any]) -> Any:
    """A before-validator that parses a setting given as text (environment or flag) and passes values through."""

    def validate(cls: type, value: Any) -> Any:
        return parse(value) if isinstance(value, str) else value

    return classmethod(validate)


def parse_words(value: str) -> tuple[str, ...]:
    """`a, b,c` -> ("a", "b", "c")."""
    return tuple(w.strip() for w in value.split(",") if w.strip())


def parse_retention(value: str) -> float | None:
    """Days, or None for `0`/`forever`/`never` (archives are never pruned)."""
    if value.strip().lower() in ("0", "forever", "never"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number of days or 'forever', not {value!r}") from None


class ApiTokenSetting(_Base):
    """The API bearer token, shared by the server (`opeva run`, `opeva api`) and the client commands."""

    api_token: str | None = setting(None, "OPEVA_API_TOKEN", "The API bearer token.")


class Settings(ApiTokenSetting):
    """What `opeva run` and `opeva api` read."""

    # where the data is
    data_dir: Path = setting(
        Path("./opeva-data"), "OPEVA_DATA", "The data folder (specs, job records, logs).", "--data"
    )
    specs_dir: Path | None = setting(
        None, "OPEVA_SPECS", "Specs folder (default DATA/specs), e.g. a git checkout.", "--specs"
    )
    secrets_dir: Path | None = setting(
        None,
        "OPEVA_SECRETS_DIR",
        "Folder of the files spec.secretEnv names (default DATA/secrets); never shown to jobs or served.",
        "--secrets-dir",
    )
    host_data_dir: Path | None = setting(
        None,
        "OPEVA_HOST_DATA",
        "The data folder's path on the Docker host, when the controller runs in a container.",
    )
    skip_hostpath_check: bool = setting(
        False, "OPEVA_SKIP_HOSTPATH_CHECK", "Skip the start-up check of the data folder's host path."
    )
    # the API server
    host: str = setting("127.0.0.1", "OPEVA_HOST", "API bind address.", "--host")
    port: int = setting(8000, "OPEVA_PORT", "API port.", "--port", ge=0, le=65535)
    token_file: Path | None = setting(
        None, "OPEVA_TOKEN_FILE", "File holding the API bearer token (else $OPEVA_API_TOKEN).", "--token-file"
    )
    log_level: str = setting("info", "OPEVA_LOG_LEVEL", "Log level: debug, info, warning or error.", "--log-level")
    simulator_image: str | None = setting(
        None,
        "OPEVA_SIMULATOR_IMAGE",
        "Image repository /run-simulation adds image_tag to (default calof/opeva_simulator).",
    )
    simulator_tags: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "OPEVA_SIMULATOR_TAGS", "Simulator image tags /job-images/versions offers besides latest (comma-separated)."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "OPEVA_CORS_ORIGINS", "Web origins allowed to call the API from a browser (comma-separated)."
    )
    open_networks: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "OPEVA_OPEN_NETWORKS", "Networks (CIDRs, comma-separated) whose clients need no token; opt-in."
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = setting(
        (), "OPEVA_ALLOWED_HOSTS", "Host names the API answers to without a token (default: this machine's)."
    )
    # the controller
    workers: int = setting(4, "OPEVA_WORKERS", "Parallel reconcile workers.", "--workers", ge=1)
    resync_seconds: float = setting(10.0, "OPEVA_RESYNC_SECONDS", "Seconds between full resyncs.", "--resync", gt=0)
    default_network: str | None = setting(
        None, "OPEVA_NETWORK", "Docker network for jobs that name none (default: Docker's).", "--network"
    )
    keep_finished_containers: bool = setting(
        False, "OPEVA_KEEP_FINISHED_CONTAINERS", "Keep a finished job's container (for debugging)."
    )
    poll_specs: bool = setting(
        False, "OPEVA_POLL_SPECS", "Poll the specs folder instead of watching it (network shares).", "--poll-specs"
    )
    poll_interval: float = setting(2.0, "OPEVA_POLL_INTERVAL", "Seconds between polls with --poll-specs.", gt=0)
    docker_url: str | None = setting(None, "DOCKER_HOST", "The Docker engine (default: the local socket).")
    runtime: Literal["docker", "swarm"] = setting(
        "docker",
        "OPEVA_RUNTIME",
        "Where jobs run: docker (containers on this engine) or swarm (one service per attempt on a Docker Swarm).",
        "--runtime",
    )
    swarm_host: str | None = setting(
        None,
        "OPEVA_SWARM_HOST",
        "The Swarm manager's Docker API with --runtime swarm (default: DOCKER_HOST, else the local socket).",
    )
    ttl_succeeded: float | None = setting(
        None,
        "OPEVA_TTL_SUCCEEDED",
        "Seconds after which a succeeded job whose spec is gone is collected (default: never).",
        "--ttl-succeeded",
        ge=0,
    )
    ttl_failed: float | None = setting(
        None, "OPEVA_TTL_FAILED", "The same for failed and stopped jobs.", "--ttl-failed", ge=0
    )
    artifacts: Literal["keep", "archive", "delete"] = setting(
        "keep", "OPEVA_ARTIFACTS", "What collection does with logs/results/progress/outputs.", "--artifacts"
    )
    archive_retention_days: float | None = setting(
        30.0,
        "OPEVA_ARCHIVE_RETENTION_DAYS",
        "Days deleted jobs' archives (DATA/archive) are kept; 0 or forever: never pruned.",
        ge=0,
    )
    mlflow_uri: str | None = setting(
        None, "MLFLOW_TRACKING_URI", "MLflow tracking server (http/https); unset: MLflow off.", "--mlflow-uri"
    )
    # capacity (controller/capacity.py): None = detect; a given figure is what jobs get
    cpus: float | None = setting(
        None, "OPEVA_CPUS", "CPUs jobs may use (default: detected, less --reserve-cpus).", "--cpus", ge=0
    )
    memory: int | None = setting(
        None, "OPEVA_MEMORY", "Memory jobs may use, e.g. 64Gi (default: detected, less --reserve-memory).", "--memory"
    )
    gpus: Annotated[tuple[str, ...] | None, NoDecode] = setting(
        None, "OPEVA_GPUS", "GPU device ids jobs may use, e.g. 0,1,2,3, or none (default: asks nvidia-smi).", "--gpus"
    )
    reserve_cpus: float | None = setting(
        None, "OPEVA_RESERVE_CPUS", "CPUs kept off the detected figure (default 0).", "--reserve-cpus", ge=0
    )
    reserve_memory: int | None = setting(
        None, "OPEVA_RESERVE_MEMORY", "Memory kept off the detected figure (default 256Mi).", "--reserve-memory"
    )
    max_running: int | None = setting(
        None,
        "OPEVA_MAX_RUNNING",
        "Jobs running at once, all queues together (default: no limit).",
        "--max-running",
        ge=0,
    )
    queues: Annotated[dict[str, int] | None, NoDecode] = setting(
        None,
        "OPEVA_QUEUES",
        'Queue limits: JSON like {"gpu-long": {"maxRunning": 2}}, or a YAML/JSON file.',
        "--queues",
    )

    # the nodes (controller/nodes.py; Swarm)
    node_settle: float = setting(
        30.0,
        "OPEVA_NODE_SETTLE",
        "Seconds a Swarm node may be down before its jobs are taken as interrupted and run elsewhere.",
        "--node-settle",
        ge=0,
    )
    probe_image: str = setting(
        "busybox:latest",
        "OPEVA_PROBE_IMAGE",
        "Small image (with sh) for the start-up check that every Swarm node sees the data folder; present on each.",
    )
    gpu_resource: str = setting(
        "NVIDIA-GPU",
        "OPEVA_GPU_RESOURCE",
        "The generic resource Swarm nodes advertise their GPUs as (node-generic-resources in daemon.json).",
    )

    # GitOps (controller/gitsource.py): the specs folder follows a repository
    git_url: str | None = setting(
        None,
        "OPEVA_GIT",
        "Follow this git repository (https://, ssh:// or file://) instead of a specs folder.",
        "--git",
    )
    git_ref: str = setting("main", "OPEVA_GIT_REF", "Branch or tag to follow.", "--git-ref")
    git_path: str = setting(
        "", "OPEVA_GIT_PATH", "Specs folder inside the repository (default: its root).", "--git-path"
    )
    git_period: float = setting(30.0, "OPEVA_GIT_PERIOD", "Seconds between fetches (jittered).", "--git-period", gt=0)
    git_token_file: Path | None = setting(
        None,
        "OPEVA_GIT_TOKEN_FILE",
        "File holding an HTTPS token (or USER:PASSWORD) for the repository.",
        "--git-token-file",
    )
    git_ssh_key: Path | None = setting(
        None, "OPEVA_GIT_SSH_KEY", "SSH private key for the repository.", "--git-ssh-key"
    )
    git_known_hosts: Path | None = setting(
        None, "OPEVA_GIT_KNOWN_HOSTS", "known_hosts file for SSH (host keys are always checked).", "--git-known-hosts"
    )
    git_allow_prune: bool = setting(
        False,
        "OPEVA_GIT_ALLOW_PRUNE",
        "Apply commits that remove every spec or stop more than --git-max-stops running jobs.",
        "--git-allow-prune",
    )
    git_max_stops: int = setting(
        10, "OPEVA_GIT_MAX_STOPS", "Running jobs one commit may stop before it is held.", "--git-max-stops", ge=0
    )
    git_webhook_secret_file: Path | None = setting(
        None,
        "OPEVA_GIT_WEBHOOK_SECRET_FILE",
        "File holding the webhook secret (GitHub, Gitea: HMAC-SHA256; GitLab: the token); unset: no webhook.",
        "--git-webhook-secret-file",
    )
    # security (issue 14; controller/jobsecurity.py)
    job_user: str | None = setting(
        None,
        "OPEVA_JOB_USER",
        "Run every job as this user (UID[:GID]) unless its spec names one (default: the image's user).",
        "--job-user",
    )
    networks_allowed: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        "OPEVA_NETWORKS_ALLOWED",
        "Docker networks jobs may name in spec.network besides none, bridge and --network (comma-separated).",
        "--network-allowed",
    )
    allow_host_network: bool = setting(
        False,
        "OPEVA_ALLOW_HOST_NETWORK",
        "Let jobs use spec.network host or container:NAME; a job on the host's network reaches everything on "
        "loopback, the API included.",
        "--allow-host-network",
    )

    _memory = field_validator("memory", "reserve_memory", mode="before")(_text_parser(parse_memory))
    _gpus = field_validator("gpus", mode="before")(_text_parser(parse_gpu_list))
    _queues = field_validator("queues", mode="before")(_text_parser(parse_queues))
    _tags = field_validator(
        "simulator_tags", "cors_origins", "open_networks", "allowed_hosts", "networks_allowed", mode="before"
    )(_text_parser(parse_words))
    _retention = field_validator("archive_retention_days", mode="before")(_text_parser(parse_retention))

    def server_token(self) -> str | None:
        """The API token: the token file's content, else $OPEVA_API_TOKEN; None means no authentication."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip() or None
            except OSError as err:
                raise SettingsError(f"--token-file {self.token_file}: {err.strerror or err}") from None
        return self.api_token


class MlflowSettings(_Base):
    """The MLflow client's details; the tracking URI itself is `Settings.mlflow_uri`."""

    ui_url: str | None = setting(None, "OPEVA_MLFLOW_UI", "Base URL of the MLflow UI for run links (default: the URI).")
    experiment: str = setting(
        "opeva", "OPEVA_MLFLOW_EXPERIMENT", "Experiment of jobs that name none in spec or labels."
    )
    job_uri: str | None = setting(
        None,
        "OPEVA_MLFLOW_JOB_URI",
        "The URI handed to containers, when they reach the server by another address (default: the URI).",
    )
    start_timeout: float = setting(
        2.5, "OPEVA_MLFLOW_START_TIMEOUT", "Seconds an attempt's start may wait for its run.", gt=0
    )
    call_timeout: float = setting(10.0, "OPEVA_MLFLOW_TIMEOUT", "Seconds for one background call.", gt=0)
    mirror_seconds: float = setting(
        5.0, "OPEVA_MLFLOW_MIRROR_SECONDS", "progress.json is mirrored at most this often per job.", gt=0
    )
    retry_max_seconds: float = setting(
        30.0, "OPEVA_MLFLOW_RETRY_MAX_SECONDS", "Longest wait between retries while MLflow is away.", gt=0
    )
    token: str | None = setting(None, "MLFLOW_TRACKING_TOKEN", "Bearer token for MLflow (not passed to jobs).")
    username: str | None = setting(None, "MLFLOW_TRACKING_USERNAME", "Basic-auth user for MLflow.")
    password: str | None = setting(None, "MLFLOW_TRACKING_PASSWORD", "Basic-auth password for MLflow.")
    insecure_tls: bool = setting(False, "MLFLOW_TRACKING_INSECURE_TLS", "Skip MLflow's certificate checks.")


class ClientSettings(ApiTokenSetting):
    """Where the client commands find the API; under these, cli/config.py reads the config file."""

    server: str | None = setting(None, "OPEVA_SERVER", "API address (default http://127.0.0.1:8000).")
    config_file: Path | None = setting(
        None, "OPEVA_CONFIG_FILE", "The client's config file (default $XDG_CONFIG_HOME/opeva/config.yaml)."
    )
    xdg_config_home: Path | None = setting(None, "XDG_CONFIG_HOME", "Where config files live (default ~/.config).")
