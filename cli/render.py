"""Output for people and for scripts: rich tables and colours on a terminal, plain stable text when piped.

Piped output has no colours, no wrapping and no terminal-width dependence, and each line is right-stripped, so
`opeva get | grep`, `awk` and snapshot tests see the same bytes for the same state. JSON and YAML are emitted with
sorted keys.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from controller.status import parse_iso

PHASE_STYLES = {
    "Pending": "yellow",
    "Running": "cyan",
    "Succeeded": "green",
    "Failed": "bold red",
    "Stopped": "magenta",
}
PLAIN_WIDTH = 100_000  # "never wrap" for piped output

Cell = str | Text | RenderableType


class Output:
    """stdout (or stderr), knowing whether it is a terminal."""

    def __init__(self, stderr: bool = False):
        self.console = Console(stderr=stderr, highlight=False, emoji=False)
        self.tty = self.console.is_terminal

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Table:
        table = Table(
            box=None,
            show_edge=False,
            pad_edge=False,
            padding=(0, 3, 0, 0),
            header_style="bold" if self.tty else None,
            show_header=True,
        )
        for col in columns:
            table.add_column(col, no_wrap=not self.tty, overflow="fold" if self.tty else "ignore")
        for row in rows:
            table.add_row(*[cell if not isinstance(cell, str) else Text(cell) for cell in row])
        return table

    def render(self, renderable: RenderableType) -> str:
        """Plain text of a renderable: no colours, no wrapping, right-stripped lines."""
        buf = io.StringIO()
        Console(
            file=buf,
            width=PLAIN_WIDTH,
            color_system=None,
            force_terminal=False,
            highlight=False,
            emoji=False,
            soft_wrap=False,
        ).print(renderable)
        return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"

    def print(self, renderable: RenderableType | str = "") -> None:
        if isinstance(renderable, str):
            renderable = Text(renderable)
        if self.tty:
            self.console.print(renderable)
        else:
            self.console.file.write(self.render(renderable))
            self.console.file.flush()


def styled(text: str, style: str | None) -> Text:
    return Text(text, style=style or "")


def phase_text(phase: str | None) -> Text:
    return styled(phase or "-", PHASE_STYLES.get(phase or ""))


# ---- times ------------------------------------------------------------------------------------------------------
def now() -> datetime:
    return datetime.now(UTC)


def human_duration(seconds: float | None) -> str:
    """kubectl's short form: 45s, 3m20s, 15m, 5h30m, 20h, 3d4h, 40d, 2y100d."""
    if seconds is None:
        return "-"
    s = int(math.floor(max(seconds, 0)))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    y = d // 365
    if d < 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def since(value: Any, at: datetime | None = None) -> str:
    t = parse_iso(value)
    return "-" if t is None else human_duration(((at or now()) - t).total_seconds())


def span(start: Any, end: Any, at: datetime | None = None) -> str:
    """From start to end, or to now while there is no end; '-' before the start."""
    t0 = parse_iso(start)
    if t0 is None:
        return "-"
    t1 = parse_iso(end) or at or now()
    return human_duration((t1 - t0).total_seconds())


def when(value: Any, at: datetime | None = None) -> str:
    """An absolute time with its age: `2026-11-27T20:41:00Z (3m ago)`."""
    t = parse_iso(value)
    if t is None:
        return "-"
    stamp = t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{stamp} ({since(value, at)} ago)"


# ---- progress ---------------------------------------------------------------------------------------------------
def progress_percent(progress: Any) -> float | None:
    if not isinstance(progress, dict):
        return None
    pct = progress.get("percent")
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not math.isfinite(pct):
        return None
    return min(max(float(pct), 0.0), 100.0)


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def progress_text(progress: Any) -> str:
    """`45% training`, `45%`, `training`, or `-`."""
    if not isinstance(progress, dict):
        return "-"
    parts = []
    pct = progress_percent(progress)
    if pct is not None:
        parts.append(f"{format_number(pct)}%")
    stage = progress.get("stage")
    if isinstance(stage, str) and stage.strip():
        parts.append(" ".join(stage.split())[:40])
    return " ".join(parts) or "-"


def scalars(mapping: Any, limit: int = 8) -> str:
    """`a=1, b=x, c={3 keys}` for a summary line; `-` for nothing."""
    if not isinstance(mapping, dict) or not mapping:
        return "-"
    parts = []
    for key in sorted(mapping, key=str)[:limit]:
        value = mapping[key]
        if isinstance(value, dict):
            text = f"{{{len(value)} keys}}"
        elif isinstance(value, list):
            text = f"[{len(value)} items]"
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
        parts.append(f"{key}={text}")
    if len(mapping) > limit:
        parts.append(f"... ({len(mapping) - limit} more)")
    return ", ".join(parts)


# ---- machine formats --------------------------------------------------------------------------------------------
def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096)
