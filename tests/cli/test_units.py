"""The client's small pure pieces, without a process: plan verdicts at the edges, log sections, times, config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.config import DEFAULT_SERVER, resolve
from cli.describe import mlflow_link
from cli.logs import AttemptSection, _attempt_container
from cli.planning import plan_job
from cli.render import human_duration, progress_text
from controller.decide import Desired
from controller.spec import parse_document
from controller.status import JobStatus


def manifest(name: str = "j", **spec):
    return parse_document(
        {"apiVersion": "opeva/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"image": "busybox", **spec}}
    )


def status(phase: str, reason: str | None = None, gen: str | None = None, **kw) -> JobStatus:
    st = JobStatus(name="j", phase=phase, reason=reason, observedGeneration=gen, **kw)
    if reason == "InvalidSpec":  # as the controller records it
        st.set_condition("SpecValid", "False", "InvalidSpec", "spec.image: Field required", datetime.now(UTC))
    return st


@pytest.mark.parametrize(
    "spec, st, action, detail",
    [
        ({"suspend": True}, None, "stop", "new job, suspended: recorded as Stopped, not started"),
        ({"suspend": True}, "same:Succeeded:Completed", "unchanged", "Succeeded (Completed)"),
        ({"suspend": True}, "same:Stopped:SpecDeleted", "unchanged", "Stopped (SpecDeleted)"),
        ({"suspend": True}, "same:Pending:BackingOff", "stop", "suspended; it will not start"),
        (
            {"suspend": True},
            "old:Succeeded:Completed",
            "stop",
            "new generation {gen}, suspended: recorded as Stopped, not started",
        ),
        ({}, "none:Failed:InvalidSpec", "start", "spec valid again; the job starts"),
        ({}, "same:Failed:InvalidSpec", "start", "spec valid again; the job runs"),
        (
            {},
            "same:Stopped:SpecDeleted",
            "start",
            "spec restored; runs again as a new attempt (recorded Stopped (SpecDeleted))",
        ),
        (
            {},
            "old:Running:Started",
            "rerun",
            "new generation {gen} (recorded 0123456789abcdef, Running (Started)); stops the running attempt 1",
        ),
    ],
)
def test_plan_verdicts_follow_the_controller(spec, st, action, detail):
    m = manifest(**spec)
    recorded = None
    if st:
        which, phase, reason = st.split(":")
        gen = {"same": m.generation, "old": "0123456789abcdef", "none": None}[which]
        recorded = status(phase, reason, gen, attempts=1)
    item = plan_job(Desired("j", manifest=m, spec_file="j.yaml"), recorded)
    assert (item.action, item.detail) == (action, detail.format(gen=m.generation))


def test_plan_an_invalid_file_leaves_a_running_attempt_alone():
    item = plan_job(Desired("j", error="j.yaml: spec.image: Field required"), status("Running", "Started", "g"))
    assert (item.action, item.detail) == (
        "invalid",
        "j.yaml: spec.image: Field required; the running attempt is left running",
    )
    assert plan_job(Desired("j"), None) is None


def test_attempt_section_across_chunk_boundaries():
    log = (
        b"===== opeva: job j attempt 1 container c-1 generation g =====\none\n"
        b"===== opeva: job j attempt 2 container c-2 generation g =====\ntwo\ntwo-b\n"
        b"===== opeva: job j attempt 1 container d-1 generation h =====\nnext run\n"
    )
    for attempt, container, expected in (
        (2, "c-2", [b"two\n", b"two-b\n"]),
        (1, "d-1", [b"next run\n"]),
        (1, None, [b"one\n", b"next run\n"]),
    ):
        section = AttemptSection("j", attempt, container)
        out = []
        for i in range(0, len(log), 7):  # chunks that cut lines and headers
            out.extend(section.feed(log[i : i + 7]))
        out.extend(section.rest())
        assert [line for line in out if not line.startswith(b"=====")] == expected
        assert section.found


def test_attempt_container_of_the_current_run():
    st = {
        "attempts": 3,
        "containerName": "opeva-x-j-abcd1234-3",
        "runHistoryStart": 1,
        "history": [
            {"attempt": 1, "containerName": "opeva-x-j-old00000-1"},
            {"attempt": 1, "containerName": "opeva-x-j-abcd1234-1"},
        ],
    }
    assert _attempt_container(st, 1) == "opeva-x-j-abcd1234-1"
    assert _attempt_container(st, 2) == "opeva-x-j-abcd1234-2"
    assert _attempt_container({}, 1) is None


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (59.9, "59s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (None, "-"),
    ],
)
def test_human_duration_like_kubectl(seconds, text):
    assert human_duration(seconds) == text


def test_progress_text():
    assert progress_text({"percent": 45.0, "stage": "training"}) == "45% training"
    assert progress_text({"percent": 12.345}) == "12.3%"
    assert progress_text({"percent": "x", "stage": "  warm\nup "}) == "warm up"
    assert progress_text(None) == progress_text({}) == "-"


def test_mlflow_link_from_job_info():
    assert mlflow_link({"mlflow_run_url": "http://m/#/r/1", "mlflow_tracking_uri": "http://m"}) == "http://m/#/r/1"
    assert mlflow_link({"mlflow": {"runUrl": "http://m/r"}}) == "http://m/r"
    assert mlflow_link({"mlflow_tracking_uri": "http://m"}) is None
    assert mlflow_link(None) is None


def test_connection_precedence(monkeypatch, tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("server: cfg:1\ntoken: from-file\n")
    monkeypatch.setenv("OPEVA_CONFIG_FILE", str(config))
    monkeypatch.delenv("OPEVA_SERVER", raising=False)
    monkeypatch.delenv("OPEVA_API_TOKEN", raising=False)
    assert (resolve(None, None).server, resolve(None, None).token) == ("http://cfg:1", "from-file")
    monkeypatch.setenv("OPEVA_SERVER", "https://env:2/")
    monkeypatch.setenv("OPEVA_API_TOKEN", "from-env")
    conn = resolve(None, None)
    assert (conn.server, conn.token, conn.source) == ("https://env:2", "from-env", "$OPEVA_SERVER")
    conn = resolve("flag:3", "from-flag")
    assert (conn.server, conn.token, conn.source) == ("http://flag:3", "from-flag", "--server")
    monkeypatch.setenv("OPEVA_CONFIG_FILE", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.delenv("OPEVA_SERVER")
    assert resolve(None, None).server == DEFAULT_SERVER
