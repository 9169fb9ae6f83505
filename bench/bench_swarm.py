"""Swarm speed: a 50-job burst through `opeva run --runtime swarm` against raw service creates of the same 50 jobs
with 4 threads, and drop -> Running against a single raw service create. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_swarm.py [--jobs 50] [--threads 4] [--drops 3] [--manager unix:///path/docker.sock]

Without --manager a 3-node swarm is started on this machine for the run (tests/swarm/cluster.py: root, dockerd) and
torn down after. Jobs run on any node, network none.

1. Burst. Controller: the clock starts before the first spec is written and stops when every job is Succeeded (its
   exit and log recorded) and its service removed. Raw: each of 4 threads takes jobs in turn and does what the
   controller does for one: create the replicated-job service, poll its task every 0.1 s until it ends, read its
   logs, remove the service. The ratio is controller / raw (target <= 1.1).
2. Drop -> Running. Controller: a `sleep` job's spec written -> status.json says Running. Raw: service create -> its
   task is `running` (polled every 0.05 s). Median of --drops tries each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from docker.types import ContainerSpec, RestartPolicy, ServiceMode, TaskTemplate  # noqa: E402
from e2e.harness import BUSYBOX, ControllerProcess, read_status, shell_spec, spec_doc, wait_for, write_spec  # noqa: E402
from swarm.cluster import SwarmCluster, unavailable_reason  # noqa: E402

ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned")


def controller_burst(root: Path, manager: str, jobs: int) -> float:
    data = root / "burst-data"
    names = [f"burst-{uuid.uuid4().hex[:6]}-{i}" for i in range(jobs)]
    api = docker.APIClient(base_url=manager)
    ctl = ControllerProcess(
        data, env={"OPEVA_RUNTIME": "swarm", "OPEVA_SWARM_HOST": manager, "OPEVA_PROBE_IMAGE": BUSYBOX}
    ).start()
    try:
        t0 = time.monotonic()
        for name in names:
            write_spec(data, shell_spec(name, f"echo job {name}"))

        def done() -> bool:
            states = [(read_status(data, n) or {}).get("phase") for n in names]
            return all(s == "Succeeded" for s in states) and not api.services(filters={"label": "opeva.managed"})

        wait_for(done, timeout=600, interval=0.05, what="every job Succeeded and its service removed")
        return time.monotonic() - t0
    finally:
        ctl.kill()


def raw_job(api: docker.APIClient, name: str, script: str, until: tuple[str, ...] = ENDED, interval: float = 0.1):
    """One job as a bare client would run it: create, poll the task, read the logs, remove."""
    template = TaskTemplate(ContainerSpec(BUSYBOX, command=["sh", "-c", script]), restart_policy=RestartPolicy("none"))
    sid = api.create_service(template, name=name, mode=ServiceMode("replicated-job", replicas=1))["ID"]
    while True:
        tasks = api.tasks(filters={"service": sid})
        if tasks and tasks[0]["Status"]["State"] in until:
            break
        time.sleep(interval)
    return sid


def raw_burst(manager: str, jobs: int, threads: int) -> float:
    api = docker.APIClient(base_url=manager)
    names = [f"raw-{uuid.uuid4().hex[:6]}-{i}" for i in range(jobs)]

    def one(name: str) -> None:
        sid = raw_job(api, name, f"echo job {name}")
        assert b"job" in b"".join(api.service_logs(sid, stdout=True, stderr=True, is_tty=False))
        api.remove_service(sid)

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    return time.monotonic() - t0


def controller_drop(root: Path, manager: str, tries: int) -> list[float]:
    data = root / "drop-data"
    ctl = ControllerProcess(
        data, env={"OPEVA_RUNTIME": "swarm", "OPEVA_SWARM_HOST": manager, "OPEVA_PROBE_IMAGE": BUSYBOX}
    ).start()
    out = []
    try:
        for i in range(tries):
            name = f"drop-{uuid.uuid4().hex[:6]}-{i}"
            t0 = time.monotonic()
            path = write_spec(data, spec_doc(name, command=["sleep", "30"], terminationGracePeriodSeconds=1))
            wait_for(lambda n=name: (read_status(data, n) or {}).get("phase") == "Running", timeout=60, interval=0.02)
            out.append(time.monotonic() - t0)
            path.unlink()
        api = docker.APIClient(base_url=manager)
        wait_for(lambda: not api.services(filters={"label": "opeva.managed"}), timeout=60, what="drop jobs removed")
    finally:
        ctl.kill()
    return out


def raw_drop(manager: str, tries: int) -> list[float]:
    api = docker.APIClient(base_url=manager)
    out = []
    for i in range(tries):
        t0 = time.monotonic()
        sid = raw_job(api, f"rawdrop-{uuid.uuid4().hex[:6]}-{i}", "sleep 30", until=("running",), interval=0.05)
        out.append(time.monotonic() - t0)
        spec = api.inspect_service(sid)
        body = {**spec["Spec"], "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 0}}}
        api._raise_for_status(
            api._post_json(
                api._url("/services/{0}/update", sid), data=body, params={"version": spec["Version"]["Index"]}
            )
        )
        time.sleep(0.5)
        api.remove_service(sid)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--drops", type=int, default=3)
    parser.add_argument("--manager", help="a Swarm manager's Docker API (default: start a local 3-node swarm)")
    args = parser.parse_args()
    cluster = None
    manager = args.manager
    if manager is None:
        reason = unavailable_reason()
        if reason:
            sys.exit(f"bench_swarm: {reason}")
        cluster = SwarmCluster().start()
        manager = cluster.manager_url
    try:
        with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
            root = Path(tmp)
            raw = raw_burst(manager, args.jobs, args.threads)
            ours = controller_burst(root, manager, args.jobs)
            print(f"burst of {args.jobs} jobs on 3 nodes:")
            print(f"  raw service create/poll/logs/remove, {args.threads} threads: {raw:6.2f} s")
            print(f"  opeva run --runtime swarm (Succeeded, logs recorded, removed): {ours:6.2f} s")
            print(f"  ratio controller / raw: {ours / raw:.2f}x (target <= 1.1x)")
            raw_d = raw_drop(manager, args.drops)
            ours_d = controller_drop(root, manager, args.drops)
            print(f"drop -> Running (median of {args.drops}):")
            for what, times in (
                ("raw service create -> task running", raw_d),
                ("spec written -> status Running", ours_d),
            ):
                print(f"  {what:36}: {statistics.median(times):.2f} s  {[round(x, 2) for x in times]}")
            print(f"  ratio: {statistics.median(ours_d) / statistics.median(raw_d):.2f}x")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
