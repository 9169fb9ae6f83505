"""Benchmark: `GET /jobs` pages of 100 over 10,000 jobs, through a real uvicorn server on loopback.

    .venv/bin/python bench/bench_api_list.py [--jobs 10000] [--active 100] [--requests 200]

Targets (issues 4, 19): p50 under 20 ms for a page of 100, under 50 ms with a label selector; all jobs (no limit, what
the OPEVA UI polls every 2 s) p50 under 100 ms at 10,000, and 304 to If-None-Match under 5 ms. Prints p50/p95/max
per scenario, the cost of the first request after the controller rewrote job_track.json (the index is re-parsed once
per change) and of a listing right after one job's info changed (one row rebuilt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app  # noqa: E402
from api.server import bound_port, start_in_thread, stop  # noqa: E402
from controller.status import JobStatus, utcnow  # noqa: E402
from controller.store import DataStore  # noqa: E402

PHASES = ["Pending", "Running", "Succeeded", "Failed", "Stopped"]


def make_folder(root: Path, jobs: int, active: int = 100) -> DataStore:
    """`jobs` jobs, the first `active` of them Pending or Running, the rest finished (Succeeded, Failed, Stopped)."""
    store = DataStore.open(root)
    now = utcnow()
    statuses = {}
    for i in range(jobs):
        name = f"job-{i:05d}"
        statuses[name] = JobStatus(
            name=name,
            phase=PHASES[i % 2] if i < active else PHASES[2 + i % 3],
            reason=None,
            attempts=1 + i % 3,
            updatedAt=now,
            containerName=f"opeva-{name}-1",
            containerId=f"{i:064x}",
            labels={"experiment": f"exp-{i % 20}", "team": "a" if i % 2 else "b"},
        )
        job_dir = store.jobs_dir / name
        job_dir.mkdir()
        (job_dir / "job_info.json").write_text(
            json.dumps(
                {
                    "image": "calof/opeva_simulator:latest",
                    "container_name": f"opeva-{name}-1",
                    "labels": statuses[name].labels,
                    "mlflow_run_id": f"{i:032x}",
                    "created_at": now.isoformat(),
                }
            )
        )
    store.write_job_track(statuses)
    store.write_status(statuses["job-00007"])  # a job the API knows by its record, for the log scenarios
    store.ensure_job_dirs("job-00007")
    line = "epoch 1 reward 0.31 loss 0.12 " * 3 + "\n"
    store.log_path("job-00007").write_text(line * (2_000_000 // len(line)))
    store.progress_path("job-00007").write_text(json.dumps({"percent": 42, "metrics": {"reward": 0.5}}))
    return store


def timed(
    client: httpx.Client, url: str, params: Any, n: int, text: bool = False, headers: Any = None, status: int = 200
) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params(i) if callable(params) else params, headers=headers)
        assert r.status_code == status, (r.status_code, r.text[:200])
        r.content if text or status == 304 else r.json()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(
        f"  {label:<56} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=100, help="jobs Pending or Running (the rest are finished)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--unlimited-requests",
        type=int,
        help="requests per no-limit scenario (default: --requests; at 100,000 jobs each takes seconds)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = make_folder(Path(tmp) / "data", args.jobs, args.active)
        size = (store.root / "job_track.json").stat().st_size
        print(
            f"data folder: {args.jobs} jobs ({args.active} pending or running), job_track.json {size / 1e6:.1f} MB "
            f"(built in {time.perf_counter() - t0:.1f} s); python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        app = create_app(store.root)
        server, thread = start_in_thread(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(server)}"
        n = args.requests
        u = args.unlimited_requests or n
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                client.get("/jobs", params={"limit": 1})  # warm the index once
                print("GET /jobs, pages of 100 (each item includes its job_info.json):")
                pages = args.jobs // 100
                report("first page", timed(client, "/jobs", {"limit": 100}, n))
                report(
                    "pages across the list (continue=...)",
                    timed(
                        client, "/jobs", lambda i: {"limit": 100, "continue": f"job-{(i * 97 % pages) * 100:05d}"}, n
                    ),
                )
                report("phase=Running", timed(client, "/jobs", {"limit": 100, "phase": "Running"}, n))
                report(
                    "label=experiment=exp-7 & team=a (page after job-05000)",
                    timed(
                        client,
                        "/jobs",
                        {"limit": 100, "label": ["experiment=exp-7", "team=a"], "continue": "job-05000"},
                        n,
                    ),
                )
                report(
                    "phase=Failed,Stopped & label=team=b",
                    timed(client, "/jobs", {"limit": 100, "phase": "Failed,Stopped", "label": "team=b"}, n),
                )
                # the controller rewrites the index: the next request re-parses it once
                cold = []
                for _ in range(min(n, 20)):
                    os.utime(store.root / "job_track.json")
                    cold += timed(client, "/jobs", {"limit": 100}, 1)
                report("first page right after job_track.json changed", cold)
                report("all jobs, no limit, body read (the UI's 2 s poll)", timed(client, "/jobs", {}, u, text=True))
                report("all jobs, no limit, body read and parsed", timed(client, "/jobs", {}, min(u, 20)))
                etag = client.get("/jobs").headers["ETag"]
                report(
                    "all jobs, If-None-Match unchanged -> 304",
                    timed(client, "/jobs", {}, u, headers={"If-None-Match": etag}, status=304),
                )
                changed = []
                for i in range(min(u, 20)):  # the controller rewrites one job's record: one row is rebuilt
                    store.write_job_info(f"job-{i * 7:05d}", {"run_name": f"r{i}"})
                    changed += timed(client, "/jobs", {}, 1, text=True)
                report("all jobs, no limit, right after one job's info changed", changed)
                print("GET /jobs/NAME/logs (a 2 MB log; every request opens it by the job-file rule):")
                report("tail=100", timed(client, "/jobs/job-00007/logs", {"tail": 100}, n, text=True))
                report("whole log", timed(client, "/jobs/job-00007/logs", {}, n, text=True))
                report("GET /jobs/NAME/progress", timed(client, "/jobs/job-00007/progress", {}, n))
        finally:
            stop(server, thread)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main()
