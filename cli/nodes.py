"""`opeva get nodes`: the machines jobs run on (this one, or a Swarm's nodes) with their state, resources, labels and
running jobs, from GET /nodes."""

from __future__ import annotations

from typing import Any

import click

from controller.capacity import format_bytes

COLUMNS = ["NAME", "ROLE", "STATE", "AVAILABILITY", "CPUS", "MEMORY", "GPUS", "JOBS", "LABELS"]
WIDE_COLUMNS = COLUMNS + ["ID", "DATA FOLDER", "MESSAGE"]


def _labels(node: dict[str, Any]) -> str:
    labels = {**(node.get("engineLabels") or {}), **(node.get("labels") or {})}
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels)) or "-"


def _state(node: dict[str, Any]) -> str:
    state = str(node.get("state") or "?")
    if node.get("lost"):
        state += " (lost)"
    elif not node.get("online", True) and state == "ready":
        state += " (no heartbeat)"
    return state


def _data_folder(node: dict[str, Any]) -> str:
    for cond in node.get("conditions") or []:
        if cond.get("type") == "DataFolder":
            return {"True": "ok", "False": "refused", "Unknown": "unchecked"}.get(cond.get("status"), "?")
    return "-"


def node_rows(items: list[dict[str, Any]], wide: bool) -> list[list[str]]:
    rows = []
    for n in items:
        jobs = n.get("jobs") or []
        row = [
            str(n.get("name") or n.get("id")),
            str(n.get("role") or "-") + (" (leader)" if n.get("leader") and n.get("role") == "manager" else ""),
            _state(n),
            str(n.get("availability") or "-"),
            f"{n.get('cpus') or 0:g}",
            format_bytes(n.get("memory") or 0),
            str(len(n.get("gpus") or [])),
            ",".join(jobs) if jobs else "-",
            _labels(n),
        ]
        if wide:
            conditions = [c.get("message") for c in n.get("conditions") or [] if c.get("status") == "False"]
            row += [str(n.get("id")), _data_folder(n), "; ".join(filter(None, [n.get("message"), *conditions])) or "-"]
        rows.append(row)
    return rows


def show_nodes(listing: dict[str, Any], output: str) -> None:
    from .render import Output, dump_json, dump_yaml

    if output in ("json", "yaml"):
        click.echo((dump_json if output == "json" else dump_yaml)(listing), nl=False)
        return
    items = listing.get("items") or []
    if output == "name":
        for n in items:
            click.echo(f"node/{n.get('name') or n.get('id')}")
        return
    if not items:
        click.echo("No nodes reported yet (is the controller running?).", err=True)
        return
    out = Output()
    out.print(out.table(WIDE_COLUMNS if output == "wide" else COLUMNS, node_rows(items, output == "wide")))
