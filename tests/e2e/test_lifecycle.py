"""Lifecycle policies end to end, with short timings: retries, exit-code rules, OOM, deadlines, stalls, suspend,
rerun, TTL and retention."""

from __future__ import annotations

import tarfile
import time
from datetime import datetime

import pytest

from .harness import (
    ControllerProcess,
    containers,
    job_name,
    read_events,
    read_log,
    read_status,
    shell_spec,
    spec_doc,
    wait_for,
    wait_phase,
    write_spec,
)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_backoff_spaces_attempts_then_fails_with_backoff_limit_exceeded(data, engine_controller):
    name = job_name("backoff")
    write_spec(
        data,
        shell_spec(
            name,
            "echo attempt $OPEVA_ATTEMPT; exit 1",
            restartPolicy="OnFailure",
            backoffLimit=2,
            backoff={"initialSeconds": 1, "maxSeconds": 2},
        ),
    )
    pending = wait_for(
        lambda: (s := read_status(data, name)) and s["reason"] == "BackingOff" and s, timeout=20, what="BackingOff"
    )
    cond = next(c for c in pending["conditions"] if c["type"] == "BackingOff")
    assert pending["phase"] == "Pending" and cond["status"] == "True" and "next attempt at" in cond["message"]
    st = wait_phase(data, name, "Failed", timeout=40)
    assert st["reason"] == "BackoffLimitExceeded" and st["attempts"] == 3 and st["failures"] == 3
    starts = [ts(h["startedAt"]) for h in st["history"]]
    ends = [ts(h["finishedAt"]) for h in st["history"]]
    assert (starts[1] - ends[0]).total_seconds() >= 0.9  # 1 s, then doubled
    assert (starts[2] - ends[1]).total_seconds() >= 1.9
    assert [f"attempt {i}" in read_log(data, name) for i in (1, 2, 3)] == [True, True, True]


@pytest.mark.parametrize(
    "script, rules, phase, reason, attempts",
    [
        ("exit 2", [{"exitCodes": [2, 3], "action": "FailJob"}], "Failed", "Error", 1),
        (
            '[ "$OPEVA_ATTEMPT" -ge 2 ] || exit 75',
            [{"exitCodes": [75], "action": "Ignore"}],
            "Succeeded",
            "Completed",
            2,
        ),
        ('[ "$OPEVA_ATTEMPT" -ge 2 ] || exit 4', [{"exitCodes": [4], "action": "Count"}], "Succeeded", "Completed", 2),
    ],
    ids=["FailJob", "Ignore", "Count"],
)
def test_failure_policy_actions(data, controller, script, rules, phase, reason, attempts):
    name = job_name(f"policy-{rules[0]['action'].lower()}")
    write_spec(
        data,
        shell_spec(
            name,
            script,
            restartPolicy="OnFailure",
            backoffLimit=5,
            failurePolicy=rules,
            backoff={"initialSeconds": 0.2, "maxSeconds": 0.2},
        ),
    )
    st = wait_phase(data, name, phase, timeout=30)
    assert (st["reason"], st["attempts"]) == (reason, attempts)
    counted = [h["counted"] for h in st["history"]]
    if rules[0]["action"] == "Ignore":
        assert counted == [False, False] and st["failures"] == 0
    if rules[0]["action"] == "Count":
        assert st["failures"] == 1
    if rules[0]["action"] == "FailJob":
        assert "failurePolicy rule 1: FailJob" in st["message"]


def test_out_of_memory_is_its_own_reason(data, controller):
    name = job_name("oom")
    write_spec(
        data,
        shell_spec(
            name,
            "echo filling; x=$(head -c 200000000 /dev/zero | tr '\\000' a); echo survived",
            resources={"memory": "16Mi"},
        ),
    )
    st = wait_phase(data, name, "Failed", timeout=60)
    assert st["reason"] == "OOMKilled" and st["history"][-1]["reason"] == "OOMKilled"


def test_deadline_holds_across_a_controller_restart(data, engine):
    name = job_name("deadline")
    ctl = ControllerProcess(data, env=engine.env).start()
    try:
        write_spec(
            data, spec_doc(name, command=["sleep", "300"], activeDeadlineSeconds=4, terminationGracePeriodSeconds=1)
        )
        wait_phase(data, name, "Running")
        ctl.kill()
        time.sleep(5)  # the deadline passes while no controller runs
        ctl = ControllerProcess(data, env=engine.env).start()
        st = wait_phase(data, name, "Failed", timeout=20)
        assert st["reason"] == "DeadlineExceeded"
        wait_for(
            lambda: not [c for c in engine.containers(name) if c["State"] == "running"],
            timeout=20,
            what="deadline-stopped container",
        )
    finally:
        ctl.kill()


