"""`opeva stop|resume|rerun|delete`: one job by name, or a group (`--all`, `-l`) after confirmation."""

from __future__ import annotations

import sys

import click

from .errors import CliError
from .http import ApiClient, ClientError, Unreachable
from .options import complete_job_names, parse_selector, selector_option, with_client


def _targets(client: ApiClient, names: tuple[str, ...], all_: bool, selectors: tuple[str, ...]) -> list[str] | None:
    """The named jobs, or (None when names were given) the group --all / -l selects."""
    if names and (all_ or selectors):
        raise click.UsageError("give job names, or --all / -l KEY=VALUE for a group, not both")
    if not names and not (all_ or selectors):
        raise click.UsageError("give a job name, or --all / -l KEY=VALUE for a group")
    if names:
        return None
    parse_selector(selectors)
    return [row["name"] for row in client.list_jobs(labels=list(selectors))]


def _confirm(verb: str, targets: list[str], yes: bool) -> None:
    if yes:
        return
    count = f"{len(targets)} job{'s' if len(targets) != 1 else ''}"
    if not sys.stdin.isatty():
        raise CliError(
            f"refusing to {verb} {count} without confirmation: stdin is not a terminal; pass --yes to confirm"
        )
    shown = ", ".join(targets[:20]) + (f", ... ({len(targets) - 20} more)" if len(targets) > 20 else "")
    click.echo(f"This will {verb} {count}: {shown}", err=True)
    if not click.confirm(f"{verb.capitalize()} {count}?", default=False, err=True):
        raise CliError("not confirmed; nothing changed")


def _control_command(verb: str, summary: str, done: str, unchanged: str, examples: str) -> click.Command:
    short = summary.split(":")[0].split(".")[0] + "."

    @click.command(verb, help=f"{summary}\n\n\b\nExamples:\n{examples}", short_help=short)
    @click.argument("names", nargs=-1, shell_complete=complete_job_names)
    @click.option("--all", "all_", is_flag=True, help=f"{verb.capitalize()} every job (with -l: every matching job).")
    @selector_option
    @click.option(
        "-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed for groups without a terminal)."
    )
    @with_client
    def command(client: ApiClient, names: tuple[str, ...], all_: bool, selectors: tuple[str, ...], yes: bool) -> None:
        group = _targets(client, names, all_, selectors)
        if group is not None:
            if not group:
                click.echo("No jobs match.", err=True)
                return
            _confirm(verb, group, yes)
        failed = 0
        for name in group if group is not None else names:
            try:
                result = client.control(name, verb)
            except Unreachable:
                raise
            except ClientError as err:
                if group is not None and err.status == 404:
                    click.echo(f"job/{name} skipped: no spec file", err=True)
                    continue
                failed += 1
                click.echo(f"error: job/{name}: {err.message}", err=True)
                continue
            if result.get("action") == "unchanged":
                click.echo(f"job/{name} unchanged ({unchanged})")
            elif verb == "rerun":
                click.echo(f"job/{name} {done} (runId {result.get('runId')})")
            else:
                click.echo(f"job/{name} {done}")
        if failed:
            raise CliError(f"{failed} job{'s' if failed != 1 else ''} could not be {done}")

    return command


stop_cmd = _control_command(
    "stop",
    "Stop jobs: set spec.suspend=true; the controller stops the container (SIGTERM, grace, SIGKILL). "
    "The record and artifacts stay; `opeva resume` runs the job again.",
    "stopped",
    "already suspended",
    "  opeva stop ppo-seed-42\n  opeva stop -l experiment=citylearn --yes\n  opeva stop --all",
)
resume_cmd = _control_command(
    "resume",
    "Resume stopped jobs: set spec.suspend=false; each runs again as a new attempt.",
    "resumed",
    "not suspended",
    "  opeva resume ppo-seed-42\n  opeva resume -l experiment=citylearn --yes",
)
rerun_cmd = _control_command(
    "rerun",
    "Run jobs again with the same definition: set a new spec.runId (and suspend=false). A finished job "
    "runs once more; a running attempt is stopped first.",
    "rerun requested",
    "",
    "  opeva rerun ppo-seed-42\n  opeva rerun -l sweep=lr --yes",
)
delete_cmd = _control_command(
    "delete",
    "Delete jobs' spec files. The controller stops a running container and keeps the record "
    "(phase Stopped, reason SpecDeleted) and the artifacts; `opeva apply` brings a job back.",
    "deleted",
    "",
    "  opeva delete ppo-seed-42\n  opeva delete -l experiment=old --yes\n  opeva delete --all",
)
