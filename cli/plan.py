"""`opeva plan [DIR]`: what the controller would do with a folder of specs (the verdicts are in `planning.py`)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import click

from .config import resolve
from .errors import CliError
from .http import ApiClient
from .options import connection_options, parse_selector, selector_option

EXIT_PLAN_CHANGES = 2


class _PlanCommand(click.Command):
    """Usage errors exit 1 here, so that exit 2 means only "there are changes"."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            err.exit_code = 1  # type: ignore[misc]  # plan exits 2 for "changes pending", so usage errors exit 1
            raise


@click.command("plan", cls=_PlanCommand)
@click.argument(
    "specs_dir", metavar="[DIR]", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Compare with this data folder's records directly (offline; no API). DIR defaults to DATA/specs.",
)
@click.option(
    "--git",
    "git_ref",
    metavar="REF",
    default=None,
    help="Plan the specs of this commit, branch or tag of the git clone DIR (default .), as `opeva run --git` would.",
)
@click.option("--git-path", default="", metavar="PATH", help="With --git: the specs folder inside the repository.")
@selector_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@connection_options
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    specs_dir: Path | None,
    data_dir: Path | None,
    git_ref: str | None,
    git_path: str,
    selectors: tuple[str, ...],
    output: str,
    server: str | None,
    token: str | None,
) -> None:
    """Say what the controller would do if DIR were its specs folder.

    Compares a folder of specs (a git checkout you are about to push, say) with what is running and recorded,
    through the API or, with --data, straight from a data folder. Per job: start, rerun (new generation or
    runId), stop (spec removed or suspended), unchanged, or invalid (with the controller's error). Nothing is
    changed.

    Exit codes: 0 no changes; 2 changes (start, rerun or stop); 1 an invalid spec or an error.

    \b
    Examples:
      opeva plan ./specs                    # against the server
      opeva plan ./specs --data /opt/opeva_shared_data
      opeva plan --data ./opeva-data        # the live specs folder against its records
      git checkout feature && opeva plan specs/ -l experiment=citylearn || echo "changes or errors"
      opeva plan --git origin/main --git-path specs ~/experiments   # a commit of a local clone, against the server
    """
    from controller.logsetup import configure_logging

    from . import planning
    from .render import Output, dump_json, styled

    configure_logging("warning")  # the scanner's warnings (two files naming one job) go to stderr
    selector = parse_selector(selectors)
    if git_ref is not None:
        tree = ctx.with_resource(tempfile.TemporaryDirectory(prefix="opeva-plan-"))
        specs_dir = commit_tree(specs_dir or Path("."), git_ref, git_path, Path(tree))
    if specs_dir is None:
        specs_dir = data_dir / "specs" if data_dir is not None else Path(".")
        if not specs_dir.is_dir():
            raise CliError(f"no specs folder at {specs_dir}; name one: opeva plan DIR")
    desired = planning.load_desired(specs_dir, data_dir)
    if data_dir is not None:
        records = planning.records_offline(data_dir)
    else:
        with ApiClient(resolve(server, token)) as client:
            records = planning.records_via_api(client, desired, list(selectors))
    items = planning.make_plan(desired, records, selector)
    invalid = any(i.action == "invalid" for i in items)
    changes = any(i.action in planning.CHANGES for i in items)
    if output == "json":
        counts = {a: sum(1 for i in items if i.action == a) for a in planning.ACTIONS}
        click.echo(dump_json({"items": [i.as_dict() for i in items], "summary": counts, "changes": changes}), nl=False)
    else:
        out = Output()
        colours = {"start": "green", "rerun": "yellow", "stop": "red", "unchanged": "dim", "invalid": "bold red"}
        if items:
            out.print(
                out.table(
                    ["NAME", "ACTION", "DETAIL"],
                    [[i.name, styled(i.action, colours[i.action]), i.detail] for i in items],
                )
            )
            out.print("")
        out.print(planning.summary(items))
    ctx.exit(1 if invalid else EXIT_PLAN_CHANGES if changes else 0)


def commit_tree(clone: Path, ref: str, path: str, into: Path) -> Path:
    """The specs folder of commit `ref` of the git clone, written out under `into` (`git archive`, nothing checked
    out in the clone itself). Only regular files and folders are written, as the controller's checkout would hold."""
    inside = path.strip("/")
    cmd = ["git", "-C", str(clone), "archive", "--format=tar", ref, *([inside] if inside else [])]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise CliError(f"cannot run git: {err}") from None
    if out.returncode != 0:
        raise CliError(f"git archive {ref} in {clone}: {out.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(into, filter="data")
    folder = into / inside if inside else into
    folder.mkdir(parents=True, exist_ok=True)
    return folder
