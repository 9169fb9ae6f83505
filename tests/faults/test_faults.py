"""Faults beyond a controller crash: the engine restarting or away, a reboot, a full disk, containers removed
behind our back, specs changed while no controller ran. The five invariants are checked after each."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from e2e.harness import (
    ControllerProcess,
    containers,
    job_name,
    read_events,
    read_json_file,
    read_status,
    shell_spec,
    spec_doc,
    wait_for,
    wait_phase,
    write_spec,
)

from .dockerd import require_control, start_dockerd, stop_dockerd
from .invariants import EventRecorder, StatusPoller, check, counting_script, instance_of, report, settled
from .proxy import SocketRelay

LINES = 10


def start_with_recorders(data: Path, names: list[str], *args: str, **env: str):
    ctl = ControllerProcess(data, *args, resync=1.0, env=env).start()
    return ctl, EventRecorder(instance_of(data)).start(), StatusPoller(data, names).start()


def finish(ctl, recorder, poller, data, expected, fault, t0=None):
    recovery = None
    if t0 is not None:
        wait_for(lambda: settled(data, expected), timeout=90, what="desired state after the fault")
        recovery = time.monotonic() - t0
    time.sleep(0.5)
    ctl.kill()
    recorder.stop()
    poller.stop()
    violations = check(data, expected, LINES, recorder, poller)
    report(fault, 1, len(violations), recovery)
    assert not violations, violations


def interrupted_then_succeeded(data: Path, name: str) -> dict:
    st = wait_phase(data, name, "Succeeded", timeout=90)
    outcomes = [h["outcome"] for h in st["history"]]
    assert outcomes[0] == "Interrupted" and outcomes[-1] == "Succeeded", outcomes
    assert st["failures"] == 0, "an interruption never counts against backoffLimit"
    assert "Interrupted" in [e["reason"] for e in read_events(data, name)]
    return st


@pytest.mark.docker
def test_docker_daemon_restart_interrupts_and_reruns(data):
    require_control()
    long_job, done_job = job_name("dmn-long"), job_name("dmn-done")
    ctl, rec, poll = start_with_recorders(data, [long_job, done_job])
    write_spec(data, shell_spec(done_job, counting_script(LINES, 0.01)))
    wait_phase(data, done_job, "Succeeded")
    # attempt 1 sleeps, so the restart lands mid-run; attempt 2 prints its lines and succeeds
    write_spec(
        data,
        shell_spec(
            long_job,
            f'[ "$OPEVA_ATTEMPT" = 1 ] && {{ echo line-1; sleep 300; }}; {counting_script(LINES, 0.01)}',
            terminationGracePeriodSeconds=1,
        ),
    )
    wait_for(lambda: (s := read_status(data, long_job)) and s["phase"] == "Running" and s, timeout=30, what="running")
    t0 = time.monotonic()
    start_dockerd(stop_dockerd())
    st = interrupted_then_succeeded(data, long_job)
    assert st["attempts"] == 2
    assert read_status(data, done_job)["attempts"] == 1, "a finished job is never run again"
    rec.stop()
    finish(ctl, EventRecorder(instance_of(data)), poll, data, {done_job: "Succeeded"}, "Docker daemon restart", t0)


@pytest.mark.docker
def test_simulated_reboot(data):
    """Controller killed, daemon stopped (containers die), both started again."""
    require_control()
    done, running, suspended, deleted = (job_name(f"rb-{k}") for k in ("done", "run", "susp", "del"))
    ctl, rec, poll = start_with_recorders(data, [done, running, suspended, deleted])
    write_spec(data, shell_spec(done, counting_script(LINES, 0.01)))
    write_spec(
        data,
        shell_spec(
            running,
            f'[ "$OPEVA_ATTEMPT" = 1 ] && {{ echo line-1; sleep 300; }}; {counting_script(LINES, 0.01)}',
            terminationGracePeriodSeconds=1,
        ),
    )
    write_spec(data, spec_doc(suspended, command=["sleep", "300"], suspend=True))
    del_path = write_spec(data, spec_doc(deleted, command=["sleep", "300"], terminationGracePeriodSeconds=1))
    wait_phase(data, done, "Succeeded")
    wait_phase(data, running, "Running")
    wait_phase(data, suspended, "Stopped")
    wait_phase(data, deleted, "Running")
    del_path.unlink()
    wait_phase(data, deleted, "Stopped", reason="SpecDeleted")
    ctl.kill()
    cmd = stop_dockerd()
    start_dockerd(cmd)
    t0 = time.monotonic()
    ctl = ControllerProcess(data, resync=1.0).start()
    interrupted_then_succeeded(data, running)
    assert read_status(data, done)["attempts"] == 1
    assert read_status(data, suspended)["phase"] == "Stopped" and read_status(data, suspended)["attempts"] == 0
    assert read_status(data, deleted)["reason"] == "SpecDeleted" and not [
        c for c in containers(deleted) if c["State"] == "running"
    ]
    finish(
        ctl,
        rec,
        poll,
        data,
        {done: "Succeeded", running: "Succeeded", suspended: "Stopped", deleted: "Stopped"},
        "simulated reboot (controller + daemon)",
        t0,
    )


@pytest.mark.docker
def test_docker_unreachable_for_a_while(data, tmp_path):
    outage = float(os.environ.get("OPEVA_OUTAGE_SECONDS", "8"))
    relay = SocketRelay(tmp_path / "docker.sock").start()
    during, before = job_name("away-during"), job_name("away-before")
    ctl, rec, poll = start_with_recorders(data, [during, before], DOCKER_HOST=relay.url)
    write_spec(data, shell_spec(before, counting_script(LINES, 0.01, then="sleep 3")))
    wait_phase(data, before, "Running")
    lines_before = len(ctl.output().splitlines())
    cpu0 = _cpu(ctl.proc.pid)
    relay.cut()
    t_cut = time.monotonic()
    time.sleep(1)
    write_spec(data, shell_spec(during, counting_script(LINES, 0.01)))  # a spec dropped while Docker is away
    time.sleep(max(outage - 1, 0))
    assert ctl.proc.poll() is None, "the controller survives the engine going away"
    beat = read_json_file(data / ".opeva" / "heartbeat.json")
    assert beat["docker"] is False and beat["pid"] == ctl.proc.pid, "it keeps serving status"
    cpu = (_cpu(ctl.proc.pid) - cpu0) / (time.monotonic() - t_cut)
    new_lines = len(ctl.output().splitlines()) - lines_before
    assert cpu < 0.2, f"no busy loop while the engine is away ({cpu:.0%} of a core)"
    assert new_lines <= max(10, outage / 60 * 10), f"{new_lines} log lines during a {outage} s outage"
    relay.start()
    t0 = time.monotonic()
    finish(ctl, rec, poll, data, {during: "Succeeded", before: "Succeeded"}, f"Docker unreachable {outage:.0f} s", t0)
    assert read_status(data, before)["attempts"] == 1, "the job kept running through the outage; not rerun"


def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.docker
def test_full_disk_for_the_data_folder(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small filesystem")
    data = tmp_path / "small" / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(data)], check=True)
    try:
        (data / "specs").mkdir()
        name = job_name("fulldisk")
        ctl, rec, poll = start_with_recorders(data, [name])
        write_spec(data, shell_spec(name, f"sleep 2; {counting_script(LINES, 0.3)}"))
        wait_phase(data, name, "Running")
        filler = data / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        time.sleep(6)
        assert ctl.proc.poll() is None, "the controller survives a full disk"
        assert [c for c in containers(name) if c["State"] in ("running", "exited")], "the job keeps its container"
        assert read_json_file(data / "jobs" / name / "status.json") is not None, "no corrupt status"
        out = ctl.output()
        assert "No space left on device" in out, "the failure is logged"
        filler.unlink()
        t0 = time.monotonic()
        finish(ctl, rec, poll, data, {name: "Succeeded"}, "full disk for the data folder", t0)
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


@pytest.mark.docker
def test_container_removed_behind_our_back(data):
    name = job_name("rmf")
    ctl, rec, poll = start_with_recorders(data, [name])
    write_spec(
        data,
        shell_spec(name, f'[ "$OPEVA_ATTEMPT" = 1 ] && {{ echo line-1; sleep 300; }}; {counting_script(LINES, 0.01)}'),
    )
    st = wait_phase(data, name, "Running")
    subprocess.run(["docker", "rm", "-f", st["containerName"]], check=True, capture_output=True)
    t0 = time.monotonic()
    st = interrupted_then_succeeded(data, name)
    assert st["history"][0]["reason"] == "ContainerRemoved"
    rec.stop()
    finish(ctl, EventRecorder(instance_of(data)), poll, data, {}, "container removed (docker rm -f)", t0)


@pytest.mark.docker
def test_specs_changed_while_the_controller_is_down(data):
    kept, edited, deleted, added = (job_name(f"down-{k}") for k in ("kept", "edit", "del", "new"))
    ctl, rec, poll = start_with_recorders(data, [kept, edited, deleted, added])
    write_spec(data, shell_spec(kept, counting_script(LINES, 0.01)))
    edit_doc = shell_spec(edited, counting_script(LINES, 0.01))
    write_spec(data, edit_doc)
    del_path = write_spec(data, spec_doc(deleted, command=["sleep", "300"], terminationGracePeriodSeconds=1))
    for n in (kept, edited):
        wait_phase(data, n, "Succeeded")
    first_gen = read_status(data, edited)["observedGeneration"]
    wait_phase(data, deleted, "Running")
    ctl.kill()
    edit_doc["spec"]["env"] = {"CHANGED": "1"}
    write_spec(data, edit_doc)
    del_path.unlink()
    write_spec(data, shell_spec(added, counting_script(LINES, 0.01)))
    t0 = time.monotonic()
    ctl = ControllerProcess(data, resync=1.0).start()
    wait_for(
        lambda: (s := read_status(data, edited)) and s["observedGeneration"] != first_gen and s["phase"] == "Succeeded",
        timeout=30,
        what="edited job reran",
    )
    wait_phase(data, deleted, "Stopped", reason="SpecDeleted", timeout=30)
    assert read_status(data, kept)["attempts"] == 1
    rec.stop()
    finish(
        ctl,
        EventRecorder(instance_of(data)),
        poll,
        data,
        {kept: "Succeeded", added: "Succeeded", deleted: "Stopped"},
        "specs changed while controller down",
        t0,
    )
