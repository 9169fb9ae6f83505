"""What the controller would do if a folder of specs became its desired state (used by `opeva plan` and `wait`).

The folder is read by `SpecSource`, the controller's own scanner (same file rules, same validation, same
duplicate-name rule). The recorded side is `status.json` per job, read offline through `DataStore.read_status` or
through the API (`GET /jobs/{name}`), as the same `JobStatus` model. The verdict is the controller's own: plan runs
`controller.decide` on the spec, the record and the containers the record implies (a Running record's container
still runs), and names what the decision does:

- `invalid`: the file cannot be used (the decision marks the spec invalid; a running attempt is left alone);
- `stop`: the job ends up Stopped, or its running attempt is asked to stop (spec removed, suspended);
- `rerun`: the decision starts a new run of a job that had run (new generation or runId);
- `start`: a job that was not running is Pending or Running afterwards (new, resumed, spec valid again);
- `unchanged`: anything else.
The detail text describes the record and the spec in words; it never decides anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.decide import (
    Decision,
    Desired,
    Facts,
    Observed,
    Stop,
    container_name,
    decide,
    run_key,
)
from controller.runtime.base import ContainerInfo
from controller.selectors import labels_match
from controller.spec import SpecError, parse_document
from controller.specsource import SETTLE_SECONDS, SpecSource
from controller.status import ACTIVE_PHASES, JobStatus, utcnow
from controller.store import DataStore

ACTIONS = ("start", "rerun", "stop", "unchanged", "invalid")
CHANGES = frozenset({"start", "rerun", "stop"})
PLAN_INSTANCE = "plan"  # the data folder's id does not matter to a verdict; container names only need to agree
NEW_RUN_EVENTS = frozenset({"GenerationChanged", "Rerun"})


@dataclass(frozen=True)
class PlanItem:
    name: str
    action: str
    detail: str
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "detail": self.detail, "file": self.file}


def plan_job(desired: Desired, st: JobStatus | None) -> PlanItem | None:
    """The verdict for one job name; None when there is neither a spec nor a record."""
    recorded, observed = _as_observed(st)
    decision = decide(desired, observed, recorded, Facts(now=utcnow(), instance=PLAN_INSTANCE))
    if decision.status is None:
        return None
    action = verdict(desired, st, decision)
    return PlanItem(desired.name, action, _detail(action, desired, st), desired.spec_file)


def verdict(desired: Desired, st: JobStatus | None, decision: Decision) -> str:
    """Name what a decision does to a job (see the module docstring)."""
    new = decision.status
    assert new is not None
    if desired.error is not None:
        return "invalid"
    was_stopped = st is not None and st.phase == "Stopped"
    asks_stop = any(isinstance(a, Stop) and a.reason in ("SpecDeleted", "Suspended") for a in decision.actions)
    if (new.phase == "Stopped" and not was_stopped) or asks_stop:
        return "stop"
    if (
        st is not None
        and st.observedGeneration is not None
        and any(e.reason in NEW_RUN_EVENTS for e in decision.events)
    ):
        return "rerun"
    if new.phase in ACTIVE_PHASES and (st is None or st.phase not in ACTIVE_PHASES):
        return "start"
    return "unchanged"


def _as_observed(st: JobStatus | None) -> tuple[JobStatus | None, Observed]:
    """The record, and the containers it implies: a Running record's attempt still runs. Its container is named as
    the decision names it under PLAN_INSTANCE, so the decision finds it."""
    if st is None or st.phase != "Running" or not st.observedGeneration:
        return st, Observed()
    key = run_key(st.observedGeneration, st.runId)
    name = container_name(PLAN_INSTANCE, st.name, key, st.attempts)
    live = ContainerInfo(
        id=st.containerId or name,
        name=name,
        job=st.name,
        generation=st.observedGeneration,
        run=key,
        attempt=st.attempts,
        state="running",
        started_at=st.startedAt,
    )
    recorded = st.model_copy(update={"containerName": name, "containerId": live.id})
    return recorded, Observed(containers=(live,))


# ---- the words of a verdict ---------------------------------------------------------------------------------------
def _phase(st: JobStatus) -> str:
    return f"{st.phase} ({st.reason})" if st.reason else st.phase


def _detail(action: str, desired: Desired, st: JobStatus | None) -> str:
    if desired.error is not None:
        running = st is not None and st.phase == "Running"
        return desired.error + ("; the running attempt is left running" if running else "")
    m = desired.manifest
    if m is None:
        assert st is not None
        if action == "stop":
            if st.phase == "Running":
                return f"spec removed; stops the running attempt {st.attempts}, keeps the record"
            return "spec removed; it will not start, the record is kept"
        return f"{_phase(st)}; no spec, record kept"
    waits = f"; waits: {desired.config_missing}" if desired.config_missing else ""
    if st is None or st.observedGeneration is None:
        if action == "stop":
            return "new job, suspended: recorded as Stopped, not started"
        return ("new job" if st is None else "spec valid again; the job starts") + waits
    change = _run_change(m.generation, m.spec.runId, st)
    if action == "stop":
        what = f"{change}, " if change else ""
        if st.phase == "Running":
            return f"{what}suspended; stops the running attempt {st.attempts}"
        if st.phase == "Pending":
            return f"{what}suspended; it will not start"
        return f"{what}suspended: recorded as Stopped, not started"
    if action == "rerun":
        recorded = st.observedGeneration if st.observedGeneration != m.generation else st.runId or "none"
        stops = f"; stops the running attempt {st.attempts}" if st.phase == "Running" else ""
        return f"{change} (recorded {recorded}, {_phase(st)}){stops}{waits}"
    if action == "start":
        if st.phase == "Stopped":
            why = "suspend cleared" if st.reason == "Suspended" else "spec restored"
            return f"{why}; runs again as a new attempt (recorded {_phase(st)})" + waits
        return "spec valid again; the job runs" + waits
    if st.terminal or st.phase == "Stopped":
        return _phase(st)
    return _phase(st) + (f", attempt {st.attempts}" if st.attempts else "") + waits


def _run_change(generation: str, run_id: str | None, st: JobStatus) -> str:
    """How the spec's run differs from the recorded one, in words ('' when it is the same run)."""
    if st.observedGeneration != generation:
        return f"new generation {generation}"
    if st.runId != run_id:
        return f"new runId {run_id}" if run_id else "runId removed"
    return ""


