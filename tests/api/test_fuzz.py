"""Schemathesis against the API's own OpenAPI document, through a real server: no 5xx, no schema violations.

Bounded (FUZZ_EXAMPLES per operation, default 25) so it runs in seconds; raise it locally with OPEVA_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.server import bound_port, start_in_thread, stop
from controller.status import JobStatus, utcnow
from controller.store import DataStore

FUZZ_EXAMPLES = int(os.environ.get("OPEVA_FUZZ_EXAMPLES", "25"))
TOKEN = "fuzz-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server over a small, finished data folder (so a generated follow=true request always ends)."""
    root: Path = tmp_path_factory.mktemp("fuzz") / "data"
    store = DataStore.open(root)
    statuses = {}
    for i, phase in enumerate(["Succeeded", "Failed", "Stopped"]):
        name = ["a", "b0", "job-1"][i]
        statuses[name] = JobStatus(name=name, phase=phase, updatedAt=utcnow(), labels={"k": "v"})
        store.write_status(statuses[name])
        (store.specs_dir / f"{name}.yaml").write_text(
            f"apiVersion: opeva/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec: {{image: busybox}}\n"
        )
        store.ensure_job_dirs(name)
        store.log_path(name).write_text("one\ntwo\n")
        store.progress_path(name).write_text(json.dumps({"percent": 50}))
        (store.job_dir(name) / "job_info.json").write_text(json.dumps({"image": "busybox"}))
    store.write_job_track(statuses)
    (root / "configs").mkdir()
    (root / "configs" / "c.yaml").write_text("a: 1\n")
    app = create_app(root, token=TOKEN)
    server, thread = start_in_thread(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{bound_port(server)}"
    stop(server, thread)


def _own_schema() -> dict:
    """The app's OpenAPI document (it does not depend on the data folder). Loaded at collection time because
    schemathesis' fixture-based loader does not work with pytest 9; test_served_schema_is_the_one_fuzzed checks that
    the live server serves this same document."""
    with tempfile.TemporaryDirectory() as tmp:
        return create_app(Path(tmp) / "data", token=TOKEN).openapi()


OWN_SCHEMA = _own_schema()
schema = schemathesis.openapi.from_dict(OWN_SCHEMA)


def test_served_schema_is_the_one_fuzzed(fuzz_server):
    served = httpx.get(f"{fuzz_server}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert served == json.loads(json.dumps(OWN_SCHEMA))


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_schema(case, fuzz_server):
    # follow=true on a job that never finishes would stream forever; following is tested in test_logs.py.
    following = case.query and str(case.query.get("follow", "")).lower() in ("true", "1", "yes", "on")
    if following and case.path_parameters and case.path_parameters.get("name") not in ("a", "b0", "job-1"):
        case.query["follow"] = "false"
    case.call_and_validate(
        base_url=fuzz_server, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=20
    )
