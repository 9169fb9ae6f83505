"""What the client commands share: connection options, label and phase parsing, job-name completion."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from controller.selectors import Selector, parse_label_selector
from controller.settings import ClientSettings
from controller.status import PHASES, normalize_phase

from .config import resolve
from .http import ApiClient


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of job names from the API; nothing (never an error) when it does not answer."""
    try:
        conn = resolve(ctx.params.get("server"), ctx.params.get("token"))
        with ApiClient(conn, timeout=2.0) as client:
            names = [row["name"] for row in client.list_jobs()]
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def connection_options(fn: Callable) -> Callable:
    """--server/-s URL and --token TOKEN, with the help of their declarations in `ClientSettings`."""
    for flags, field, metavar in ((("--token",), "api_token", "TOKEN"), (("--server", "-s"), "server", "URL")):
        info = ClientSettings.model_fields[field]
        fn = click.option(
            *flags,
            field.removeprefix("api_"),
            metavar=metavar,
            default=None,
            help=f"{info.description} [env {info.validation_alias}; else {flags[0].lstrip('-')}: in the config file]",
        )(fn)
    return fn


def with_client(fn: Callable) -> Callable:
    """Adds --server/--token and passes an open ApiClient as the first argument."""

    @connection_options
    @functools.wraps(fn)
    def wrapper(*args: Any, server: str | None, token: str | None, **kwargs: Any) -> Any:
        with ApiClient(resolve(server, token)) as client:
            return fn(client, *args, **kwargs)

    return wrapper


def selector_option(fn: Callable) -> Callable:
    return click.option(
        "-l",
        "--selector",
        "selectors",
        multiple=True,
        metavar="KEY=VALUE",
        help="Only jobs with these labels (KEY=VALUE or KEY; repeatable or comma-separated; all must hold).",
    )(fn)


def parse_phases(values: Iterable[str], param: str = "--phase") -> list[str]:
    phases = []
    for raw in (p for v in values for p in v.split(",") if p.strip()):
        phase = normalize_phase(raw)
        if phase is None:
            raise click.BadParameter(f"{raw!r} is not a phase; use one of {', '.join(PHASES)}", param_hint=param)
        phases.append(phase)
    return phases


def parse_selector(values: Iterable[str]) -> Selector:
    try:
        return parse_label_selector(list(values))
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="-l/--selector") from None


def stdout_bytes(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def quiet_broken_pipe() -> None:
    """`opeva logs x | head`: stop writing without a traceback, and keep Python's exit flush from failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
