"""What the dashboard shows, computed from the records: list rows, sorting, text filters, durations, charts.

Pure functions over the index rows and parsed files; the routes (api/ui/routes.py) read, these shape, the templates
render (autoescaped). Nothing here writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.status import epoch

# phase -> (icon, css class); the icon and the word are always shown, so the colour is never the only cue
PHASE_LOOK = {
    "Pending": ("\u25d4", "pending"),  # circle with a quarter filled
    "Running": ("\u25b6", "running"),  # play
    "Succeeded": ("\u2714", "succeeded"),  # check mark
    "Failed": ("\u2716", "failed"),  # heavy x
    "Stopped": ("\u25a0", "stopped"),  # square
}
OUTCOME_LOOK = {
    "Succeeded": ("\u2714", "succeeded"),
    "Failed": ("\u2716", "failed"),
    "Interrupted": ("\u26a0", "pending"),
    "Stopped": ("\u25a0", "stopped"),
    "Ignored": ("\u2013", "stopped"),
    "Running": ("\u25b6", "running"),
}
SORTS = {
    "name": "Name",
    "phase": "Phase",
    "age": "Age",
    "updated": "Last update",
    "attempts": "Attempts",
    "duration": "Duration",
}
PAGE_SIZE = 50


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def human_seconds(seconds: Any) -> str:
    """`45s`, `12m 5s`, `3h 20m`, `2d 4h`; an empty string for unknown."""
    if not _is_number(seconds) or seconds < 0:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(raw: Any) -> str:
    """An ISO time from a record as `2026-12-01 21:55:21 UTC`; anything else as it is."""
    t = epoch(raw)
    if t is None:
        return "" if raw is None else str(raw)
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_bytes(n: Any) -> str:
    if not _is_number(n):
        return ""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class Times:
    """A row's times as numbers, parsed once per index version (sorting 10,000 rows must not parse 20,000 dates)."""

    submitted: float | None
    started: float | None
    finished: float | None
    updated: float | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Times:
        return cls(
            epoch(row.get("submitted_at")),
            epoch(row.get("started_at")),
            epoch(row.get("finished_at")),
            epoch(row.get("updated_at")),
        )

    def age(self, now: float) -> float | None:
        born = self.submitted if self.submitted is not None else self.updated
        return None if born is None else now - born

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        end = self.finished if self.finished is not None and self.finished >= self.started else now
        return end - self.started


NO_TIMES = Times(None, None, None, None)


def text_match(row: dict[str, Any], needle: str) -> bool:
    """Case-insensitive substring of the name, reason, a label key or value."""
    if needle in row["name"] or needle in (row["reason"] or "").lower():
        return True
    return any(needle in k.lower() or needle in v.lower() for k, v in row["labels"].items())


def sort_key(sort: str, now: float, times: dict[str, Times]) -> Callable[[dict[str, Any]], Any]:
    phase_rank = {p: i for i, p in enumerate(PHASE_LOOK)}

    def t(row: dict[str, Any]) -> Times:
        return times.get(row["name"], NO_TIMES)

    keys: dict[str, Callable[[dict[str, Any]], Any]] = {
        "name": lambda r: r["name"],
        "phase": lambda r: (phase_rank.get(r["phase"], 9), r["name"]),
        "age": lambda r: -(t(r).age(now) or 0.0),
        "updated": lambda r: r["updated_at"] or "",
        "attempts": lambda r: r["attempts"] or 0,
        "duration": lambda r: t(r).duration(now) or 0.0,
    }
    return keys.get(sort, keys["name"])


@dataclass(frozen=True)
class ListPage:
    rows: list[dict[str, Any]]
    total: int  # matching jobs
    page: int  # 1-based, clamped
    pages: int


def arrange(
    rows: Sequence[dict[str, Any]], text: str, sort: str, descending: bool, now: float, times: dict[str, Times]
) -> list[dict[str, Any]]:
    """Filter by text and sort (rows already filtered by phase and labels)."""
    needle = text.strip().lower()
    matching = [r for r in rows if text_match(r, needle)] if needle else list(rows)
    if sort != "name" or descending:
        matching.sort(key=sort_key(sort, now, times), reverse=descending)
    return matching


