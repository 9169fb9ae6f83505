"""`opeva get`: the jobs table (or JSON, YAML, names), and `-w`, a live table until Ctrl-C."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import click

from controller.selectors import labels_match
from controller.status import FINAL_PHASES

from .errors import CliError
from .http import ApiClient, ClientError
from .nodes import show_nodes
from .options import complete_job_names, parse_phases, parse_selector, selector_option, with_client


@dataclass
class JobView:
    """What `get` shows of one job: the API's object (spec + status) and the job's progress."""

    detail: dict[str, Any]
    progress: Any = None

    @property
    def name(self) -> str:
        return self.detail["metadata"]["name"]

    @property
    def status(self) -> dict[str, Any]:
        st = self.detail.get("status")
        return st if isinstance(st, dict) else {}

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def as_object(self) -> dict[str, Any]:
        return {**self.detail, "progress": self.progress}


class Fetcher:
    """Loads job views, in parallel; in watch mode, finished jobs that did not change are not fetched again."""

    def __init__(
        self,
        client: ApiClient,
        names: tuple[str, ...],
        phases: list[str],
        selector: list[tuple[str, str | None]],
        raw_selectors: tuple[str, ...],
    ):
        self.client = client
        self.names = names
        self.phases = phases
        self.selector = selector
        self.raw_selectors = raw_selectors
        self.cache: dict[str, tuple[Any, JobView]] = {}
        self.missing: list[str] = []

    def _view(self, name: str, must_exist: bool) -> JobView | None:
        detail = self.client.job(name) if must_exist else self.client.job_or_none(name)
        if detail is None:
            return None
        return JobView(detail, self.client.progress(name))

    def fetch(self) -> list[JobView]:
        self.missing = []
        if self.names:
            views = []
            for name in self.names:
                try:
                    views.append(self._view(name, must_exist=True))
                except ClientError as err:
                    if err.status != 404:
                        raise
                    self.missing.append(err.message)
            views = [v for v in views if v is not None]
            return [
                v
                for v in views
                if (not self.phases or v.phase in self.phases)
                and labels_match(v.detail["metadata"].get("labels") or {}, self.selector)
            ]
        rows = self.client.list_jobs(self.phases, list(self.raw_selectors))
        keys = {row["name"]: (row.get("phase"), row.get("updated_at"), row.get("attempts")) for row in rows}
        todo = [
            row["name"]
            for row in rows
            if not (
                row["name"] in self.cache
                and self.cache[row["name"]][0] == keys[row["name"]]
                and keys[row["name"]][0] in FINAL_PHASES
            )
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            fresh = dict(zip(todo, pool.map(lambda n: self._view(n, must_exist=False), todo), strict=False))
        views = []
        for row in rows:
            name = row["name"]
            view = fresh[name] if name in fresh else self.cache[name][1]
            if view is not None:
                self.cache[name] = (keys[name], view)
                views.append(view)
        return views


def _end_of(st: dict[str, Any]) -> Any:
    if st.get("finishedAt"):
        return st["finishedAt"]
    return None if st.get("phase") in ("Running", "Pending") else st.get("updatedAt")


def table_rows(views: list[JobView], wide: bool, bars: bool) -> list[list[Any]]:
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    from . import render

    at = render.now()
    rows = []
    for v in views:
        st = v.status
        progress: Any = render.progress_text(v.progress)
        pct = render.progress_percent(v.progress)
        if bars and v.phase == "Running" and pct is not None:
            grid = Table.grid(padding=(0, 1))
            grid.add_row(
                ProgressBar(total=100, completed=pct, width=20, complete_style="cyan", finished_style="green"),
                Text(progress),
            )
            progress = grid
        row = [
            v.name,
            render.phase_text(v.phase),
            str(st.get("attempts", "-")) if st else "-",
            progress,
            render.since(st.get("submittedAt"), at),
            render.span(st.get("startedAt"), _end_of(st), at),
        ]
        if wide:
            spec = v.detail.get("spec") or {}
            labels = v.detail["metadata"].get("labels") or {}
            exit_code = st.get("exitCode")
            reason = st.get("reason") or "-"
            if st.get("queuePosition"):
                reason += f" (queue #{st['queuePosition']})"
            row += [
                reason,
                "-" if exit_code is None else str(exit_code),
                spec.get("image") or "-",
                ",".join(f"{k}={labels[k]}" for k in sorted(labels)) or "-",
            ]
        rows.append(row)
    return rows


COLUMNS = ["NAME", "PHASE", "ATTEMPTS", "PROGRESS", "AGE", "DURATION"]
WIDE_COLUMNS = COLUMNS + ["REASON", "EXIT", "IMAGE", "LABELS"]


def _watch(out, fetcher: Fetcher, wide: bool, interval: float) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from . import render

    columns = WIDE_COLUMNS if wide else COLUMNS
    if out.tty:

        def screen(views: list[JobView]):
            stamp = render.now().astimezone().strftime("%H:%M:%S")
            head = Text(
                f"{len(views)} job{'s' if len(views) != 1 else ''} · every {interval:g}s · {stamp} · Ctrl-C to stop",
                style="dim",
            )
            return Group(head, out.table(columns, table_rows(views, wide, bars=True)))

        with Live(screen(fetcher.fetch()), console=out.console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(screen(fetcher.fetch()), refresh=True)
    # piped: the table once, then a row each time a job changes (like `kubectl get -w`)
    shown: dict[str, Any] = {}
    first = True
    while True:
        views = fetcher.fetch()
        changed = []
        for v in views:
            key = (v.phase, v.status.get("reason"), v.status.get("attempts"), render.progress_text(v.progress))
            if shown.get(v.name) != key:
                shown[v.name] = key
                changed.append(v)
        if changed or first:
            text = out.render(out.table(columns, table_rows(changed, wide, bars=False)))
            lines = text.splitlines()
            click.echo("\n".join(lines if first else lines[1:]))
            sys.stdout.flush()
            first = False
        time.sleep(interval)


@click.command("get")
@click.argument("names", nargs=-1, shell_complete=complete_job_names)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "json", "yaml", "name"]),
    default="table",
    show_default=True,
    help="table, wide (more columns), json or yaml (the API's objects plus progress, "
    "sorted keys), name (job/NAME lines).",
)
@selector_option
@click.option(
    "--phase",
    "phases",
    multiple=True,
    metavar="PHASE",
    help="Only jobs in this phase (Pending, Running, Succeeded, Failed, Stopped; repeatable).",
)
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="Keep the table up to date until Ctrl-C (a progress bar per "
    "running job on a terminal; a line per change when piped).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Refresh interval with --watch.",
)
@with_client
def get_cmd(
    client: ApiClient,
    names: tuple[str, ...],
    output: str,
    selectors: tuple[str, ...],
    phases: tuple[str, ...],
    watch: bool,
    interval: float,
) -> None:
    """List jobs, or show the named ones.

    The table shows name, phase, attempts, progress (percent and stage, as the job reports it in
    progress/progress.json), age (since the current run was submitted) and duration (of the current run).

    \b
    Examples:
      opeva get                             # every job
      opeva get ppo-seed-42 -o yaml         # one job: spec, status and progress
      opeva get -l experiment=citylearn --phase Running
      opeva get -o json | jq -r '.items[] | select(.status.phase=="Failed") | .metadata.name'
      opeva get -w                          # live, until Ctrl-C
      opeva get source                      # the git repository the specs follow (opeva run --git)
      opeva get nodes                       # the machines jobs run on (Swarm: every node)
    """
    from .render import Output, dump_json, dump_yaml

    if names == ("source",) and not watch:
        source = client.get_json("/source", ok_missing=True)
        if source is not None:  # else a job named "source"
            _show_source(source, output)
            return
    if names == ("nodes",) and not watch:
        listing = client.get_json("/nodes", ok_missing=True)
        if listing is not None:  # else an API from before nodes, and perhaps a job named "nodes"
            show_nodes(listing, output)
            return
    selector = parse_selector(selectors)
    phase_list = parse_phases(phases)
    if watch and output not in ("table", "wide"):
        raise click.UsageError("--watch shows a table; use it with -o table or -o wide")
    out = Output()
    fetcher = Fetcher(client, names, phase_list, selector, selectors)
    if watch:
        try:
            _watch(out, fetcher, output == "wide", interval)
        except KeyboardInterrupt:
            return
    views = fetcher.fetch()
    for message in fetcher.missing:
        click.echo(f"error: {message}", err=True)
    if output in ("json", "yaml"):
        dump = dump_json if output == "json" else dump_yaml
        if len(names) == 1 and views:
            obj = views[0].as_object()
        else:
            obj = {"apiVersion": "opeva/v1", "kind": "List", "items": [v.as_object() for v in views]}
        if views or not names:
            click.echo(dump(obj), nl=False)
    elif output == "name":
        for v in views:
            click.echo(f"job/{v.name}")
    elif views:
        out.print(
            out.table(WIDE_COLUMNS if output == "wide" else COLUMNS, table_rows(views, output == "wide", bars=False))
        )
    elif not fetcher.missing:
        click.echo("No jobs found.", err=True)
    if fetcher.missing:
        if len(names) == 1:
            sys.exit(1)  # the error is said above
        raise CliError(f"{len(fetcher.missing)} of {len(names)} jobs not found")


def _show_source(source: dict[str, Any], output: str) -> None:
    """`opeva get source`: what the specs folder follows, the last fetch and apply, the last applied revisions."""
    from .render import Output, dump_json, dump_yaml

    if output in ("json", "yaml"):
        click.echo((dump_json if output == "json" else dump_yaml)(source), nl=False)
        return
    out = Output()
    held = source.get("held") or {}
    rows = [
        ["Repository", source.get("repoURL")],
        ["Ref", source.get("ref")],
        ["Path", source.get("path") or "/"],
        ["Applied", f"{source.get('appliedCommit') or '-'} at {source.get('appliedAt') or '-'}"],
        ["Fetched", f"{source.get('lastFetchedCommit') or '-'} at {source.get('lastFetchedAt') or '-'}"],
        ["Attempted", f"{source.get('lastAttemptedCommit') or '-'} (last try {source.get('lastAttemptAt') or '-'})"],
        ["Last error", source.get("lastError") or "-"],
    ]
    if source.get("message"):
        rows.append(["Note", source["message"]])
    if held:
        rows.append(["Held", f"{held.get('commit')}: {held.get('reason')}"])
    out.print(out.table(["SOURCE", ""], [[k, str(v)] for k, v in rows]))
    history = source.get("history") or []
    if history:
        out.print("")
        out.print(out.table(["APPLIED COMMIT", "AT"], [[h.get("commit"), h.get("appliedAt")] for h in history]))
