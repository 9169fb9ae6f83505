"""The command line over a large data folder: `opeva plan` of every spec, `opeva get` of 100 jobs. Asserts nothing.

    .venv/bin/python bench/bench_cli.py --data DIR [--get 100] [--runs 2]

DIR is a data folder such as bench_startup.py leaves (`--data`): 100,000 finished jobs and their specs. Targets
(issue 19): `opeva plan` of 100,000 specs < 5 s, `opeva get` of 100 jobs < 0.5 s. Each is timed as the user runs it
(a new process, imports included), beside its floor measured in the same run: for plan, a bare loop that reads every
spec file and status record; for get, the interpreter start-up plus the same 200 requests (detail and progress of
each job) made with httpx in one thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from api.server import bound_port, start_in_thread, stop  # noqa: E402

OPEVA = [sys.executable, "-m", "cli.main"]


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, env={**os.environ, **(env or {})})
    if done.returncode not in (0, 2):  # plan exits 2 when there are changes
        raise SystemExit(f"{args} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0, len(done.stdout)


def plan_floor(data: Path) -> float:
    t0 = time.perf_counter()
    for folder in (data / "specs", data / ".opeva" / "status"):
        with os.scandir(folder) as it:
            for entry in it:
                with open(entry.path, "rb") as f:
                    f.read()
    return time.perf_counter() - t0


def get_floor(url: str, names: list[str]) -> float:
    script = (
        "import httpx,sys\n"
        f"c=httpx.Client(base_url={url!r})\n"
        f"for n in {names!r}:\n"
        "    c.get(f'/jobs/{n}'); c.get(f'/jobs/{n}/progress')\n"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--get", type=int, default=100, help="jobs named to `opeva get`")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    data = args.data
    specs = sum(1 for _ in os.scandir(data / "specs"))
    print(f"{specs} spec files in {data}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    plan_floor(data)  # warm the cache
    for _ in range(args.runs):
        floor = plan_floor(data)
        took, size = run([*OPEVA, "plan", "--data", str(data), "-o", "json"])
        print(
            f"  opeva plan --data (offline, {specs} specs): {took:.2f} s (target < 5); floor (read every spec and "
            f"record) {floor:.2f} s; ratio {took / floor:.1f}; load {os.getloadavg()[0]:.2f}"
        )

    names = sorted(e.name[:-5] for e in os.scandir(data / ".opeva" / "status"))[: args.get]
    with tempfile.TemporaryDirectory():
        app = create_app(data)
        server, thread = start_in_thread(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(server)}"
        try:
            httpx.get(f"{url}/jobs", params={"limit": 1})  # the index parsed once, as a running API has it
            env = {"OPEVA_SERVER": url}
            for _ in range(args.runs):
                floor = get_floor(url, names)
                took, _ = run([*OPEVA, "get", *names], env)
                print(
                    f"  opeva get of {len(names)} named jobs: {took:.2f} s (target < 0.5); floor (python + the same "
                    f"{2 * len(names)} requests with httpx) {floor:.2f} s; ratio {took / floor:.1f}; "
                    f"load {os.getloadavg()[0]:.2f}"
                )
            bare, _ = run([sys.executable, "-c", "import cli.main"])
            print(f"  importing the command line alone: {bare:.2f} s")
        finally:
            stop(server, thread)


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main()
