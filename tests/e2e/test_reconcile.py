"""The reconcile loop end to end: real `opeva run`, real Docker, real files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_job_runs_to_completion_with_status_log_and_events(data, engine, engine_controller):
    name = job_name("hello")
    write_spec(data, shell_spec(name, "echo out-line; echo err-line >&2"))
    st = wait_phase(data, name, "Succeeded")
    assert st["reason"] == "Completed" and st["exitCode"] == 0 and st["attempts"] == 1
    assert st["observedGeneration"] and st["startedAt"] and st["finishedAt"]
    log = read_log(data, name)
    assert "out-line\n" in log and "err-line\n" in log
    assert log.startswith("===== opeva: job") and "attempt 1" in log.splitlines()[0]
    reasons = [e["reason"] for e in read_events(data, name)]
    assert reasons[:2] == ["Accepted", "Creating"] and "Succeeded" in reasons
    wait_for(lambda: not engine.containers(name), what="finished container removed after recording")
    info = data / "jobs" / name / "job_info.json"
    track = data / "job_track.json"
    wait_for(lambda: track.exists() and name in track.read_text(), what="job_track.json lists the job")
    del info


def test_failure_records_exit_code(data, engine_controller):
    name = job_name("fails")
    write_spec(data, shell_spec(name, "echo about to fail; exit 3"))
    st = wait_phase(data, name, "Failed")
    assert st["reason"] == "Error" and st["exitCode"] == 3
    assert "exit code 3" in st["message"]
    assert "about to fail" in read_log(data, name)


def test_deleting_the_spec_stops_the_running_container(data, engine, engine_controller):
    name = job_name("deleteme")
    path = write_spec(data, spec_doc(name, command=["sleep", "300"], terminationGracePeriodSeconds=1))
    wait_phase(data, name, "Running")
    path.unlink()
    st = wait_phase(data, name, "Stopped", reason="SpecDeleted", timeout=20)
    assert st["reason"] == "SpecDeleted"
    running = lambda: [c for c in engine.containers(name) if c["State"] == "running"]  # noqa: E731
    wait_for(lambda: not running(), timeout=20, what="container stopped")
    assert (data / "jobs" / name / "status.json").exists(), "record is kept after delete"


def test_identical_rewrite_does_nothing_and_an_edit_reruns(data, engine_controller):
    name = job_name("edit")
    doc = shell_spec(name, "echo version-one")
    path = write_spec(data, doc)
    first = wait_phase(data, name, "Succeeded")
    write_spec(data, doc)  # same content, new inode and mtime
    wait_for(
        lambda: any(e["reason"] == "SpecUnchanged" for e in read_events(data, name)),
        timeout=10,
        what="SpecUnchanged event",
    )
    time.sleep(1.0)
    same = read_status(data, name)
    assert same["observedGeneration"] == first["observedGeneration"] and len(same["history"]) == 1

    doc["spec"]["args"] = ["echo version-two"]
    write_spec(data, doc)
    st = wait_for(
        lambda: (
            (s := read_status(data, name))
            and s["observedGeneration"] != first["observedGeneration"]
            and s["phase"] == "Succeeded"
            and s
        ),
        timeout=30,
        what="second generation succeeded",
    )
    assert [h["generation"] for h in st["history"]] == [first["observedGeneration"], st["observedGeneration"]]
    log = read_log(data, name)
    assert log.index("version-one") < log.index("version-two")
    assert log.count("===== opeva:") == 2
    assert path.exists()


def test_edit_while_running_replaces_the_old_attempt(data, controller):
    name = job_name("replace")
    doc = spec_doc(name, command=["sleep", "300"], terminationGracePeriodSeconds=1)
    write_spec(data, doc)
    old = wait_phase(data, name, "Running")
    write_spec(data, shell_spec(name, "echo replaced", terminationGracePeriodSeconds=1))
    st = wait_for(
        lambda: (s := read_status(data, name)) and s["phase"] == "Succeeded" and s,
        timeout=30,
        what="new generation succeeded",
    )
    assert st["observedGeneration"] != old["observedGeneration"]
    superseded = [h for h in st["history"] if h["generation"] == old["observedGeneration"]]
    assert superseded and superseded[0]["outcome"] == "Stopped" and superseded[0]["reason"] == "Superseded"
    assert not containers(name) or all(c["State"] != "running" for c in containers(name))


def test_invalid_specs_are_recorded_and_harm_nothing(data, engine_controller):
    specs = data / "specs"
    good = job_name("good")
    bad_yaml = job_name("bad-yaml")
    (specs / f"{bad_yaml}.yaml").write_text("apiVersion: opeva/v1\nkind: Job\nmetadata: {name: [\n")
    unknown = job_name("unknown-field")
    doc = spec_doc(unknown)
    doc["spec"]["imagee"] = "typo"
    write_spec(data, doc)
    garbage = job_name("garbage")
    (specs / f"{garbage}.yaml").write_bytes(os.urandom(4096) + b"\x00")
    huge = job_name("huge")
    with open(specs / f"{huge}.yaml", "wb") as f:
        f.truncate(50 * 1024 * 1024)
    link = job_name("escape")
    outside = data.parent / "outside.yaml"
    outside.write_text("apiVersion: opeva/v1\n")
    (specs / f"{link}.yaml").symlink_to(outside)
    noimage = job_name("noimage")
    write_spec(data, spec_doc(noimage, image=f"opeva-test/does-not-exist-{noimage}:v1"))
    write_spec(data, shell_spec(good, "echo fine"))

    assert wait_phase(data, good, "Succeeded")["reason"] == "Completed"
    for name, needle in [
        (bad_yaml, "cannot parse YAML"),
        (unknown, "spec.imagee: unknown field"),
        (garbage, "binary"),
        (huge, "limited to"),
        (link, "outside the specs folder"),
    ]:
        st = wait_phase(data, name, "Failed", reason="InvalidSpec", timeout=10)
        assert needle in st["message"], (name, st["message"])
    st = wait_phase(data, noimage, "Failed", reason="ImageNotFound", timeout=60)
    assert "does-not-exist" in st["message"]
    assert engine_controller.proc.poll() is None, "the controller survived every bad file"


def test_controller_killed_mid_job_adopts_with_one_container_and_complete_log(data, engine):
    """Over Swarm this is also the log's continuity across a restart: no line lost or doubled."""
    name = job_name("adopt")
    ctl = ControllerProcess(data, env=engine.env).start()
    try:
        write_spec(data, shell_spec(name, "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"))
        wait_phase(data, name, "Running")
        wait_for(lambda: "line-10" in read_log(data, name), timeout=20, what="some output captured")
        ctl.kill()
        time.sleep(1.0)  # the job keeps printing while no controller runs
        ctl = ControllerProcess(data, env=engine.env).start()
        st = wait_phase(data, name, "Succeeded", timeout=30)
    finally:
        ctl.kill()
    assert st["attempts"] == 1 and len(st["history"]) == 1
    body = [line for line in read_log(data, name).splitlines() if not line.startswith("=====")]
    assert body == [f"line-{i}" for i in range(1, 41)]
    events = [e["reason"] for e in read_events(data, name)]
    assert events.count("Creating") == 1


