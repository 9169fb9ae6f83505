"""`opeva apply -f FILE|DIR|-`: validate locally with the controller's model, then create or update through the API."""

from __future__ import annotations

from typing import Any

import click

from .errors import CliError
from .http import ApiClient, ClientError, Unreachable
from .options import with_client


def _same_spec(manifest, detail: dict[str, Any] | None) -> str:
    """created / configured / unchanged: the local manifest against the server's current spec."""
    from .planning import desired_from_detail

    if detail is None:
        return "created"
    current = desired_from_detail(detail)
    if current.manifest is None:
        return "configured" if current.error else "created"
    same = current.manifest.model_dump(mode="json") == manifest.model_dump(mode="json")
    return "unchanged" if same else "configured"


@click.command("apply")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE|DIR|-",
    help="A spec file, a folder of specs (read recursively, like the specs folder), or - for stdin. Repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Validate and say what would happen; change nothing.")
@with_client
def apply_cmd(client: ApiClient, files: tuple[str, ...], dry_run: bool) -> None:
    """Create or update jobs from spec files.

    Every file is validated first, with the controller's own model; if any is invalid, each one is reported with
    its field errors and nothing is applied. Then each job is sent to the API and reported as created,
    configured (its spec changed) or unchanged, like kubectl.

    \b
    Examples:
      opeva apply -f specs/hello.yaml
      opeva apply -f specs/                 # every spec in the folder
      opeva apply -f specs/ --dry-run       # what would change
      cat job.yaml | opeva apply -f -
    """
    from .inputs import duplicates, read_inputs

    inputs = read_inputs(files)
    problems = [i.error for i in inputs if i.error] + duplicates(inputs)
    if problems:
        for message in problems:
            click.echo(f"error: {message}", err=True)
        bad = len({i.source for i in inputs if i.error}) or len(problems)
        raise CliError(f"{bad} invalid spec file{'s' if bad != 1 else ''} of {len(inputs)}; nothing was applied")
    if not inputs:
        raise CliError(f"no spec files (*.yaml, *.yml, *.json) in {', '.join(files)}")
    failed = 0
    suffix = " (dry run)" if dry_run else ""
    for item in inputs:
        m = item.manifest
        try:
            if dry_run:
                action = _same_spec(m, client.job_or_none(m.name))
            else:
                result = client.apply(m.name, item.body, item.fmt)
                action = {"updated": "configured"}.get(result.get("action"), result.get("action"))
        except Unreachable:
            raise
        except ClientError as err:
            failed += 1
            click.echo(f"error: {item.source}: job/{m.name}: {err.message}", err=True)
            continue
        click.echo(f"job/{m.name} {action}{suffix}")
    if failed:
        raise CliError(f"{failed} of {len(inputs)} jobs could not be applied")
