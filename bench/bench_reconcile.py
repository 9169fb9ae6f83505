"""Reconcile-loop speed against the raw Docker SDK, in the same run. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/bench_reconcile.py [--jobs 10] [--burst 50] [--finished 5000] [--idle-seconds 30]

1. drop -> Running: median of N sequential jobs, vs a bare `containers.run(detach=True)` of the same container;
   the same for a spec written in two pieces 300 ms apart (a slow copy), which must run once, whole;
   delete -> container gone and status Stopped, median of N, for a job that exits on SIGTERM.
2. burst: M specs dropped at once -> all Succeeded, vs the raw SDK running the same M containers with 4 threads
   (create, start, wait, read logs, remove: what the controller does for each).
3. idle with K finished jobs in the folder: CPU share of one core and resident memory of `opeva run` over a
   window, and the time of a full resync (every job reconciled) measured in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import seed_finished  # noqa: E402

IMAGE = "opeva-test/busybox:1"
TAG = uuid.uuid4().hex[:6]
LABEL = {"opeva-bench": TAG}


def spec(name: str, args: list[str]) -> dict:
    return {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(LABEL)},
        "spec": {"image": IMAGE, "command": ["sh", "-c"], "args": args, "network": "none"},
    }


def drop(data: Path, doc: dict) -> None:
    specs = data / "specs"
    tmp = specs / f".{doc['metadata']['name']}.tmp"
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, specs / f"{doc['metadata']['name']}.yaml")


def phase(data: Path, name: str) -> str | None:
    try:
        return json.loads((data / "jobs" / name / "status.json").read_text())["phase"]
    except (OSError, ValueError, KeyError):
        return None


def wait_until(check, timeout: float = 120.0, interval: float = 0.002) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("benchmark step timed out")
        time.sleep(interval)


def start_controller(data: Path, *extra: str, timeout: float = 60) -> subprocess.Popen:
    log = open(data.parent / "controller.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--data", str(data), "--no-api", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    beat = data / ".opeva" / "heartbeat.json"
    try:
        wait_until(lambda: beat.exists() and json.loads(beat.read_text() or "{}").get("pid") == proc.pid, timeout, 0.05)
    except BaseException:
        proc.kill()  # never leave a controller holding the folder's lock
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(120)  # writing the indexes of 100,000 jobs on the way out takes a while


def cleanup(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": f"opeva-bench={TAG}"}):
        c.remove(force=True)


def bench_latency(client: docker.DockerClient, data: Path, n: int) -> tuple[float, float]:
    raw = []
    for i in range(n):
        t0 = time.perf_counter()
        c = client.containers.run(
            IMAGE, ["sh", "-c", "sleep 1"], detach=True, network_mode="none", labels=LABEL, name=f"bench-raw-{TAG}-{i}"
        )
        raw.append(time.perf_counter() - t0)
        c.remove(force=True)
    return statistics.median(raw), time_to_running(data, n, "lat", drop)


def time_to_running(data: Path, n: int, prefix: str, write: Callable[[Path, dict], None]) -> float:
    """Median seconds from the first byte of a spec to its job Running, for n jobs written one after another."""
    proc = start_controller(data)
    ours = []
    try:
        for i in range(n):
            name = f"{prefix}-{TAG}-{i}"
            t0 = time.perf_counter()
            write(data, spec(name, ["sleep 1"]))
            wait_until(lambda: phase(data, name) == "Running")  # noqa: B023 (called at once)
            ours.append(time.perf_counter() - t0)
        for i in range(n):
            wait_until(lambda i=i: phase(data, f"{prefix}-{TAG}-{i}") == "Succeeded")
    finally:
        stop(proc)
    return statistics.median(ours)


PIECE_GAP = 0.3  # seconds between the two pieces of a slowly written spec


def drop_in_two_pieces(data: Path, doc: dict) -> None:
    """A slow copy: a valid spec first, the rest of it PIECE_GAP later, through one open file."""
    name = doc["metadata"]["name"]
    with open(data / "specs" / f"{name}.yaml", "w") as f:
        f.write(yaml.safe_dump(doc))
        f.flush()
        time.sleep(PIECE_GAP)
        f.write("  env:\n    PIECE: two\n")


def bench_stop(client: docker.DockerClient, data: Path, n: int) -> tuple[float, float]:
    """delete -> the container is gone (docker ps), and -> status Stopped; a job that exits on SIGTERM."""
    proc = start_controller(data)
    gone_s, stopped_s = [], []
    try:
        for i in range(n):
            name = f"stop-{TAG}-{i}"
            drop(data, spec(name, ["trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done"]))
            wait_until(lambda: phase(data, name) == "Running")  # noqa: B023 (called at once)
            time.sleep(0.3)  # the trap is set
            t0 = time.perf_counter()
            (data / "specs" / f"{name}.yaml").unlink()
            filters = {"label": f"opeva.job={name}"}
            wait_until(lambda: not client.containers.list(filters=filters), 60, 0.01)  # noqa: B023
            gone_s.append(time.perf_counter() - t0)
            wait_until(lambda: phase(data, name) == "Stopped", 60)  # noqa: B023
            stopped_s.append(time.perf_counter() - t0)
    finally:
        stop(proc)
    return statistics.median(gone_s), statistics.median(stopped_s)


def bench_burst(client: docker.DockerClient, data: Path, m: int) -> tuple[float, float]:
    def raw_one(i: int) -> None:
        c = client.containers.run(
            IMAGE,
            ["sh", "-c", "echo hi"],
            detach=True,
            network_mode="none",
            labels=LABEL,
            name=f"bench-burst-{TAG}-{i}",
        )
        c.wait()
        c.logs()
        c.remove(force=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(raw_one, range(m)))
    raw = time.perf_counter() - t0
    proc = start_controller(data)
    try:
        names = [f"burst-{TAG}-{i}" for i in range(m)]
        t0 = time.perf_counter()
        for name in names:
            drop(data, spec(name, ["echo hi"]))
        wait_until(lambda: all(phase(data, n) == "Succeeded" for n in names), 300, 0.01)
        ours = time.perf_counter() - t0
    finally:
        stop(proc)
    return raw, ours


def proc_cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_idle(data: Path, k: int, window: float) -> tuple[float, float, float, float]:
    seed_finished(data, k, ["sh", "-c", "echo done"], IMAGE, LABEL)
    t0 = time.perf_counter()
    proc = start_controller(data, "--resync", "10")
    startup = time.perf_counter() - t0
    try:
        time.sleep(5)  # first reconcile of every job
        c0, w0 = proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window)
        cpu = (proc_cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0) * 100
        rss = proc_rss_mb(proc.pid)
    finally:
        stop(proc)
    return cpu, rss, startup, full_resync_seconds(data)


def full_resync_seconds(data: Path) -> float:
    """In-process: every job enqueued and reconciled once, timed until the queue is drained."""
    from controller.runtime.docker import DockerRuntime
    from controller.settings import Settings
    from controller.store import DataStore
    from controller.wiring import build_controller

    store = DataStore.open(data)
    ctl = build_controller(Settings(data_dir=data, resync_seconds=3600), DockerRuntime(instance=store.instance_id()))
    ctl.start()
    try:
        time.sleep(3)
        wait_until(lambda: len(ctl.queue) == 0, 60, 0.01)
        t0 = time.perf_counter()
        ctl.resync(full=True)
        wait_until(lambda: len(ctl.queue) == 0 and not ctl.queue._processing, 60, 0.001)
        return time.perf_counter() - t0
    finally:
        ctl.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--finished", type=int, default=5000)
    ap.add_argument("--idle-seconds", type=float, default=30)
    args = ap.parse_args()
    client = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="opeva-bench-"))
    try:
        for sub in ("lat", "two", "stop", "burst", "idle"):
            (work / sub / "data" / "specs").mkdir(parents=True)
        raw, ours = bench_latency(client, work / "lat" / "data", args.jobs)
        print(
            f"drop -> Running, median of {args.jobs}: raw containers.run {raw * 1000:.0f} ms, "
            f"opeva {ours * 1000:.0f} ms, ratio {ours / raw:.2f} (target <= 1.2)"
        )
        two = time_to_running(work / "two" / "data", args.jobs, "two", drop_in_two_pieces)
        print(
            f"drop -> Running, spec written in two pieces {PIECE_GAP * 1000:.0f} ms apart, median of {args.jobs}: "
            f"{two * 1000:.0f} ms ({(two - PIECE_GAP) * 1000:.0f} ms after the last piece)"
        )
        gone, stopped = bench_stop(client, work / "stop" / "data", args.jobs)
        print(
            f"delete -> container gone, median of {args.jobs}: {gone * 1000:.0f} ms; "
            f"-> status Stopped: {stopped * 1000:.0f} ms"
        )
        raw, ours = bench_burst(client, work / "burst" / "data", args.burst)
        print(
            f"burst of {args.burst} -> all Succeeded: raw SDK 4 threads {raw:.2f} s, opeva {ours:.2f} s, "
            f"ratio {ours / raw:.2f} (target <= 1.1)"
        )
        cpu, rss, startup, resync = bench_idle(work / "idle" / "data", args.finished, args.idle_seconds)
        print(
            f"{args.finished} finished jobs: idle CPU {cpu:.2f}% of one core (target < 2), RSS {rss:.0f} MB "
            f"(target < 200), start-up {startup:.2f} s, full resync {resync:.3f} s (target < 1)"
        )
    finally:
        cleanup(client)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
