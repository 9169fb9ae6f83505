"""What the controller would do if a folder of specs became its desired state (used by `opeva plan` and `wait`).

The folder is read by `SpecSource`, the controller's own scanner (same file rules, same validation, same
duplicate-name rule). The recorded side is `status.json` per job, read offline through `DataStore.read_status` or
through the API (`GET /jobs/{name}`), as the same `JobStatus` model. The verdict follows the branches of
`controller.decide`:

- no record, valid spec: the job is accepted and started (`start`); with `suspend: true` it is recorded as
  Stopped and never started (`stop`);
- a record whose run (`observedGeneration`, `runId`) differs from the spec's: a new run (`rerun`), stopping a
  running attempt first;
- the same run: a finished run (Succeeded, Failed) never runs again (`unchanged`); a Stopped one (suspended, or its
  spec had been deleted) runs again as a new attempt (`start`); Pending/Running carry on (`unchanged`);
- `suspend: true` on an unfinished run stops it (`stop`);
- spec removed: a Pending or Running job is stopped (`stop`); finished and stopped records stay (`unchanged`);
- a file that cannot be used: `invalid`, with the controller's message (a running attempt is left alone).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.decide import Desired
from controller.spec import SpecError, parse_document
from controller.specsource import SETTLE_SECONDS, SpecSource
from controller.status import JobStatus
from controller.store import DataStore

ACTIONS = ("start", "rerun", "stop", "unchanged", "invalid")
CHANGES = frozenset({"start", "rerun", "stop"})


@dataclass(frozen=True)
class PlanItem:
    name: str
    action: str
    detail: str
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "detail": self.detail, "file": self.file}


def _phase(st: JobStatus) -> str:
    return f"{st.phase} ({st.reason})" if st.reason else st.phase


def _running_note(st: JobStatus) -> str:
    if st.phase == "Running":
        return f"; stops the running attempt {st.attempts}"
    return ""


def plan_job(desired: Desired, st: JobStatus | None) -> PlanItem | None:
    """The verdict for one job name; None when there is neither a spec nor a record."""
    name, file = desired.name, desired.spec_file
    if not desired.exists:
        if st is None:
            return None
        if st.phase == "Running":
            return PlanItem(name, "stop", f"spec removed; stops the running attempt {st.attempts}, keeps the record")
        if st.phase == "Pending":
            return PlanItem(name, "stop", "spec removed; it will not start, the record is kept")
        return PlanItem(name, "unchanged", f"{_phase(st)}; no spec, record kept")
    if desired.error is not None:
        note = "; the running attempt is left running" if st is not None and st.phase == "Running" else ""
        return PlanItem(name, "invalid", desired.error + note, file)

    m = desired.manifest
    spec, generation = m.spec, m.generation
    waits = f"; waits: {desired.config_missing}" if desired.config_missing else ""
    never_ran = st is None or st.observedGeneration is None  # no record, or only of an invalid file
    new_run = st is not None and (st.observedGeneration != generation or st.runId != spec.runId)

    if spec.suspend:
        if never_ran:
            return PlanItem(name, "stop", "new job, suspended: recorded as Stopped, not started", file)
        if not new_run and (st.terminal or st.phase == "Stopped"):
            return PlanItem(name, "unchanged", _phase(st), file)
        what = (
            f"new generation {generation}, "
            if st.observedGeneration != generation
            else ((f"new runId {spec.runId}, " if spec.runId else "runId removed, ") if new_run else "")
        )
        if st.phase == "Running":
            return PlanItem(name, "stop", f"{what}suspended; stops the running attempt {st.attempts}", file)
        if st.phase == "Pending":
            return PlanItem(name, "stop", f"{what}suspended; it will not start", file)
        return PlanItem(name, "stop", f"{what}suspended: recorded as Stopped, not started", file)
    if never_ran:
        why = "new job" if st is None else "spec valid again; the job starts"
        return PlanItem(name, "start", why + waits, file)
    if new_run:
        if st.observedGeneration != generation:
            why = f"new generation {generation} (recorded {st.observedGeneration}, {_phase(st)})"
        else:
            change = f"new runId {spec.runId}" if spec.runId else "runId removed"
            why = f"{change} (recorded {st.runId or 'none'}, {_phase(st)})"
        return PlanItem(name, "rerun", why + _running_note(st) + waits, file)
    if st.phase == "Failed" and st.reason == "InvalidSpec":
        return PlanItem(name, "start", "spec valid again; the job runs" + waits, file)
    if st.terminal:
        return PlanItem(name, "unchanged", _phase(st), file)
    if st.phase == "Stopped":
        why = "suspend cleared" if st.reason == "Suspended" else "spec restored"
        return PlanItem(name, "start", f"{why}; runs again as a new attempt (recorded {_phase(st)})" + waits, file)
    detail = _phase(st) + (f", attempt {st.attempts}" if st.attempts else "")
    return PlanItem(name, "unchanged", detail + waits, file)


def _matches(labels: dict[str, str], selector: list[tuple[str, str | None]]) -> bool:
    return all(k in labels and (v is None or labels[k] == v) for k, v in selector)


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
            if labels is not None and not _matches(labels, selector):
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
