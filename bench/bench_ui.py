"""Benchmark: the dashboard's list page and `/metrics` over 10,000 jobs, beside the plain `GET /jobs` page.

    .venv/bin/python bench/bench_ui.py [--jobs 10000] [--requests 100]

Targets (issue 18): the list page's server time p50 under 50 ms, `/metrics` under 100 ms. Each line is printed
twice: [server] from the Server-Timing header the API sets (until the answer starts), [client] at the client on
loopback through a real uvicorn server.
Running jobs get a progress.json each, so the page reads what it reads in real use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app  # noqa: E402
from api.server import bound_port, start_in_thread, stop  # noqa: E402
from bench.bench_api_list import make_folder, report  # noqa: E402

SERVER = re.compile(r"app;dur=([0-9.]+)")


def timed(client: httpx.Client, url: str, params: dict, n: int) -> tuple[list[float], list[float]]:
    """(server times from the Server-Timing header, client times), in ms."""
    server, wall = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        r.raise_for_status()
        _ = r.content
        wall.append((time.perf_counter() - t0) * 1000)
        server.append(float(SERVER.search(r.headers["server-timing"]).group(1)))
    return server, wall


def after_change(client: httpx.Client, store, url: str, n: int) -> tuple[list[float], list[float]]:
    """The first request after the controller rewrote the index: it pays for parsing it again."""
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(min(n, 20)):
        os.utime(store.root / "job_track.json")
        on_server, on_client = timed(client, url, {}, 1)
        out[0].extend(on_server)
        out[1].extend(on_client)
    return out


def show(label: str, times: tuple[list[float], list[float]]) -> None:
    report(f"{label} [server]", times[0])
    report(f"{label} [client]", times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = make_folder(Path(tmp) / "data", args.jobs)
        for i in range(1, args.jobs, 5):  # the Running ones (phase = PHASES[i % 5])
            progress = store.jobs_dir / f"job-{i:05d}" / "progress"
            progress.mkdir(parents=True, exist_ok=True)
            (progress / "progress.json").write_text(json.dumps({"percent": i % 100, "stage": "training"}))
        print(f"{args.jobs} jobs; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        server, thread = start_in_thread(create_app(store.root), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(server)}"
        n = args.requests
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                client.get("/ui")  # the first view parses the index and gives the session cookie
                print("plain API, for comparison:")
                show("GET /jobs?limit=50 (first page)", timed(client, "/jobs", {"limit": 50}, n))
                show("GET /jobs?limit=50&phase=Running", timed(client, "/jobs", {"limit": 50, "phase": "Running"}, n))
                print("dashboard list page (50 rows):")
                show("GET /ui (first page, by name)", timed(client, "/ui", {}, n))
                show("GET /ui/rows (the live poll)", timed(client, "/ui/rows", {}, n))
                show("GET /ui?page=150 (deep page)", timed(client, "/ui", {"page": "150"}, n))
                show("GET /ui?phase=Running&sort=age", timed(client, "/ui", {"phase": "Running", "sort": "age"}, n))
                show(
                    "GET /ui?label=team=a&q=exp-7&sort=updated&desc=1",
                    timed(client, "/ui", {"label": "team=a", "q": "exp-7", "sort": "updated", "desc": "1"}, n),
                )
                print("metrics:")
                show("GET /metrics", timed(client, "/metrics", {}, n))
                show("GET /metrics right after job_track.json changed", after_change(client, store, "/metrics", n))
                show("GET /ui right after job_track.json changed", after_change(client, store, "/ui", n))
        finally:
            stop(server, thread)


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main()
