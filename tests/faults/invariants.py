"""The five invariants of the fault-injection suite, checked after every fault, and the report table."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import docker
from e2e.harness import read_json_file, read_status

REPORT: list[dict] = []  # rows printed at the end of the session (see conftest.py)


def counting_script(lines: int, delay: float = 0.05, code: int = 0, then: str = "") -> str:
    """A job whose output can be checked line by line: line-1 .. line-N, then `then`, then exit `code`."""
    return (
        f"i=1; while [ $i -le {lines} ]; do echo line-$i; i=$((i+1)); sleep {delay}; done; "
        f"{then + '; ' if then else ''}exit {code}"
    )


class EventRecorder:
    """Every container create the engine reports for one data folder, across daemon restarts."""

    def __init__(self, instance: str):
        self.instance = instance
        self.creates: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EventRecorder:
        self._thread.start()
        time.sleep(0.2)
        return self

    def _run(self) -> None:
        since = time.time()
        while not self._stop.is_set():
            try:
                client = docker.from_env(timeout=5)
                stream = client.events(
                    decode=True,
                    since=since,
                    filters={"type": "container", "event": "create", "label": f"opeva.instance={self.instance}"},
                )
                for ev in stream:
                    since = ev.get("time", since)
                    self.creates.append((ev.get("Actor") or {}).get("Attributes") or {})
                    if self._stop.is_set():
                        return
            except Exception:
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()

    def duplicates(self) -> list[str]:
        by_name = Counter(a.get("name") for a in self.creates)
        by_attempt = Counter((a.get("opeva.job"), a.get("opeva.run"), a.get("opeva.attempt")) for a in self.creates)
        out = [f"container {n} created {k} times" for n, k in by_name.items() if k > 1]
        out += [f"attempt {a} created {k} times" for a, k in by_attempt.items() if k > 1]
        return out


@dataclass
class StatusPoller:
    """Reads every status.json all the time; a terminal record that goes back to non-terminal is a regression."""

    data: Path
    names: list[str]
    violations: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StatusPoller:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        finished: dict[str, tuple] = {}
        while not self._stop.is_set():
            for name in self.names:
                path = self.data / "jobs" / name / "status.json"
                if not path.exists():
                    continue
                st = read_json_file(path)
                if st is None:
                    if path.exists():
                        self.violations.append(f"{name}: status.json did not parse")
                    continue
                key = (st.get("observedGeneration"), st.get("runId"))
                if st["phase"] in ("Succeeded", "Failed"):
                    finished.setdefault(name, (key, st["phase"]))
                elif name in finished and finished[name][0] == key:
                    self.violations.append(f"{name}: {finished[name][1]} regressed to {st['phase']}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


def log_violations(data: Path, name: str, lines: int) -> list[str]:
    """Each attempt's section is a prefix of line-1..line-N with nothing doubled; a finished run's last is whole."""
    try:
        text = (data / "jobs" / name / "logs" / f"{name}.log").read_text()
    except OSError:
        return [f"{name}: no log file"]
    sections: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("===== opeva:"):
            sections.append([])
        elif sections:
            sections[-1].append(line)
        else:
            return [f"{name}: output before the first attempt header"]
    expected = [f"line-{i}" for i in range(1, lines + 1)]
    out = []
    for i, body in enumerate(sections):
        if body != expected[: len(body)]:
            out.append(f"{name}: attempt section {i + 1} is not line-1..line-k in order: {body[:5]}...")
    if not sections or sections[-1] != expected:
        out.append(f"{name}: last attempt's log is incomplete ({len(sections[-1]) if sections else 0}/{lines})")
    return out


def file_violations(data: Path) -> list[str]:
    out = []
    for path in (
        list(data.glob("jobs/*/status.json")) + list(data.glob("jobs/*/job_info.json")) + [data / "job_track.json"]
    ):
        if path.exists() and read_json_file(path) is None:
            out.append(f"{path.relative_to(data)} does not parse")
    return out


def check(
    data: Path, expected: dict[str, str], lines: int, recorder: EventRecorder, poller: StatusPoller | None = None
) -> list[str]:
    """All five invariants for jobs whose desired end phase is `expected[name]`."""
    out = recorder.duplicates() + file_violations(data) + (poller.violations if poller else [])
    for name, phase in expected.items():
        st = read_status(data, name)
        if st is None or st["phase"] != phase:
            out.append(f"{name}: phase {st and st['phase']}, wanted {phase}")
            continue
        if phase in ("Succeeded", "Failed"):
            out += log_violations(data, name, lines)
        names = [h["containerName"] for h in st["history"]]
        if len(names) != len(set(names)):
            out.append(f"{name}: an attempt is recorded twice: {names}")
    return out


def instance_of(data: Path) -> str:
    return (data / ".opeva" / "instance-id").read_text().strip()


def settled(data: Path, expected: dict[str, str]) -> bool:
    return all((st := read_status(data, n)) is not None and st["phase"] == p for n, p in expected.items())


def report(fault: str, iterations: int, violations: int, recovery: float | None = None, note: str = "") -> None:
    REPORT.append(
        {
            "fault": fault,
            "iterations": iterations,
            "violations": violations,
            "recovery_s": None if recovery is None else round(recovery, 2),
            "note": note,
        }
    )


def format_report() -> str:
    rows = [("fault", "iterations", "invariant violations", "recovery (s)", "note")]
    rows += [
        (
            r["fault"],
            str(r["iterations"]),
            str(r["violations"]),
            "-" if r["recovery_s"] is None else str(r["recovery_s"]),
            r["note"],
        )
        for r in REPORT
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows)


def dump(obj) -> str:
    return json.dumps(obj, indent=1)[:2000]
