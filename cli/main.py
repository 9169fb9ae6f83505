"""The `opeva` command."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import click
import structlog

from controller.capacity import parse_gpu_list, parse_queues
from controller.hostpaths import HostPathError, check_host_paths
from controller.logsetup import configure_logging
from controller.settings import Settings
from controller.spec import parse_memory
from controller.store import LockHeld


def _parsed(parse):
    """A click callback that parses an option's text, turning a ValueError into a usage error."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None

    return callback


def _server_options(command):
    """The options `opeva run` and `opeva api` share: where the data is, where to listen, the token."""
    for option in reversed(
        [
            click.option(
                "--data",
                "data_dir",
                type=click.Path(file_okay=False, path_type=Path),
                envvar="OPEVA_DATA",
                default="./opeva-data",
                show_default=True,
                help="The data folder (specs, job records, logs).",
            ),
            click.option(
                "--specs",
                "specs_dir",
                type=click.Path(file_okay=False, path_type=Path),
                envvar="OPEVA_SPECS",
                help="Specs folder (default DATA/specs), e.g. a git checkout.",
            ),
            click.option("--host", default="127.0.0.1", show_default=True, help="API bind address."),
            click.option("--port", default=8000, show_default=True, type=int, envvar="OPEVA_PORT", help="API port."),
            click.option(
                "--token-file",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                help="File holding the API bearer token (else $OPEVA_API_TOKEN).",
            ),
        ]
    ):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """OPEVA job controller: spec files in a folder become Docker containers, observed and recorded."""


