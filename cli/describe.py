"""`opeva describe NAME`: one job in detail, kubectl style."""

from __future__ import annotations

from typing import Any

import click

from .get import _end_of
from .http import ApiClient
from .options import complete_job_names, with_client


def mlflow_link(info: dict[str, Any] | None) -> str | None:
    """The MLflow run URL from job_info.json (`mlflow_run_url`, or any mlflow key holding a URL)."""
    if not info:
        return None
    if isinstance(info.get("mlflow_run_url"), str):
        return info["mlflow_run_url"]
    for key in sorted(info):
        value = info[key]
        if isinstance(value, dict) and "mlflow" in key.lower():
            for sub in ("run_url", "runUrl", "url"):
                if isinstance(value.get(sub), str):
                    return value[sub]
        if (
            "mlflow" in key.lower()
            and isinstance(value, str)
            and value.startswith(("http://", "https://"))
            and "tracking" not in key.lower()
        ):
            return value
    return None


def _argv(words: list[str], limit: int = 300) -> str:
    """A command line on one line, shell-quoted, newlines shown as \\n."""
    import shlex

    text = shlex.join(words).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@click.command("describe")
@click.argument("name", shell_complete=complete_job_names)
@click.option(
    "--events",
    "n_events",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the last events to show.",
)
@with_client
def describe_cmd(client: ApiClient, name: str, n_events: int) -> None:
    """Show one job in detail: spec summary, status, conditions, attempts, events, progress, result, MLflow.

    \b
    Examples:
      opeva describe ppo-seed-42
      opeva describe ppo-seed-42 --events 50
    """
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    from . import render
    from .planning import desired_from_detail

    detail = client.job(name)
    events = client.events(name, n_events) if n_events else []
    progress = client.progress(name)
    result = client.result(name)
    info = client.job_info(name)
    out = render.Output()
    at = render.now()
    st = detail.get("status") if isinstance(detail.get("status"), dict) else {}
    spec = detail.get("spec")
    labels = detail["metadata"].get("labels") or {}
    parts: list[Any] = []

    def kv(key: str, value: Any, style: str | None = None) -> None:
        text = "-" if value is None or value == "" else str(value)
        parts.append(Text(f"{key + ':':<14}", style="bold" if out.tty else "") + Text(text, style=style or ""))

    def heading(title: str) -> None:
        parts.append(Text(title, style="bold" if out.tty else ""))

    def table(columns: list[str], rows: list[list[Any]]) -> None:
        parts.append(Padding(out.table(columns, rows), (0, 0, 0, 2)))

    kv("Name", name)
    kv("Labels", ", ".join(f"{k}={labels[k]}" for k in sorted(labels)) or None)
    kv("Spec file", detail.get("specFile"))
    if st.get("source"):  # the folder follows a git repository: where this run's spec came from
        src = st["source"]
        kv("Source", f"{src.get('repoURL')} {src.get('ref')} @ {src.get('commit')}")
        kv("Source file", f"{src.get('path')} (sha256 {str(src.get('digest'))[:16]})")
    if detail.get("specError"):
        kv("Spec error", detail["specError"], "red")
    desired = desired_from_detail(detail)
    if spec is not None and desired.manifest is not None:
        m = desired.manifest.spec
        kv("Image", m.image)
        if m.command:
            kv("Command", _argv(m.command))
        if m.args:
            kv("Args", _argv(m.args))
        if m.env:
            kv("Env", ", ".join(f"{k}={m.env[k]}" for k in sorted(m.env)))
        if m.secretEnv:  # the files' names; their values never leave the controller
            kv("Secret env", ", ".join(f"{k} from secret {m.secretEnv[k]}" for k in sorted(m.secretEnv)))
        if m.configFile:
            kv("Config file", m.configFile)
        res = m.resources
        resources = ", ".join(
            f"{k}={v}" for k, v in (("cpus", res.cpus), ("memory", res.memory), ("gpus", res.gpus)) if v is not None
        )
        if resources:
            kv("Resources", resources)
        kv("Restart", f"{m.restartPolicy}, backoffLimit {m.effective_backoff_limit}")
        if m.activeDeadlineSeconds:
            kv("Deadline", f"{m.activeDeadlineSeconds}s")
        kv("Suspend", str(m.suspend).lower())
        if m.runId:
            kv("Run id", m.runId)
        observed = st.get("observedGeneration")
        generation = desired.manifest.generation
        note = "" if observed in (None, generation) else f" (recorded: {observed}; the controller has not caught up)"
        kv("Generation", generation + note)
    elif spec is None and not detail.get("specError"):
        kv("Spec", "none: the spec file was deleted; the record is kept")
    parts.append(Text(""))
    if not st:
        kv("Phase", "not yet recorded (the controller has not seen this job)")
    else:
        kv("Phase", st.get("phase"), render.PHASE_STYLES.get(st.get("phase") or "") if out.tty else None)
        kv("Reason", st.get("reason"))
        if st.get("message"):
            kv("Message", st.get("message"))
        kv("Attempts", st.get("attempts"))
        if st.get("exitCode") is not None:
            kv("Exit code", st.get("exitCode"))
        kv("Container", st.get("containerName"))
        kv("Submitted", render.when(st.get("submittedAt"), at))
        kv("Started", render.when(st.get("startedAt"), at))
        kv("Finished", render.when(st.get("finishedAt"), at))
        kv("Duration", render.span(st.get("startedAt"), _end_of(st), at))
        if st.get("nextAttemptAt"):
            kv("Next attempt", render.when(st.get("nextAttemptAt"), at))
    metrics = progress.get("metrics") if isinstance(progress, dict) else None
    kv(
        "Progress",
        render.progress_text(progress) + (f"  ({render.scalars(metrics)})" if metrics else "")
        if progress is not None
        else None,
    )
    kv(
        "Result",
        render.scalars(result) if isinstance(result, dict) else (None if result is None else str(result)[:200]),
    )
    link = mlflow_link(info)
    if link and out.tty:
        parts.append(Text(f"{'MLflow:':<14}", style="bold") + Text(link, style=f"link {link}"))
    else:
        kv("MLflow", link)
    conditions = st.get("conditions") or []
    if conditions:
        parts.append(Text(""))
        heading("Conditions:")
        table(
            ["TYPE", "STATUS", "REASON", "MESSAGE", "LAST TRANSITION"],
            [
                [
                    c.get("type", "-"),
                    c.get("status", "-"),
                    c.get("reason") or "-",
                    c.get("message") or "-",
                    render.when(c.get("lastTransitionTime"), at),
                ]
                for c in conditions
            ],
        )
    history = (st.get("history") or [])[st.get("runHistoryStart") or 0 :]
    if history:
        parts.append(Text(""))
        heading("Attempts of this run:")
        table(
            ["ATTEMPT", "OUTCOME", "REASON", "EXIT", "STARTED", "DURATION"],
            [
                [
                    str(h.get("attempt")),
                    h.get("outcome") or "-",
                    h.get("reason") or "-",
                    "-" if h.get("exitCode") is None else str(h.get("exitCode")),
                    render.when(h.get("startedAt"), at),
                    render.span(h.get("startedAt"), h.get("finishedAt") or h.get("startedAt"), at),
                ]
                for h in history
            ],
        )
    parts.append(Text(""))
    if events:
        heading(f"Events (last {len(events)}):")
        table(
            ["AGE", "TYPE", "REASON", "MESSAGE"],
            [
                [
                    render.since(e.get("time"), at),
                    Text(e.get("type") or "-", style="yellow" if e.get("type") == "Warning" else ""),
                    e.get("reason") or "-",
                    e.get("message") or "-",
                ]
                for e in events
            ],
        )
    else:
        kv("Events", None)
    out.print(Group(*parts))
