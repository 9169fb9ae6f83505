"""`opeva plan` says what the controller then does: for each case, plan's verdict (offline and through the API) is
compared with what a running controller does once the planned folder becomes its specs folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from e2e.harness import read_events, read_status, wait_for

from .conftest import Server
from .test_with_server import apply, job, wait_phase

pytestmark = pytest.mark.docker

# What the controller's events say it did, in the order plan ranks its verdicts.
DONE_BY_EVENT = (
    ("invalid", {"InvalidSpec"}),
    ("stop", {"SpecDeleted", "Stopping", "Suspended"}),
    ("rerun", {"GenerationChanged", "Rerun"}),
    ("start", {"Accepted", "Resumed", "Creating"}),
)


def done_by_controller(reasons: set[str]) -> str:
    return next((verdict for verdict, names in DONE_BY_EVENT if reasons & names), "unchanged")


def put(specs: Path, doc: dict) -> None:
    """Write into the live specs folder as a careful client does (temp file, rename)."""
    path = specs / f"{doc['metadata']['name']}.yaml"
    tmp = specs / f".{path.name}.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)


def test_plan_verdict_is_what_the_controller_then_does(server: Server, tmp_path: Path):
    labels = {"plan": "match"}
    before = {
        "pm-edit": job("pm-edit", "echo v1", labels),
        "pm-done": job("pm-done", "echo done", labels),
        "pm-del": job("pm-del", "sleep 300", labels),
        "pm-susp": job("pm-susp", "sleep 300", labels),
        "pm-resume": job("pm-resume", "sleep 300", labels, suspend=True),
        "pm-bad": job("pm-bad", "echo ok", labels),
        "pm-runid": job("pm-runid", "echo once", labels),
    }
    apply(server, tmp_path, *before.values())
    wait_phase(server, "pm-edit", "pm-done", "pm-bad", "pm-runid", phase="Succeeded")
    wait_phase(server, "pm-del", "pm-susp", phase="Running")
    wait_phase(server, "pm-resume", phase="Stopped")

    bad = job("pm-bad", "echo ok", labels)
    bad["spec"]["imagee"] = "typo"
    after = {
        "pm-new": job("pm-new", "echo new", labels),
        "pm-edit": job("pm-edit", "echo v2", labels),
        "pm-done": before["pm-done"],
        "pm-susp": job("pm-susp", "sleep 300", labels, suspend=True),
        "pm-resume": job("pm-resume", "sleep 300", labels),
        "pm-bad": bad,
        "pm-runid": job("pm-runid", "echo once", labels, runId="r2"),
    }  # pm-del: deleted
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for doc in after.values():
        put(checkout, doc)

    via_api = server.cli("plan", str(checkout), "-l", "plan=match", "-o", "json")
    offline = server.cli("plan", str(checkout), "-l", "plan=match", "-o", "json", "--data", str(server.data))
    planned = {i["name"]: i["action"] for i in json.loads(via_api.stdout)["items"]}
    assert planned == {i["name"]: i["action"] for i in json.loads(offline.stdout)["items"]}
    assert planned == {
        "pm-new": "start",
        "pm-edit": "rerun",
        "pm-done": "unchanged",
        "pm-del": "stop",
        "pm-susp": "stop",
        "pm-resume": "start",
        "pm-bad": "invalid",
        "pm-runid": "rerun",
    }

    names = sorted(planned)
    seen = {name: len(read_events(server.data, name)) for name in names}
    specs = server.data / "specs"
    (specs / read_status(server.data, "pm-del")["specFile"]).unlink()
    for doc in after.values():
        put(specs, doc)

    def reasons(name: str) -> set[str]:
        return {e["reason"] for e in read_events(server.data, name)[seen.get(name, 0) :]}

    changed = [n for n in names if planned[n] != "unchanged"]
    wait_for(lambda: all(reasons(n) for n in changed), timeout=30, what="the controller to act on every change")
    time.sleep(3)  # more than a resync: an unchanged job stays unchanged
    done = {name: done_by_controller(reasons(name)) for name in names}
    assert done == planned
    for name in ("pm-susp", "pm-resume", "pm-runid", "pm-edit", "pm-new"):
        server.cli("delete", name)
