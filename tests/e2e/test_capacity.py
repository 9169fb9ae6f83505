"""Capacity, GPUs and the queue end to end: real `opeva run`, real Docker, small configured capacities.

Jobs that must hold their share wait for a file in the data folder (`go-NAME`), so a test decides when they end.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from controller.runtime.base import CreateRejected
from controller.runtime.docker import DockerRuntime
from controller.settings import Settings
from controller.store import DataStore
from controller.wiring import build_controller

from .harness import (
    ControllerProcess,
    containers,
    job_name,
    read_events,
    read_json_file,
    read_status,
    shell_spec,
    wait_for,
    wait_phase,
    write_spec,
)


@pytest.fixture
def start():
    """Start `opeva run` with extra arguments; every controller started is killed at the end (not its jobs)."""
    started: list[ControllerProcess] = []

    def run(data: Path, *args: str, resync: float = 2.0) -> ControllerProcess:
        proc = ControllerProcess(data, *args, resync=resync).start()
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.kill()


def held(name: str, **spec) -> dict:
    """A job that runs until the test creates DATA/go-NAME."""
    spec.setdefault("terminationGracePeriodSeconds", 0)
    return shell_spec(name, f"until [ -f /data/go-{name} ]; do sleep 0.05; done; echo released", **spec)


def release(data: Path, name: str) -> None:
    (data / f"go-{name}").touch()


def quick(name: str, **spec) -> dict:
    return shell_spec(name, "echo done", **spec)


def running(names: list[str]) -> list[str]:
    return [n for n in names if any(c["State"] == "running" for c in containers(n))]


def heartbeat(data: Path) -> dict:
    return read_json_file(data / ".opeva" / "heartbeat.json") or {}


# ---- the order --------------------------------------------------------------------------------------------------
def test_order_is_priority_then_submission_time_and_the_next_job_starts_at_once(data, start):
    # resync every 60 s: the jobs can only start this quickly if an ended attempt wakes the next one
    start(data, "--cpus", "1", "--memory", "1Gi", resync=60)
    block = job_name("block")
    write_spec(data, held(block, resources={"cpus": 1}))
    wait_phase(data, block, "Running")
    # submitted in this order; the names sort the other way round, so FIFO is not name order
    first, second, urgent = job_name("zz-first"), job_name("mm-second"), job_name("aa-urgent")
    for name, priority in ((first, 0), (second, 0), (urgent, 5)):
        write_spec(data, quick(name, resources={"cpus": 1}, priority=priority))
        wait_phase(data, name, "Pending", reason="InsufficientCPU")

    order = [urgent, first, second]
    wait_for(
        lambda: [read_status(data, n)["queuePosition"] for n in order] == [1, 2, 3],
        timeout=10,
        what="queue positions 1, 2, 3",
    )
    st = read_status(data, second)
    cond = next(c for c in st["conditions"] if c["type"] == "Pending")
    assert (cond["status"], cond["reason"]) == ("True", "InsufficientCPU")
    assert "position 3 of 3" in st["message"] and "position 3 of 3" in cond["message"]

    release(data, block)
    done = [wait_phase(data, n, "Succeeded", timeout=20) for n in order]
    assert sorted(order, key=lambda n: read_status(data, n)["startedAt"]) == order
    previous = read_status(data, block)
    for st in done:  # one CPU: never two at once, and each starts right after the one before it ends
        gap = _seconds(st["startedAt"]) - _seconds(previous["finishedAt"])
        assert 0 <= gap < 3, (st["name"], gap)
        assert st["queuePosition"] is None
        previous = st


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---- limits ------------------------------------------------------------------------------------------------------
def test_queue_limits_and_global_max_running(data, start):
    start(data, "--cpus", "8", "--max-running", "3", "--queues", '{"gpu-long": {"maxRunning": 1}}')
    q1, q2 = job_name("q-one"), job_name("q-two")
    free1, free2, free3 = job_name("free-one"), job_name("free-two"), job_name("free-three")
    write_spec(data, held(q1, queue="gpu-long"))
    wait_phase(data, q1, "Running")
    write_spec(data, held(q2, queue="gpu-long"))
    st = wait_phase(data, q2, "Pending", reason="QueueFull")
    assert "queue 'gpu-long' runs 1 of its maxRunning 1" in st["message"]
    for name in (free1, free2):
        write_spec(data, held(name))
        wait_phase(data, name, "Running")
    write_spec(data, quick(free3))
    st = wait_phase(data, free3, "Pending", reason="QueueFull")
    assert "3 of maxRunning 3" in st["message"]
    [c] = containers(q1)
    assert "opeva.queue=gpu-long" in c["Labels"]

    release(data, q1)
    wait_phase(data, q2, "Running", timeout=10)  # the queue's slot is free; three still run in all
    time.sleep(0.5)
    assert read_status(data, free3)["phase"] == "Pending"
    assert len(running([q2, free1, free2, free3])) == 3

    for name in (q2, free1, free2):
        release(data, name)
    for name in (q1, q2, free1, free2, free3):
        wait_phase(data, name, "Succeeded", timeout=20)


def test_big_job_at_the_head_is_not_starved_by_small_ones(data, start):
    start(data, "--cpus", "2", "--memory", "1Gi")
    small1, big, small2 = job_name("small-one"), job_name("big"), job_name("small-two")
    mem_only = job_name("mem-only")
    write_spec(data, held(small1, resources={"cpus": 1}))
    wait_phase(data, small1, "Running")
    write_spec(data, quick(big, resources={"cpus": 2}))
    wait_phase(data, big, "Pending", reason="InsufficientCPU")
    # one CPU is free, but the big job ahead needs it: the small job waits behind it
    write_spec(data, held(small2, resources={"cpus": 1}))
    st = wait_phase(data, small2, "Pending", reason="InsufficientCPU")
    assert "jobs ahead" in st["message"]
    # what the big job does not need may still be used (backfill): memory only, no CPU asked for
    write_spec(data, quick(mem_only, resources={"memory": "64Mi"}))
    wait_phase(data, mem_only, "Succeeded")
    time.sleep(1.0)
    assert read_status(data, small2)["phase"] == "Pending"
    assert read_status(data, big)["phase"] == "Pending"

    release(data, small1)
    st_big = wait_phase(data, big, "Succeeded", timeout=20)
    st_small = wait_phase(data, small2, "Running", timeout=20)
    assert st_small["startedAt"] >= st_big["finishedAt"]
    release(data, small2)
    wait_phase(data, small2, "Succeeded", timeout=20)


def test_a_job_bigger_than_the_machine_fails_unschedulable(data, start):
    start(data, "--cpus", "2", "--memory", "1Gi", "--gpus", "none")
    cases = {
        job_name("too-many-cpus"): ({"cpus": 4}, "4 CPUs requested, the machine offers 2 CPUs"),
        job_name("too-much-memory"): ({"memory": "2Gi"}, "2Gi of memory requested, the machine offers 1Gi"),
        job_name("no-gpu-here"): ({"gpus": 1}, "1 GPU requested, the machine has none"),
    }
    for name, (resources, _) in cases.items():
        write_spec(data, quick(name, resources=resources))
    for name, (_, message) in cases.items():
        st = wait_phase(data, name, "Failed")
        assert st["reason"] == "Unschedulable" and message in st["message"], st
        assert st["attempts"] == 0 and not containers(name)
        assert any(e["reason"] == "Failed" and "Unschedulable" in e["message"] for e in read_events(data, name))


# ---- restart -----------------------------------------------------------------------------------------------------
def test_restart_with_jobs_running_rebuilds_reservations_and_never_over_commits(data, start):
    args = ("--cpus", "2", "--memory", "1Gi")
    first = start(data, *args)
    r1, r2, waiting = job_name("run-one"), job_name("run-two"), job_name("waits")
    for name in (r1, r2):
        write_spec(data, held(name, resources={"cpus": 1, "memory": "128Mi"}))
        wait_phase(data, name, "Running")
    write_spec(data, quick(waiting, resources={"cpus": 1}))
    wait_phase(data, waiting, "Pending", reason="InsufficientCPU")

    first.kill()
    second = start(data, *args)
    # the new controller read the running containers' CPU quota and memory limit back from Docker
    beat = wait_for(
        lambda: (
            (b := heartbeat(data)).get("pid") == second.proc.pid
            and b.get("capacity")
            and b["capacity"]["used"]["running"] == 2
            and b
        ),
        timeout=10,
        what="capacity rebuilt",
    )
    assert beat["capacity"]["used"]["cpus"] == 2.0 and beat["capacity"]["used"]["memory"] == 2 * 128 * 2**20
    assert beat["capacity"]["waiting"] == 1
    time.sleep(1.5)  # every job has been looked at again by now
    assert read_status(data, waiting)["phase"] == "Pending" and not containers(waiting)
    assert running([r1, r2]) == [r1, r2]

    release(data, r1)
    wait_phase(data, waiting, "Succeeded", timeout=20)
    assert read_status(data, r2)["phase"] == "Running"
    release(data, r2)
    wait_phase(data, r2, "Succeeded", timeout=20)


# ---- GPUs --------------------------------------------------------------------------------------------------------
class DeviceRecordingRuntime(DockerRuntime):
    """The real engine, with one change for a machine without GPUs.

    A container with GPU device requests is created for real, so Docker stores its `HostConfig.DeviceRequests`, but it
    cannot start here (no GPU, no nvidia runtime). This runtime records what Docker stored, removes that container and
    runs the same request without the device requests, so the job still runs and frees its GPUs when it ends.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.device_requests: dict[str, list] = {}

    def create_and_start(self, req):
        if not req.gpu_ids:
            return super().create_and_start(req)
        try:
            info = super().create_and_start(req)
        except CreateRejected:
            info = None  # created, but it could not start: expected here
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{json .HostConfig.DeviceRequests}}", req.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.device_requests[req.name] = json.loads(out)
        if info is not None and info.running:  # a machine with a GPU ran it: keep it
            return info
        self.remove(req.name)
        return super().create_and_start(dataclasses.replace(req, gpu_ids=()))