def make_plan(
    desired: dict[str, Desired], records: dict[str, JobStatus], selector: list[tuple[str, str | None]] | None = None
) -> list[PlanItem]:
    """One item per job name in the folder or the records, sorted by name.

    With a label selector, a job is kept when the labels of its spec (or, spec removed, of its record) match;
    files that cannot be read are always shown.
    """
    items = []
    for name in sorted(set(desired) | set(records)):
        d = desired.get(name) or Desired(name)
        st = records.get(name)
        if selector:
            if d.manifest is not None:
                labels = dict(d.manifest.metadata.labels)
            elif d.error is not None:
                labels = None
            else:
                labels = dict(st.labels) if st else {}
            if labels is not None and not labels_match(labels, selector):
                continue
        item = plan_job(d, st)
        if item is not None:
            items.append(item)
    return items


def summary(items: Iterable[PlanItem]) -> str:
    counts = {a: 0 for a in ACTIONS}
    for item in items:
        counts[item.action] += 1
    return (
        f"Plan: {counts['start']} to start, {counts['rerun']} to rerun, {counts['stop']} to stop, "
        f"{counts['unchanged']} unchanged, {counts['invalid']} invalid."
    )


# ---- the two sides ----------------------------------------------------------------------------------------------
def load_desired(specs_dir: Path, data_dir: Path | None) -> dict[str, Desired]:
    """The folder as the controller would see it. A broken file written moments ago is given time to settle, as
    the controller gives it, so a plan never reports a half-written file."""
    source = SpecSource(specs_dir.absolute(), (data_dir or specs_dir).absolute())
    for _ in range(3):
        if not source.scan().unsettled:
            break
        time.sleep(SETTLE_SECONDS)
    desired = {name: source.desired(name) for name in source.names()}
    if data_dir is None:  # no data folder to look in: whether configFile exists is not known
        desired = {name: Desired(d.name, d.manifest, d.error, d.spec_file) for name, d in desired.items()}
    return desired


def records_offline(data_dir: Path) -> dict[str, JobStatus]:
    """status.json of every job in a data folder, read without writing anything."""
    root = data_dir.absolute()
    store = DataStore(root, root / "specs")  # not DataStore.open: a plan creates no folders
    out = {}
    for name in store.recorded_jobs():
        st = store.read_status(name)
        if st is not None:
            out[name] = st
    return out


def desired_from_detail(detail: dict[str, Any]) -> Desired:
    """The server's desired state of one job, from `GET /jobs/{name}` (spec, or the error that makes it unusable)."""
    name = detail.get("metadata", {}).get("name", "")
    if detail.get("spec") is not None:
        doc = {"apiVersion": "opeva/v1", "kind": "Job", "metadata": detail["metadata"], "spec": detail["spec"]}
        try:
            return Desired(name, manifest=parse_document(doc, "server spec"), spec_file=detail.get("specFile"))
        except SpecError as err:
            return Desired(name, error=str(err), spec_file=detail.get("specFile"))
    if detail.get("specError"):
        return Desired(name, error=detail["specError"], spec_file=detail.get("specFile"))
    return Desired(name)


def status_of(detail: dict[str, Any]) -> JobStatus | None:
    status = detail.get("status")
    if not isinstance(status, dict):
        return None
    try:
        return JobStatus.model_validate(status)
    except ValueError:
        return None


def records_via_api(client, names: Iterable[str], selectors: list[str] | None = None) -> dict[str, JobStatus]:
    """The same records through the API: every listed job (matching the selector) plus every name in the folder."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = sorted(set(names) | {row["name"] for row in client.list_jobs(labels=selectors)})
    with ThreadPoolExecutor(max_workers=8) as pool:
        details = list(pool.map(client.job_or_none, wanted))
    out = {}
    for name, detail in zip(wanted, details, strict=False):
        st = status_of(detail) if detail else None
        if st is not None:
            out[name] = st
    return out
