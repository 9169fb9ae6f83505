"""GitOps speed: push -> container running with the webhook, against drop -> running of the same spec in a plain
folder; and the CPU cost of an idle fetch (nothing new) of a 5,000-spec repository. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_gitops.py [--jobs 5] [--specs 5000] [--fetches 10]

1. A controller follows a file:// repository (fetch period 600 s, so only the webhook wakes it). Per job: a commit
   adding its spec is pushed, the webhook is posted (signed), and the clock stops when status.json says Running.
   The clock starts before the push. The same jobs dropped into a plain controller's folder are the baseline.
2. Idle fetch: `GitSource.sync()` of an applied 5,000-spec repository, CPU time (this process and its git children)
   per fetch.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from e2e.harness import (  # noqa: E402
    ControllerProcess,
    cleanup_containers,
    free_port,
    job_name,
    shell_spec,
    wait_phase,
    write_spec,
)
from gitops.gitserver import Repo  # noqa: E402

from controller.gitsource import GitOptions, GitSource  # noqa: E402

SECRET = "bench-secret"


def running_after(data: Path, name: str, t0: float) -> float:
    wait_phase(data, name, "Running", timeout=60)
    return time.monotonic() - t0


def push_to_running(root: Path, jobs: int) -> list[float]:
    repo = Repo(root / "git")
    repo.write("specs/README.md", "specs\n")
    repo.commit("start")
    (root / "secret").write_text(SECRET)
    data = root / "git-data"
    ctl = ControllerProcess(
        data,
        "--git",
        repo.url,
        "--git-path",
        "specs",
        "--git-period",
        "600",
        "--git-webhook-secret-file",
        str(root / "secret"),
        port=free_port(),
    ).start()
    times = []
    try:
        for i in range(jobs):
            name = job_name(f"push-{i}")
            repo.write(f"specs/{name}.yaml", shell_spec(name, "sleep 30", terminationGracePeriodSeconds=1))
            t0 = time.monotonic()
            repo.commit(name)
            body = json.dumps({"ref": "refs/heads/main"}).encode()
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            req = urllib.request.Request(
                f"{ctl.url}/webhooks/git", data=body, method="POST", headers={"X-Hub-Signature-256": sig}
            )
            urllib.request.urlopen(req, timeout=10).read()
            times.append(running_after(data, name, t0))
    finally:
        ctl.kill()
    return times


def drop_to_running(root: Path, jobs: int) -> list[float]:
    data = root / "drop-data"
    (data / "specs").mkdir(parents=True)
    ctl = ControllerProcess(data).start()
    times = []
    try:
        for i in range(jobs):
            name = job_name(f"drop-{i}")
            t0 = time.monotonic()
            write_spec(data, shell_spec(name, "sleep 30", terminationGracePeriodSeconds=1))
            times.append(running_after(data, name, t0))
    finally:
        ctl.kill()
    return times


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def idle_fetch_cpu(root: Path, specs: int, fetches: int) -> tuple[float, float]:
    repo = Repo(root / "big")
    folder = repo.work / "specs"
    folder.mkdir(parents=True)
    for i in range(specs):
        (folder / f"job-{i:05d}.yaml").write_text(
            f"apiVersion: opeva/v1\nkind: Job\nmetadata: {{name: job-{i:05d}}}\nspec: {{image: busybox:1.36}}\n"
        )
    repo.commit("many")
    data = root / "big-data"
    data.mkdir()
    git = GitSource(GitOptions(url=repo.url, path="specs"), data)
    git.prepare()
    git.sync()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    for _ in range(fetches):
        git.sync()
    return (cpu_seconds() - cpu0) / fetches, (time.monotonic() - t0) / fetches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--specs", type=int, default=5000)
    ap.add_argument("--fetches", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="opeva-bench-git-") as tmp:
        root = Path(tmp)
        try:
            drop = drop_to_running(root, args.jobs)
            push = push_to_running(root, args.jobs)
        finally:
            cleanup_containers()
        cpu, wall = idle_fetch_cpu(root, args.specs, args.fetches)
    med_drop, med_push = statistics.median(drop), statistics.median(push)
    print(f"drop -> Running, median of {args.jobs}: {med_drop:.2f} s  ({', '.join(f'{t:.2f}' for t in drop)})")
    print(
        f"push + webhook -> Running, median of {args.jobs}: {med_push:.2f} s  ({', '.join(f'{t:.2f}' for t in push)})"
    )
    print(f"push - drop: {med_push - med_drop:+.2f} s (target: within +1.5 s)")
    print(f"idle fetch of a {args.specs}-spec repository: {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall per fetch")


if __name__ == "__main__":
    main()
