"""Start-up, memory and resync with a large history: figures and ratios to the physical floor. Asserts nothing.

    .venv/bin/python bench/bench_startup.py [--finished 100000] [--running 50] [--pending 50] [--data DIR]

A data folder with FINISHED settled jobs (seeded as a controller leaves them; reused when --data already holds
them), RUNNING jobs whose containers are up and PENDING specs dropped while the controller was down. Then `opeva run`
is started and timed to ready (heartbeat) and until every running job is adopted and every pending one is running.
The floor is a bare Python loop that stats and reads every status record of the folder (warm cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_reconcile import (  # noqa: E402
    IMAGE,
    LABEL,
    cleanup,
    drop,
    phase,
    proc_cpu_seconds,
    proc_rss_mb,
    spec,
    start_controller,
    stop,
    wait_until,
)
from bench.seed import seed_finished  # noqa: E402


def floor_seconds(data: Path) -> float:
    """Stat and read every status record: what any start-up must at least do if it looked at each job once."""
    t0 = time.perf_counter()
    with os.scandir(data / ".opeva" / "status") as it:
        for entry in it:
            try:
                os.stat(entry.path)
                with open(entry.path, "rb") as f:
                    f.read()
            except OSError:
                pass
    return time.perf_counter() - t0


def full_resync_seconds(data: Path) -> float:
    from controller.runtime.docker import DockerRuntime
    from controller.settings import Settings
    from controller.store import DataStore
    from controller.wiring import build_controller

    store = DataStore.open(data)
    ctl = build_controller(Settings(data_dir=data, resync_seconds=3600), DockerRuntime(instance=store.instance_id()))
    ctl.start()
    try:
        wait_until(lambda: len(ctl.queue) == 0 and not ctl.queue._processing, 300, 0.01)
        time.sleep(1)
        t0 = time.perf_counter()
        ctl.resync(full=True)
        wait_until(lambda: len(ctl.queue) == 0 and not ctl.queue._processing, 300, 0.001)
        return time.perf_counter() - t0
    finally:
        ctl.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--finished", type=int, default=100_000)
    ap.add_argument("--running", type=int, default=50)
    ap.add_argument("--pending", type=int, default=50)
    ap.add_argument("--idle-seconds", type=float, default=20)
    ap.add_argument("--data", type=Path, help="a data folder to seed once and reuse (kept)")
    args = ap.parse_args()
    client = docker.from_env()
    work = None
    if args.data is None:
        work = Path(tempfile.mkdtemp(prefix="opeva-bench-"))
        data = work / "data"
    else:
        data = args.data
    (data / "specs").mkdir(parents=True, exist_ok=True)
    tag = LABEL["opeva-bench"]
    try:
        have = sum(1 for _ in os.scandir(data / "jobs")) if (data / "jobs").exists() else 0
        if have < args.finished:
            t0 = time.perf_counter()
            seed_finished(data, args.finished, ["sh", "-c", "echo done"], IMAGE, LABEL)
            print(f"seeded {args.finished} finished jobs in {time.perf_counter() - t0:.0f} s")
        running = [f"run-{tag}-{i}" for i in range(args.running)]
        pending = [f"pend-{tag}-{i}" for i in range(args.pending)]
        if running:
            proc = start_controller(data, timeout=600)
            try:
                for name in running:
                    drop(data, spec(name, ["sleep 3600"]))
                wait_until(lambda: all(phase(data, n) == "Running" for n in running), 600, 0.2)
            finally:
                stop(proc)
        for name in pending:
            drop(data, spec(name, ["sleep 3600"]))
        floor_seconds(data)  # warm the cache as the controller's start will find it
        floor = floor_seconds(data)

        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = start_controller(data, "--resync", "10", timeout=600)
        ready = time.perf_counter() - t0
        try:
            wait_until(lambda: all(phase(data, n) == "Running" for n in running + pending), 600, 0.05)
            all_running = time.perf_counter() - t0
            time.sleep(5)
            c0, w0 = proc_cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            cpu = (proc_cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0) * 100
            rss = proc_rss_mb(proc.pid)
        finally:
            stop(proc)
        resync = full_resync_seconds(data)
        jobs = args.finished + args.running + args.pending
        print(
            f"{args.finished} finished + {args.running} running + {args.pending} pending ({jobs} records):\n"
            f"  start-up to ready {ready:.2f} s (target < 3); floor (stat+read every status.json) {floor:.2f} s; "
            f"ratio {ready / floor:.1f} (target <= 3)\n"
            f"  all running adopted and all pending running after {all_running:.2f} s\n"
            f"  RSS {rss:.0f} MB (target < 300); idle CPU {cpu:.2f}% of one core (target < 1); "
            f"full resync {resync:.2f} s (target < 2)\n"
            f"  load average (1 min) {load_before:.2f} at start-up, {os.getloadavg()[0]:.2f} at the end, "
            f"{os.cpu_count()} CPUs"
        )
    finally:
        cleanup(client)
        for name in running + pending:
            (data / "specs" / f"{name}.yaml").unlink(missing_ok=True)
            shutil.rmtree(data / "jobs" / name, ignore_errors=True)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