def test_second_controller_on_the_same_folder_refuses(data, controller):
    opeva = str(Path(sys.executable).parent / "opeva")  # the installed entry point
    out = subprocess.run([opeva, "run", "--data", str(data), "--no-api"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "another controller already manages this data folder" in out.stderr
    assert controller.proc.poll() is None


def test_restart_with_nothing_changed_changes_nothing(data, tmp_path):
    name = job_name("steady")
    ctl = ControllerProcess(data).start()
    write_spec(data, shell_spec(name, "echo once"))
    before = wait_phase(data, name, "Succeeded")
    ctl.stop()
    ctl = ControllerProcess(data).start()
    time.sleep(2.5)
    ctl.kill()
    after = read_status(data, name)
    assert after == before
    assert read_log(data, name).count("once") == 1
    assert not containers(name)


def test_polling_fallback_sees_dropped_and_deleted_specs(data):
    """For network shares where inotify sees nothing: --poll-specs polls the folder instead."""
    name = job_name("polled")
    ctl = ControllerProcess(data, "--poll-specs").start()
    try:
        wait_for(lambda: "specs_polling" in ctl.output(), timeout=10, what="polling announced")
        path = write_spec(data, spec_doc(name, command=["sleep", "300"], terminationGracePeriodSeconds=1))
        wait_phase(data, name, "Running", timeout=15)
        path.unlink()
        wait_phase(data, name, "Stopped", reason="SpecDeleted", timeout=15)
    finally:
        ctl.kill()


def test_an_entrypoint_that_does_not_exist_fails_the_job_with_the_engines_message(data, controller):
    name = job_name("noexec")
    write_spec(data, spec_doc(name, command=["/no/such/program"]))
    st = wait_phase(data, name, "Failed", timeout=30)
    assert st["reason"] == "CreateFailed" and "/no/such/program" in st["message"]
    assert st["history"][-1]["outcome"] == "Failed"
    wait_for(lambda: not containers(name), timeout=10, what="the unstarted container removed")