def test_gpus_are_assigned_by_device_id_and_never_shared(data):
    store = DataStore.open(data)
    runtime = DeviceRecordingRuntime(instance=store.instance_id())
    settings = Settings(data_dir=data, resync_seconds=2.0, cpus=8.0, memory=2**30, gpus=("0", "1"))
    ctl = build_controller(settings, runtime)
    ctl.start()
    try:
        g1, g2, g3 = job_name("gpu-one"), job_name("gpu-two"), job_name("gpu-three")
        for name in (g1, g2):
            write_spec(data, held(name, resources={"gpus": 1}))
            wait_phase(data, name, "Running")
        write_spec(data, quick(g3, resources={"gpus": 1}))
        wait_phase(data, g3, "Pending", reason="InsufficientGPU")

        ids = {n: read_status(data, n)["gpuIds"] for n in (g1, g2)}
        assert sorted(ids.values()) == [["0"], ["1"]]
        for name in (g1, g2):
            [request] = runtime.device_requests[read_status(data, name)["containerName"]]
            assert request["DeviceIDs"] == ids[name] and request["Driver"] == "nvidia"
            assert request["Capabilities"] == [["gpu"]]

        release(data, g1)
        st = wait_phase(data, g3, "Succeeded", timeout=20)
        assert st["gpuIds"] == ids[g1]  # the GPU g1 gave back, and not g2's
        [request] = runtime.device_requests[st["containerName"]]
        assert request["DeviceIDs"] == ids[g1]
        release(data, g2)
        wait_phase(data, g2, "Succeeded", timeout=20)
    finally:
        ctl.stop()
