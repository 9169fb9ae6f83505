"""A 5,000-spec repository switching commits: every scan sees one commit's tree whole, never a mix (real git, real
files; no engine needed)."""

from __future__ import annotations

import threading
from pathlib import Path

from e2e.harness import wait_for

from controller.gitsource import GitOptions, GitSource
from controller.specsource import SpecSource

from .gitserver import Repo

N = 5000


def spec(i: int, rev: int) -> str:
    return (
        f"apiVersion: opeva/v1\nkind: Job\nmetadata:\n  name: job-{i:04d}\n  labels: {{rev: 'r{rev}'}}\n"
        f"spec:\n  image: busybox:1.36\n  command: ['true']\n"
    )


def write_all(repo: Repo, rev: int) -> str:
    folder = repo.work / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N):
        (folder / f"job-{i:04d}.yaml").write_text(spec(i, rev))
    return repo.commit(f"rev {rev}")


def test_a_scan_never_sees_half_of_a_switch(tmp_path: Path, repo: Repo):
    commits = [write_all(repo, rev) for rev in (1, 2)]
    data = tmp_path / "data"
    data.mkdir()
    git = GitSource(GitOptions(url=repo.url, path="specs", allow_prune=True), data)
    link = git.prepare()
    scanner = SpecSource(link, data, git.provenance, settle=0.0)
    seen: list[tuple[set[str], int, set[str]]] = []  # (revisions, job count, commits) per scan
    stop = threading.Event()

    def scan_forever() -> None:
        while not stop.is_set():
            scanner.scan()
            names = scanner.names()
            revs = {scanner.desired(n).manifest.metadata.labels["rev"] for n in names}
            commits_seen = {scanner.desired(n).source["commit"] for n in names}
            seen.append((revs, len(names), commits_seen))

    thread = threading.Thread(target=scan_forever)
    thread.start()

    def switch_to(commit: str) -> None:
        repo.force_push(commit)
        assert git.sync() == commit
        wait_for(lambda: seen and seen[-1][2] == {commit}, 120, what=f"a scan of {commit}")

    try:
        for commit in (commits[0], commits[1], commits[0]):
            switch_to(commit)
    finally:
        stop.set()
        thread.join()
    full = [s for s in seen if s[1]]
    assert full, "the scanner never saw a tree"
    for revs, count, commits_seen in full:
        assert count == N and len(revs) == 1 and len(commits_seen) == 1, (revs, count, commits_seen)
    assert {next(iter(s[0])) for s in full} == {"r1", "r2"}
