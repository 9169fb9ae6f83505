"""Benchmark: `GET /jobs` pages of 100 over 10,000 jobs, through a real uvicorn server on loopback.

    .venv/bin/python bench/bench_api_list.py [--jobs 10000] [--requests 200]

Target (issue 4): p50 under 100 ms for a page of 100. Prints p50/p95/max per scenario, and the cost of the first
request after the controller rewrote job_track.json (the index is re-parsed once per change).
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


def make_folder(root: Path, jobs: int) -> DataStore:
    store = DataStore.open(root)
    now = utcnow()
    statuses = {}
    for i in range(jobs):
        name = f"job-{i:05d}"
        statuses[name] = JobStatus(
            name=name,
            phase=PHASES[i % 5],
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
    store.ensure_job_dirs("job-00007")
    line = "epoch 1 reward 0.31 loss 0.12 " * 3 + "\n"
    store.log_path("job-00007").write_text(line * (2_000_000 // len(line)))
    store.progress_path("job-00007").write_text(json.dumps({"percent": 42, "metrics": {"reward": 0.5}}))
    return store


def timed(client: httpx.Client, url: str, params: Any, n: int, text: bool = False) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params(i) if callable(params) else params)
        r.raise_for_status()
        r.text if text else r.json()
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
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = make_folder(Path(tmp) / "data", args.jobs)
        size = (store.root / "job_track.json").stat().st_size
        print(
            f"data folder: {args.jobs} jobs, job_track.json {size / 1e6:.1f} MB "
            f"(built in {time.perf_counter() - t0:.1f} s); python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        app = create_app(store.root)
        server, thread = start_in_thread(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(server)}"
        n = args.requests
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
                report("all jobs, no limit (the seed's default)", timed(client, "/jobs", {}, min(n, 10)))
                print("GET /jobs/NAME/logs (a 2 MB log; every request opens it by the job-file rule):")
                report("tail=100", timed(client, "/jobs/job-00007/logs", {"tail": 100}, n, text=True))
                report("whole log", timed(client, "/jobs/job-00007/logs", {}, n, text=True))
                report("GET /jobs/NAME/progress", timed(client, "/jobs/job-00007/progress", {}, n))
        finally:
            stop(server, thread)


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main()
