"""The `opeva` command."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import click
import structlog

from controller.hostpaths import HostPathError, check_host_paths
from controller.logsetup import configure_logging
from controller.settings import Settings, SettingsError
from controller.store import LockHeld

from .settingflags import load_settings, setting_options

if TYPE_CHECKING:
    from api.access import Access

SERVER_SETTINGS = ("data_dir", "specs_dir", "host", "port", "token_file", "log_level")
CONTROLLER_SETTINGS = (
    "workers",
    "resync_seconds",
    "default_network",
    "poll_specs",
    "ttl_succeeded",
    "ttl_failed",
    "artifacts",
    "cpus",
    "memory",
    "gpus",
    "reserve_cpus",
    "reserve_memory",
    "max_running",
    "queues",
    "node_settle",
    "mlflow_uri",
    "job_user",
    "secrets_dir",
    "networks_allowed",
    "allow_host_network",
    "runtime",
)
GIT_SETTINGS = (
    "git_url",
    "git_ref",
    "git_path",
    "git_period",
    "git_token_file",
    "git_ssh_key",
    "git_known_hosts",
    "git_allow_prune",
    "git_max_stops",
    "git_webhook_secret_file",
)


def _server_token(settings: Settings) -> str | None:
    try:
        return settings.server_token()
    except SettingsError as err:
        raise click.ClickException(str(err)) from None


def _api_settings(settings: Settings) -> dict[str, Any]:
    """What the API takes from the settings besides the folders and the token."""
    return {
        "simulator_image": settings.simulator_image,
        "host_data_dir": settings.host_data_dir,
        "simulator_tags": settings.simulator_tags,
    }


def _access(settings: Settings, token: str | None) -> Access:
    """Who may call the API without the token (a malformed entry is a bad setting)."""
    from api.access import Access

    try:
        return Access.build(token, settings.cors_origins, settings.open_networks, settings.allowed_hosts)
    except ValueError as err:
        raise click.ClickException(f"bad setting: {err}") from None


def _webhook(settings: Settings, git: Any) -> Any:
    """The webhook receiver for the API: the secret and the git source to wake; None without --git or a secret."""
    if git is None or settings.git_webhook_secret_file is None:
        return None
    from api.webhooks import Webhook

    try:
        secret = settings.git_webhook_secret_file.read_text().strip()
    except OSError as err:
        raise click.ClickException(f"--git-webhook-secret-file: {err.strerror or err}") from None
    if not secret:
        raise click.ClickException(f"--git-webhook-secret-file {settings.git_webhook_secret_file} is empty")
    return Webhook(secret=secret, trigger=git.trigger)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """OPEVA job controller: spec files in a folder become Docker containers, observed and recorded."""


@main.command()
@setting_options(Settings, *SERVER_SETTINGS)
@click.option("--no-api", is_flag=True, help="Run the controller only.")
@setting_options(Settings, *CONTROLLER_SETTINGS)
@setting_options(Settings, *GIT_SETTINGS)
def run(no_api: bool, **flags: Any) -> None:
    """Run the controller (and the API) in the foreground. Ctrl-C stops the controller, not the jobs.

    \b
    Examples:
      opeva run                              # ./opeva-data, API on 127.0.0.1:8000
      opeva run --data /opt/opeva_shared_data --no-api
      OPEVA_API_TOKEN=secret opeva run --host 0.0.0.0
      opeva run --git https://host/lab/experiments.git --git-ref main --git-path specs/
    """
    settings: Settings = load_settings(Settings, flags)
    if settings.git_url and settings.specs_dir:
        raise click.UsageError("--git and --specs exclude each other: with --git the repository is the specs folder")
    configure_logging(settings.log_level)
    log = structlog.get_logger("opeva")
    token = _server_token(settings)
    host, port = settings.host, settings.port
    if not no_api:
        from api.server import check_bind

        try:
            check_bind(host, token, bool(_access(settings, token).open_networks))
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    try:  # in a container: the data folder's host path must be right, or jobs see an empty /data
        check_host_paths(settings, log)
    except HostPathError as err:
        raise click.ClickException(str(err)) from None

    from controller.gitsource import GitError, GitOptions, GitSource, forget_source
    from controller.store import DataStore
    from controller.wiring import build_controller, build_runtime

    git = None
    if settings.git_url:
        git = GitSource(GitOptions.from_settings(settings), settings.data_dir)
        try:
            settings.specs_dir = git.prepare()
        except (GitError, OSError) as err:
            raise click.ClickException(f"cannot set up the git source: {err}") from None
    else:
        forget_source(settings.data_dir)
    store = DataStore.open(settings.data_dir, settings.specs_dir)
    runtime = build_runtime(settings, store.instance_id())
    if not runtime.ping():
        log.warning(
            "docker_unreachable_at_start",
            runtime=settings.runtime,
            message="the Docker engine does not answer; jobs start once it does (is dockerd running?)",
        )
    from controller.tracking import TrackingConfigError, build_hooks

    try:
        hooks = build_hooks(store, runtime, settings.mlflow_uri)
    except TrackingConfigError as err:
        raise click.ClickException(str(err)) from None
    try:
        controller = build_controller(settings, runtime, hooks=hooks, provenance=git.provenance if git else None)
    except SettingsError as err:
        raise click.ClickException(str(err)) from None
    if git is not None:
        git.running, git.current, git.on_applied = controller.running_jobs, controller.specs.names, controller.rescan
    try:
        controller.start()
    except LockHeld as err:
        raise click.ClickException(str(err)) from None
    if git is not None:
        git.start()

    server = None
    if not no_api:
        from api.app import create_app
        from api.server import start_in_thread

        app = create_app(
            controller.store.root,
            controller.store.specs_dir,
            token,
            access=_access(settings, token),
            webhook=_webhook(settings, git),
            **_api_settings(settings),
        )
        try:
            server, _ = start_in_thread(app, host, port)
        except OSError as err:
            controller.stop()
            raise click.ClickException(
                f"{err}; is another `opeva run` using the port? Choose one with --port, "
                "or run the controller alone with --no-api"
            ) from None
        log.info("api_listening", url=f"http://{host}:{port}", auth=bool(token))

    done = threading.Event()

    def _signal(signum, _frame) -> None:
        log.info("signal", signal=signal.Signals(signum).name, message="stopping the controller; jobs keep running")
        done.set()

    signal.signal(signal.SIGINT, _signal)
    signal.signal(signal.SIGTERM, _signal)
    done.wait()
    if server is not None:
        server.should_exit = True
    if git is not None:
        git.stop()
    controller.stop()
    sys.exit(0)


@main.command("api")
@setting_options(Settings, *SERVER_SETTINGS)
def api_command(**flags: Any) -> None:
    """Run the API alone, over a data folder that an `opeva run --no-api` elsewhere controls.

    The API only writes spec files and reads records, so it needs no Docker access.
    """
    settings: Settings = load_settings(Settings, flags)
    configure_logging(settings.log_level)
    token = _server_token(settings)
    host, port = settings.host, settings.port
    from api.app import create_app
    from api.server import check_bind, serve

    try:
        check_bind(host, token, bool(_access(settings, token).open_networks))
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    structlog.get_logger("opeva").info("api_listening", url=f"http://{host}:{port}", auth=bool(token))
    app = create_app(
        settings.data_dir, settings.specs_dir, token, access=_access(settings, token), **_api_settings(settings)
    )
    serve(app, host, port)


from .commands import register as _register_client_commands  # noqa: E402  (apply, get, logs, plan, ...)

_register_client_commands(main)


if __name__ == "__main__":
    main()
