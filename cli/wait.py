"""`opeva wait NAME --for PHASE [--timeout S]`: for scripts and CI."""

from __future__ import annotations

import time
from typing import Any

import click

from controller.status import FINAL_PHASES

from .errors import CliError
from .http import ApiClient, Unreachable
from .options import complete_job_names, parse_phases, with_client

EXIT_TIMEOUT = 3


def _current_phase(detail: dict[str, Any]) -> tuple[str | None, bool]:
    """The recorded phase, and whether it already reflects the spec (not a run or a stop the controller has yet
    to act on: a new generation or runId, a suspend or resume not yet carried out)."""
    from .planning import desired_from_detail, plan_job, status_of

    st = status_of(detail)
    if st is None:
        return None, False
    item = plan_job(desired_from_detail(detail), st)
    return st.phase, item is None or item.action in ("unchanged", "invalid")


@click.command("wait")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_job_names)
@click.option(
    "--for",
    "target",
    required=True,
    metavar="PHASE",
    help="The phase to wait for: Succeeded, Failed, Stopped, Running or Pending (or phase=PHASE).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Give up after this long (exit 3). Default: wait as long as it takes.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="How often to look.",
)
@with_client
def wait_cmd(client: ApiClient, names: tuple[str, ...], target: str, timeout: float | None, interval: float) -> None:
    """Wait until jobs reach a phase; for scripts and CI.

    A status that predates the spec (a new generation or runId just applied, a stop or resume not yet carried
    out) does not count. Exit codes: 0 every job reached the phase; 1 a job ended in another final phase
    (Succeeded, Failed, Stopped) and cannot reach it without a change, or an error; 3 timed out.

    \b
    Examples:
      opeva apply -f train.yaml && opeva wait train --for Succeeded --timeout 3600
      opeva wait a b c --for Succeeded
      opeva stop train && opeva wait train --for Stopped --timeout 60
    """
    phase = parse_phases([target.removeprefix("phase=")], "--for")[0]
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(dict.fromkeys(names))
    last: dict[str, str | None] = {}
    seen_server = warned = False
    while True:
        try:
            for name in list(pending):
                detail = client.job(name)
                now_phase, current = _current_phase(detail)
                last[name] = now_phase
                if current and now_phase == phase:
                    click.echo(f"job/{name} condition met: phase={phase}")
                    pending.remove(name)
                elif current and now_phase in FINAL_PHASES:
                    st = detail["status"]
                    why = ": ".join(x for x in (st.get("reason"), st.get("message")) if x)
                    raise CliError(
                        f"job {name} is {now_phase}{f' ({why})' if why else ''}; it will not become "
                        f"{phase} unless its spec changes"
                    )
            seen_server = True
        except Unreachable as err:
            if not seen_server:
                raise
            if not warned:  # a controller restart: keep waiting for it to come back
                click.echo(f"warning: {err.message.splitlines()[0]}; retrying", err=True)
                warned = True
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            states = ", ".join(f"{n} is {last.get(n) or 'not yet recorded'}" for n in pending)
            raise CliError(
                f"timed out after {timeout:g} s waiting for phase {phase} ({states})", exit_code=EXIT_TIMEOUT
            )
        pause = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
        time.sleep(pause)