def cut(matching: list[dict[str, Any]], page: int) -> ListPage:
    """One page of an arranged list; the page number is clamped to the pages there are."""
    pages = max(1, math.ceil(len(matching) / PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    return ListPage(matching[start : start + PAGE_SIZE], len(matching), page, pages)


def progress_view(doc: Any) -> dict[str, Any] | None:
    """percent (0-100, or None when the job reports none) and stage from a progress.json document."""
    if not isinstance(doc, dict):
        return None
    percent = None
    for key in ("percent", "progress", "pct"):
        value = doc.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            percent = float(value) * (100.0 if key == "progress" and 0 <= value <= 1 else 1.0)
            break
    if percent is None:
        step, total = doc.get("step"), doc.get("total_steps", doc.get("total"))
        if isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
            percent = 100.0 * step / total
    stage = doc.get("stage")
    return {
        "percent": None if percent is None else round(min(100.0, max(0.0, percent)), 1),
        "stage": stage[:80] if isinstance(stage, str) else None,
    }


# ---- charts: inline SVG, rendered on the server -----------------------------------------------------------------
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 480, 140, 56, 20, 10


@dataclass(frozen=True)
class Chart:
    title: str
    points: str  # SVG polyline points
    low: str
    high: str
    last: str
    start: str
    end: str
    count: int
    width: int = CHART_W
    height: int = CHART_H


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"


def chart(title: str, series: Sequence[tuple[float, float]], fmt: Callable[[float], str] = _fmt) -> Chart | None:
    """A line chart of (time, value) points scaled into the plot area; None for fewer than one point."""
    if not series:
        return None
    ts = [t for t, _ in series]
    vs = [v for _, v in series]
    t0, t1 = min(ts), max(ts)
    lo, hi = min(vs), max(vs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    span_t = (t1 - t0) or 1.0
    plot_w, plot_h = CHART_W - PAD_L - 4, CHART_H - PAD_B - PAD_T
    pts = []
    for t, v in series:
        x = PAD_L + (t - t0) / span_t * plot_w
        y = PAD_T + (1 - (v - lo) / (hi - lo)) * plot_h
        pts.append(f"{x:.1f},{y:.1f}")
    if len(pts) == 1:
        pts.append(f"{PAD_L + plot_w:.1f},{pts[0].split(',')[1]}")
    return Chart(
        title=title,
        points=" ".join(pts),
        low=fmt(min(vs)),
        high=fmt(max(vs)),
        last=fmt(vs[-1]),
        start=datetime.fromtimestamp(t0).strftime("%H:%M:%S"),
        end=datetime.fromtimestamp(t1).strftime("%H:%M:%S"),
        count=len(series),
    )


def progress_charts(points: list[dict[str, Any]], limit: int = 8) -> list[Chart]:
    """One small chart per numeric series of the progress history (reward, loss, ...), the first `limit` series."""
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        t = epoch(p.get("time"))
        values = p.get("values")
        if t is None or not isinstance(values, dict):
            continue
        for key, v in values.items():
            numeric = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if numeric and (key in series or len(series) < limit):
                series.setdefault(key, []).append((t, float(v)))
    return [c for key, s in series.items() if (c := chart(key, s)) is not None]


def resource_charts(points: list[dict[str, Any]]) -> list[Chart]:
    specs: list[tuple[str, str, Callable[[float], str]]] = [
        ("cpu", "CPU (cores)", _fmt),
        ("memory", "Memory", human_bytes),
        ("gpu", "GPU utilisation (%)", _fmt),
        ("gpuMemory", "GPU memory", human_bytes),
    ]
    out = []
    for key, title, fmt in specs:
        s = [
            (t, float(p[key]))
            for p in points
            if (t := epoch(p.get("time"))) is not None
            and isinstance(p.get(key), int | float)
            and not isinstance(p.get(key), bool)
        ]
        if (c := chart(title, s, fmt)) is not None:
            out.append(c)
    return out


def gpu_idle(points: list[dict[str, Any]], min_points: int = 12) -> bool:
    """The job holds GPUs and the last `min_points` samples (a minute at 5 s) all show 0% utilisation."""
    recent = [p.get("gpu") for p in points[-min_points:]]
    return len(recent) >= min_points and all(isinstance(v, int | float) and v == 0 for v in recent)
