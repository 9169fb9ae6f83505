"""Scheduler speed. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/bench_scheduler.py [--pending 1000] [--rounds 200] [--chain 8]

1. One scheduling decision over N pending jobs (mixed priorities, sizes, queues, GPUs) beside 30 running ones:
   the pure pass `schedule()`, and `Scheduler.admit()` when a change forces the pass (its worst case) and when it
   does not (a waiting job looked at again). Target: well under 10 ms per decision at 1,000 pending.
2. Exit -> next start: `opeva run --cpus 1` with a chain of jobs of `cpus: 1`, each running 0.5 s. The gap between
   one job's exit and the next one's start (Docker's own FinishedAt / StartedAt) against a bare container start
   (`containers.run(detach=True)`: create + start) of the same image. Target ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.capacity import Capacity  # noqa: E402
from controller.scheduler import PendingJob, Request, Reservation, Scheduler, schedule  # noqa: E402

IMAGE = "opeva-test/busybox:1"
TAG = uuid.uuid4().hex[:6]
LABEL = {"opeva-bench": TAG}
GI = 2**30


# ---- 1. one decision ------------------------------------------------------------------------------------------
def workload(n: int, seed: int = 7) -> tuple[Capacity, list[Reservation], list[PendingJob]]:
    rng = random.Random(seed)
    capacity = Capacity(
        cpus=64,
        memory=256 * GI,
        gpu_ids=tuple(str(i) for i in range(8)),
        max_running=40,
        queues={"gpu-long": 4, "cpu-batch": 20},
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    running = [
        Reservation(
            f"run-{i}",
            Request(1.5, 4 * GI, 1 if i < 6 else 0),
            (str(i),) if i < 6 else (),
            rng.choice([None, "cpu-batch"]),
            f"c-{i}",
        )
        for i in range(30)
    ]
    pending = [
        PendingJob(
            f"job-{i}",
            Request(rng.choice([0.5, 1, 2, 4, 8]), rng.choice([1, 2, 4, 8]) * GI, rng.choice([0, 0, 0, 1, 2])),
            rng.choice([0, 0, 0, 1, 5, 10]),
            t0 + timedelta(seconds=i),
            rng.choice([None, None, "gpu-long", "cpu-batch"]),
        )
        for i in range(n)
    ]
    return capacity, running, pending


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"median {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, max {ms[-1]:.2f} ms"


def bench_decision(n: int, rounds: int) -> None:
    capacity, running, pending = workload(n)
    plan = schedule(capacity, running, pending)
    print(
        f"{n} pending, {len(running)} running: {len(plan.admitted)} may start, {plan.queue_length} wait, "
        f"{len(plan.unschedulable)} unschedulable"
    )
    print(
        f"  schedule() (pure pass):            {summary(timed(lambda: schedule(capacity, running, pending), rounds))}"
    )

    s = Scheduler(capacity)
    s.rebuild([])
    for r in running:
        s._reserved[r.job] = r  # as rebuilt from containers
    s.enqueue(pending)
    probe = pending[n // 2]
    flip = [0]

    def changed():  # the job asks again with a new priority: the pass must be redone
        flip[0] ^= 1
        s.admit(PendingJob(probe.name, probe.request, probe.priority + flip[0], probe.submitted_at, probe.queue))

    print(f"  Scheduler.admit(), pass redone:    {summary(timed(changed, rounds))}")
    print(f"  Scheduler.admit(), plan unchanged: {summary(timed(lambda: s.admit(probe), rounds))}")


# ---- 2. exit -> next start ------------------------------------------------------------------------------------
def spec(name: str) -> dict:
    return {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(LABEL)},
        "spec": {
            "image": IMAGE,
            "command": ["sh", "-c"],
            "args": ["sleep 0.5"],
            "network": "none",
            "resources": {"cpus": 1},
        },
    }


def status(data: Path, name: str) -> dict:
    try:
        return json.loads((data / "jobs" / name / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(check, timeout: float = 120.0, interval: float = 0.01) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("benchmark step timed out")
        time.sleep(interval)


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def bare_start(client: docker.DockerClient, n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        c = client.containers.run(
            IMAGE,
            ["sh", "-c", "sleep 0.5"],
            detach=True,
            network_mode="none",
            labels=LABEL,
            name=f"bench-sched-raw-{TAG}-{i}",
            nano_cpus=10**9,
        )
        times.append(time.perf_counter() - t0)
        c.remove(force=True)
    return statistics.median(times)


def bench_handover(data: Path, chain: int) -> list[float]:
    log = open(data.parent / "controller.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "run",
            "--data",
            str(data),
            "--no-api",
            "--cpus",
            "1",
            "--memory",
            "4Gi",
            "--resync",
            "60",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        beat = data / ".opeva" / "heartbeat.json"
        wait_until(lambda: beat.exists() and json.loads(beat.read_text() or "{}").get("pid") == proc.pid, 60, 0.05)
        names = [f"chain-{TAG}-{i:02d}" for i in range(chain)]
        for name in names:
            tmp = data / "specs" / f".{name}.tmp"
            tmp.write_text(yaml.safe_dump(spec(name)))
            os.replace(tmp, data / "specs" / f"{name}.yaml")
        wait_until(lambda: all(status(data, n).get("phase") == "Succeeded" for n in names), 60 + 3 * chain)
        runs = sorted((status(data, n) for n in names), key=lambda s: s["startedAt"])
        return [ts(b["startedAt"]) - ts(a["finishedAt"]) for a, b in zip(runs, runs[1:], strict=False)]
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--chain", type=int, default=8)
    args = ap.parse_args()
    bench_decision(args.pending, args.rounds)

    client = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="opeva-bench-sched-"))
    try:
        (work / "data" / "specs").mkdir(parents=True)
        raw = bare_start(client, 7)
        gaps = bench_handover(work / "data", args.chain)
        gap = statistics.median(gaps)
        print(
            f"exit -> next start, median of {len(gaps)}: {gap * 1000:.0f} ms "
            f"(min {min(gaps) * 1000:.0f}, max {max(gaps) * 1000:.0f}); bare container start (create + start) "
            f"{raw * 1000:.0f} ms; ratio {gap / raw:.2f} (target <= 1.2)"
        )
    finally:
        for c in client.containers.list(all=True, filters={"label": f"opeva-bench={TAG}"}):
            c.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