def test_stalled_progress_stops_the_attempt(data, controller):
    name = job_name("stall")
    write_spec(
        data,
        shell_spec(
            name,
            "echo '{\"percent\": 5}' > $OPEVA_JOB_DIR/progress/progress.json; sleep 300",
            progressDeadlineSeconds=2,
            terminationGracePeriodSeconds=1,
        ),
    )
    st = wait_phase(data, name, "Failed", timeout=30)
    assert st["reason"] == "ProgressStalled"
    assert "ProgressStalled" in [e["reason"] for e in read_events(data, name)]


def test_suspend_stops_and_resume_runs_a_new_attempt(data, engine, engine_controller):
    name = job_name("suspend")
    doc = spec_doc(name, command=["sleep", "300"], terminationGracePeriodSeconds=1)
    write_spec(data, doc)
    wait_phase(data, name, "Running")
    doc["spec"]["suspend"] = True
    write_spec(data, doc)
    st = wait_phase(data, name, "Stopped", reason="Suspended", timeout=20)
    assert next(c for c in st["conditions"] if c["type"] == "Suspended")["status"] == "True"
    wait_for(lambda: not [c for c in engine.containers(name) if c["State"] == "running"], timeout=20, what="stopped")
    assert st["history"][-1]["outcome"] == "Stopped" and st["failures"] == 0
    doc["spec"]["suspend"] = False
    write_spec(data, doc)
    st = wait_for(
        lambda: (s := read_status(data, name)) and s["phase"] == "Running" and s["attempts"] == 2 and s,
        timeout=20,
        what="resumed as attempt 2",
    )
    assert st["observedGeneration"] == st["history"][0]["generation"]


def test_suspended_before_start_never_starts(data, controller):
    name = job_name("never")
    write_spec(data, shell_spec(name, "echo should-not-run", suspend=True))
    st = wait_phase(data, name, "Stopped", reason="Suspended")
    time.sleep(1)
    assert st["attempts"] == 0 and not containers(name) and read_log(data, name) == ""


def test_rerun_by_run_id(data, controller):
    name = job_name("rerun")
    doc = shell_spec(name, "echo run $OPEVA_ATTEMPT")
    write_spec(data, doc)
    first = wait_phase(data, name, "Succeeded")
    doc["spec"]["runId"] = "second"
    write_spec(data, doc)
    st = wait_for(
        lambda: (s := read_status(data, name)) and s["runId"] == "second" and s["phase"] == "Succeeded" and s,
        timeout=30,
        what="rerun succeeded",
    )
    assert st["observedGeneration"] == first["observedGeneration"]
    assert [h["runId"] for h in st["history"]] == [None, "second"]
    assert "Rerun" in [e["reason"] for e in read_events(data, name)]


@pytest.mark.parametrize("policy", ["keep", "archive", "delete"])
def test_ttl_collects_spec_less_records_per_artifact_policy(data, policy):
    gone, kept, active = job_name(f"ttl-gone-{policy}"), job_name(f"ttl-kept-{policy}"), job_name(f"ttl-act-{policy}")
    ctl = ControllerProcess(data, "--ttl-succeeded", "1", "--ttl-failed", "1", "--artifacts", policy).start()
    try:
        gone_path = write_spec(data, shell_spec(gone, "echo result > $OPEVA_JOB_DIR/results/result.json"))
        write_spec(data, shell_spec(kept, "echo keep-me"))
        write_spec(data, spec_doc(active, command=["sleep", "300"], terminationGracePeriodSeconds=1))
        wait_phase(data, gone, "Succeeded")
        wait_phase(data, kept, "Succeeded")
        wait_phase(data, active, "Running")
        gone_path.unlink()
        job_dir = data / "jobs" / gone
        wait_for(lambda: not (job_dir / "status.json").exists(), timeout=20, what="record collected")
        time.sleep(1.5)
        assert read_status(data, kept)["phase"] == "Succeeded", "a job with a spec in the folder is never collected"
        assert read_status(data, active)["phase"] == "Running", "an active job is never collected"
        archives = list((data / "archive").glob(f"{gone}-*.tar.gz")) if (data / "archive").exists() else []
        if policy == "keep":
            assert (job_dir / "results" / "result.json").exists() and not (job_dir / "events.jsonl").exists()
            assert not archives
        elif policy == "archive":
            assert not job_dir.exists() and len(archives) == 1
            with tarfile.open(archives[0]) as tar:
                names = tar.getnames()
            assert f"{gone}/results/result.json" in names and f"{gone}/status.json" in names
        else:
            assert not job_dir.exists() and not archives
        track = data / "job_track.json"
        wait_for(lambda: gone not in track.read_text(), timeout=10, what="index without the collected job")
    finally:
        ctl.kill()