@main.command()
@_server_options
@click.option("--no-api", is_flag=True, help="Run the controller only.")
@click.option("--workers", type=int, help="Parallel reconcile workers (default 4).")
@click.option("--resync", "resync_seconds", type=float, help="Seconds between full resyncs (default 10).")
@click.option("--network", "default_network", help="Docker network for jobs that name none.")
@click.option("--poll-specs", is_flag=True, default=None, help="Poll the specs folder (network shares).")
@click.option(
    "--ttl-succeeded", type=float, help="Seconds after which a succeeded job whose spec is gone is collected."
)
@click.option("--ttl-failed", type=float, help="The same for failed and stopped jobs.")
@click.option(
    "--artifacts",
    type=click.Choice(["keep", "archive", "delete"]),
    help="What collection does with logs/results/progress/outputs (default keep).",
)
@click.option(
    "--cpus",
    type=click.FloatRange(min=0),
    envvar="OPEVA_CPUS",
    help="CPUs jobs may use (default: detected, less --reserve-cpus).",
)
@click.option(
    "--memory",
    callback=_parsed(parse_memory),
    envvar="OPEVA_MEMORY",
    help="Memory jobs may use, e.g. 64Gi (default: detected, less --reserve-memory).",
)
@click.option(
    "--gpus",
    callback=_parsed(parse_gpu_list),
    envvar="OPEVA_GPUS",
    help="GPU device ids jobs may use, e.g. 0,1,2,3, or none (default: asks nvidia-smi).",
)
@click.option(
    "--reserve-cpus",
    type=click.FloatRange(min=0),
    envvar="OPEVA_RESERVE_CPUS",
    help="CPUs kept off the detected figure (default 0).",
)
@click.option(
    "--reserve-memory",
    callback=_parsed(parse_memory),
    envvar="OPEVA_RESERVE_MEMORY",
    help="Memory kept off the detected figure (default 256Mi).",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=0),
    envvar="OPEVA_MAX_RUNNING",
    help="Jobs running at once, all queues together (default: no limit).",
)
@click.option(
    "--queues",
    callback=_parsed(parse_queues),
    envvar="OPEVA_QUEUES",
    help='Queue limits: JSON like {"gpu-long": {"maxRunning": 2}}, or a YAML/JSON file.',
)
@click.option("--mlflow-uri", help="MLflow tracking server (else $MLFLOW_TRACKING_URI); none: MLflow off.")
@click.option("--log-level", default="info", show_default=True)
def run(
    data_dir: Path,
    specs_dir: Path | None,
    host: str,
    port: int,
    no_api: bool,
    token_file: Path | None,
    workers: int | None,
    resync_seconds: float | None,
    default_network: str | None,
    poll_specs: bool | None,
    ttl_succeeded: float | None,
    ttl_failed: float | None,
    artifacts: str | None,
    mlflow_uri: str | None,
    log_level: str,
    **capacity,
) -> None:
    """Run the controller (and the API) in the foreground. Ctrl-C stops the controller, not the jobs.

    \b
    Examples:
      opeva run                              # ./opeva-data, API on 127.0.0.1:8000
      opeva run --data /opt/opeva_shared_data --no-api
      OPEVA_API_TOKEN=secret opeva run --host 0.0.0.0
    """
    configure_logging(log_level)
    log = structlog.get_logger("opeva")
    try:
        settings = Settings.from_env(
            **capacity,
            data_dir=data_dir,
            specs_dir=specs_dir,
            workers=workers,
            resync_seconds=resync_seconds,
            default_network=default_network,
            poll_specs=poll_specs,
            ttl_succeeded=ttl_succeeded,
            ttl_failed=ttl_failed,
            artifacts=artifacts,
            mlflow_uri=mlflow_uri,
        )
    except ValueError as err:  # a malformed OPEVA_* variable
        raise click.ClickException(f"bad setting: {err}") from None
    token = token_file.read_text().strip() if token_file else os.environ.get("OPEVA_API_TOKEN") or None
    if not no_api:
        from api.access import Access
        from api.server import check_bind

        try:  # a malformed OPEVA_OPEN_NETWORKS or OPEVA_CORS_ORIGINS is a bad setting too
            check_bind(host, token, bool(Access.from_env(token).open_networks))
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    try:  # in a container: the data folder's host path must be right, or jobs see an empty /data
        check_host_paths(settings, log)
    except HostPathError as err:
        raise click.ClickException(str(err)) from None

    from controller.runtime.docker import DockerRuntime
    from controller.store import DataStore
    from controller.wiring import build_controller

    store = DataStore.open(settings.data_dir, settings.specs_dir)
    runtime = DockerRuntime(settings.docker_url, instance=store.instance_id())
    if not runtime.ping():
        log.warning(
            "docker_unreachable_at_start",
            message="the Docker engine does not answer; jobs start once it does (is dockerd running?)",
        )
    from controller.tracking import TrackingConfigError, build_hooks

    try:
        hooks = build_hooks(store, runtime, settings.mlflow_uri)
    except TrackingConfigError as err:
        raise click.ClickException(str(err)) from None
    controller = build_controller(settings, runtime, hooks=hooks)
    try:
        controller.start()
    except LockHeld as err:
        raise click.ClickException(str(err)) from None

    server = None
    if not no_api:
        from api.app import create_app
        from api.server import start_in_thread

        app = create_app(controller.store.root, controller.store.specs_dir, token)
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
    controller.stop()
    sys.exit(0)


@main.command("api")
@_server_options
@click.option("--log-level", default="info", show_default=True)
def api_command(
    data_dir: Path, specs_dir: Path | None, host: str, port: int, token_file: Path | None, log_level: str
) -> None:
    """Run the API alone, over a data folder that an `opeva run --no-api` elsewhere controls.

    The API only writes spec files and reads records, so it needs no Docker access.
    """
    configure_logging(log_level)
    token = token_file.read_text().strip() if token_file else os.environ.get("OPEVA_API_TOKEN") or None
    from api.access import Access
    from api.app import create_app
    from api.server import check_bind, serve

    try:
        check_bind(host, token, bool(Access.from_env(token).open_networks))
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    structlog.get_logger("opeva").info("api_listening", url=f"http://{host}:{port}", auth=bool(token))
    serve(create_app(data_dir, specs_dir, token), host, port)


from .commands import register as _register_client_commands  # noqa: E402  (apply, get, logs, plan, ...)

_register_client_commands(main)


if __name__ == "__main__":
    main()
