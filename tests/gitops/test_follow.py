"""A real `opeva run --git` follows a real repository (file:// and smart HTTP with basic auth) on a real engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e.harness import (
    ControllerProcess,
    free_port,
    job_name,
    read_json_file,
    read_status,
    shell_spec,
    wait_for,
    wait_phase,
)

from .gitserver import HttpGitServer, Repo

pytestmark = pytest.mark.usefixtures("docker_jobs")
START_TIMEOUT = 60  # the API's start on a loaded 2-core machine can take longer than the harness's default


def source(data: Path) -> dict:
    return read_json_file(data / ".opeva" / "git" / "source.json") or {}


def applied(data: Path, commit: str, timeout: float = 20) -> dict:
    return wait_for(lambda: source(data).get("appliedCommit") == commit and source(data), timeout, what=commit)


def follow(data: Path, url: str, *args: str, port: int | None = None) -> ControllerProcess:
    return ControllerProcess(data, "--git", url, "--git-path", "specs", "--git-period", "0.5", *args, port=port).start(
        timeout=START_TIMEOUT
    )


def held(name: str, marker: str = "v1") -> dict:
    return shell_spec(name, f"echo {marker}; sleep 300", terminationGracePeriodSeconds=1)


def test_follows_pushes_new_edit_revert_delete_and_force_push(data: Path, repo: Repo):
    a, b, keep = job_name("git-a"), job_name("git-b"), job_name("git-keep")
    repo.write(f"specs/{keep}.yaml", held(keep))
    repo.write(f"specs/{a}.yaml", held(a, "v1"))
    c1 = repo.commit("a v1")
    ctl = follow(data, repo.url)
    applied(data, c1)
    st = wait_phase(data, a, "Running")
    gen1 = st["observedGeneration"]
    spec_bytes = (repo.work / "specs" / f"{a}.yaml").read_bytes()
    assert st["source"] == {
        "repoURL": repo.url,
        "ref": "main",
        "commit": c1,
        "path": f"specs/{a}.yaml",
        "digest": hashlib.sha256(spec_bytes).hexdigest(),
    }
    info = read_json_file(data / "jobs" / a / "job_info.json")
    assert info["source"]["commit"] == c1

    # a new spec starts
    repo.write(f"specs/{b}.yaml", held(b))
    c2 = repo.commit("b")
    applied(data, c2)
    assert wait_phase(data, b, "Running")["source"]["commit"] == c2
    assert read_status(data, a)["source"]["commit"] == c1  # a's run was launched by c1 and still is

    # an edit reruns, with the new commit as its provenance; the old attempt keeps the old one
    repo.write(f"specs/{a}.yaml", held(a, "v2"))
    c3 = repo.commit("a v2")
    st = wait_for(
        lambda: (s := read_status(data, a)) and s["phase"] == "Running" and s["observedGeneration"] != gen1 and s,
        30,
        what="a v2 running",
    )
    assert st["source"]["commit"] == c3
    gen2 = st["observedGeneration"]
    assert (
        wait_for(lambda: [h for h in read_status(data, a)["history"] if h["generation"] == gen1], 30)[0]["source"][
            "commit"
        ]
        == c1
    )

    # a revert runs the old definition again (generation of v1), launched by the revert commit
    repo.write(f"specs/{a}.yaml", held(a, "v1"))
    c4 = repo.commit("revert a to v1")
    st = wait_for(
        lambda: (s := read_status(data, a)) and s["observedGeneration"] == gen1 and s["phase"] == "Running" and s,
        30,
        what="a v1 again",
    )
    assert st["source"]["commit"] == c4

    # a deleted spec stops
    repo.remove(f"specs/{b}.yaml")
    c5 = repo.commit("drop b")
    applied(data, c5)
    wait_phase(data, b, "Stopped", "Succeeded", "Failed", timeout=40)

    # a force push back to c3 (history rewritten) is followed: a runs v2 again, launched by c3
    repo.force_push(c3)
    applied(data, c3)
    st = wait_for(
        lambda: (s := read_status(data, a)) and s["observedGeneration"] == gen2 and s["phase"] == "Running" and s,
        30,
        what="a v2 after the force push",
    )
    assert st["source"]["commit"] == c3
    hist = source(data)["history"]
    assert [h["commit"] for h in hist[:6]] == [c3, c5, c4, c3, c2, c1]
    assert ctl.proc.poll() is None


def test_branch_switch_with_git_ref_is_followed(data: Path, repo: Repo):
    a, b = job_name("ref-a"), job_name("ref-b")
    repo.write(f"specs/{a}.yaml", held(a))
    c_main = repo.commit("main")
    repo.write(f"specs/{b}.yaml", held(b))
    c_exp = repo.commit("exp", branch="exp")
    ctl = follow(data, repo.url)
    applied(data, c_main)
    wait_phase(data, a, "Running")
    assert read_status(data, b) is None
    ctl.stop()
    ctl = follow(data, repo.url, "--git-ref", "exp")
    st = applied(data, c_exp)
    assert st["ref"] == "exp"
    assert wait_phase(data, b, "Running")["source"]["ref"] == "exp"


def test_commit_removing_every_spec_is_held_until_a_marker_allows_it(data: Path, repo: Repo):
    a = job_name("held-a")
    repo.write(f"specs/{a}.yaml", held(a))
    c1 = repo.commit("a")
    follow(data, repo.url)
    applied(data, c1)
    wait_phase(data, a, "Running")
    repo.remove(f"specs/{a}.yaml")
    c2 = repo.commit("remove everything")
    st = wait_for(lambda: (source(data).get("held") or {}).get("commit") == c2 and source(data), 20, what="held")
    assert "removes every spec" in st["held"]["reason"] and st["appliedCommit"] == c1
    time.sleep(2)
    assert read_status(data, a)["phase"] == "Running"
    repo.write("specs/.opeva-allow-prune", "emptying on purpose\n")
    c3 = repo.commit("allow")
    applied(data, c3)
    wait_phase(data, a, "Stopped", "Succeeded", "Failed", timeout=40)
    assert "held" not in source(data)


def test_conflict_markers_make_the_spec_invalid_and_leave_running_jobs_alone(data: Path, repo: Repo):
    a = job_name("conflict-a")
    repo.write(f"specs/{a}.yaml", held(a))
    c1 = repo.commit("a")
    follow(data, repo.url)
    applied(data, c1)
    container = wait_phase(data, a, "Running")["containerName"]
    text = (repo.work / "specs" / f"{a}.yaml").read_text()
    repo.write(f"specs/{a}.yaml", f"<<<<<<< HEAD\n{text}=======\n{text.replace('v1', 'v2')}>>>>>>> other\n")
    c2 = repo.commit("merge gone wrong")
    applied(data, c2)

    def spec_invalid():
        st = read_status(data, a) or {}
        return any(c["type"] == "SpecValid" and c["status"] == "False" for c in st.get("conditions", [])) and st

    st = wait_for(spec_invalid, 30, what="SpecValid False")
    assert "cannot parse YAML" in next(c for c in st["conditions"] if c["type"] == "SpecValid")["message"]
    assert st["containerName"] == container
    time.sleep(2)
    st = read_status(data, a)
    assert st["phase"] == "Running" and st["containerName"] == container


def test_http_remote_with_basic_auth_down_then_back_and_bad_credentials(data: Path, repo: Repo, tmp_path: Path):
    a, b = job_name("http-a"), job_name("http-b")
    password = "s3cret-" + "x" * 20
    server = HttpGitServer(repo.bare.parent, "lab", password).start()
    token = tmp_path / "git-token"
    token.write_text(f"lab:{password}\n")
    repo.write(f"specs/{a}.yaml", held(a))
    c1 = repo.commit("a")
    ctl = follow(data, server.url(), "--git-token-file", str(token))
    applied(data, c1)
    wait_phase(data, a, "Running")

    server.stop()  # the remote stops answering: the last applied commit stays, jobs stay, the error is shown
    repo.write(f"specs/{b}.yaml", held(b))
    c2 = repo.commit("b")
    down = wait_for(lambda: source(data).get("lastError") and source(data), 20, what="fetch error")
    assert down["appliedCommit"] == c1 and "keeping commit" in down["message"]
    assert read_status(data, a)["phase"] == "Running"
    server.start()
    applied(data, c2, timeout=40)
    wait_phase(data, b, "Running")
    assert source(data)["lastError"] is None

    token.write_text("lab:wrong-password-0123456789\n")  # bad credentials: said so, nothing else changes
    repo.write(f"specs/{a}.yaml", held(a, "v2"))
    repo.commit("a v2")
    bad = wait_for(lambda: "authentication failed" in (source(data).get("lastError") or "") and source(data), 30)
    assert bad["appliedCommit"] == c2
    everything = json.dumps(source(data)) + ctl.output() + json.dumps(read_status(data, a))
    everything += (data / "jobs" / a / "job_info.json").read_text()
    assert password not in everything and "wrong-password" not in everything
    server.stop()


def test_webhook_fetches_at_once_and_a_wrong_signature_is_refused(data: Path, repo: Repo, tmp_path: Path):
    a = job_name("hook-a")
    secret = tmp_path / "hook-secret"
    secret.write_text("hook-secret-value\n")
    repo.write("specs/README.md", "specs live here\n")
    c1 = repo.commit("empty")
    port = free_port()
    ctl = ControllerProcess(
        data,
        "--git",
        repo.url,
        "--git-path",
        "specs",
        "--git-period",
        "600",
        "--git-webhook-secret-file",
        str(secret),
        port=port,
    ).start(timeout=START_TIMEOUT)
    applied(data, c1)
    repo.write(f"specs/{a}.yaml", held(a))
    c2 = repo.commit("a")
    body = json.dumps({"ref": "refs/heads/main", "after": c2}).encode()

    def post(headers: dict[str, str]) -> int:
        req = urllib.request.Request(f"{ctl.url}/webhooks/git", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    wrong = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    assert post({"X-Hub-Signature-256": wrong, "X-GitHub-Event": "push"}) == 401
    assert post({"X-Gitlab-Token": "nope"}) == 401
    assert post({}) == 401
    assert "webhook_rejected" in ctl.output()
    time.sleep(1)
    assert source(data)["appliedCommit"] == c1  # nothing fetched on a bad hook
    good = "sha256=" + hmac.new(b"hook-secret-value", body, hashlib.sha256).hexdigest()
    assert post({"X-Hub-Signature-256": good, "X-GitHub-Event": "push"}) == 202
    applied(data, c2, timeout=10)
    wait_phase(data, a, "Running")

    # the API shows the source, and refuses writes that the next sync would undo
    with urllib.request.urlopen(f"{ctl.url}/source", timeout=5) as resp:
        shown = json.loads(resp.read())
    assert shown["appliedCommit"] == c2 and shown["repoURL"] == repo.url
    with urllib.request.urlopen(f"{ctl.url}/health", timeout=5) as resp:
        assert json.loads(resp.read())["source"]["appliedCommit"] == c2

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--server", ctl.url], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown_cli = cli("get", "source")
    assert c2 in shown_cli and repo.url in shown_cli
    assert json.loads(cli("get", "source", "-o", "json"))["appliedCommit"] == c2
    described = cli("describe", a)
    assert f"@ {c2}" in described and f"specs/{a}.yaml" in described
    req = urllib.request.Request(f"{ctl.url}/jobs/{a}/stop", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 409 and "commit the change" in err.value.read().decode()


def test_plan_git_verdicts_are_what_the_controller_then_does(data: Path, repo: Repo):
    a, b, c, keep = job_name("plan-a"), job_name("plan-b"), job_name("plan-c"), job_name("plan-keep")
    for name in (a, b, keep):
        repo.write(f"specs/{name}.yaml", held(name))
    c1 = repo.commit("three")
    ctl = follow(data, repo.url, port=free_port())
    applied(data, c1)
    for name in (a, b, keep):
        wait_phase(data, name, "Running")

    def listed() -> set[str]:
        with urllib.request.urlopen(f"{ctl.url}/jobs", timeout=5) as r:
            return {row["name"] for row in json.loads(r.read())}

    # plan through the API reads the job list, which the controller's index refreshes within about 5 s
    wait_for(lambda: {a, b, keep} <= listed(), 30, what="the API's job list to show the running jobs")
    gen_a = read_status(data, a)["observedGeneration"]
    repo.write(f"specs/{a}.yaml", held(a, "v2"))  # rerun
    repo.remove(f"specs/{b}.yaml")  # stop
    repo.write(f"specs/{c}.yaml", held(c))  # start
    repo.write("specs/broken.yaml", "apiVersion: opeva/v1\nkind: Job\nmetadata: {name: plan-broken}\nspec: [\n")
    from .gitserver import git

    git(repo.work, "add", "-A")
    git(repo.work, "commit", "--quiet", "-m", "change all")  # committed, not pushed yet
    planned = subprocess.run(
        [sys.executable, "-m", "cli.main", "plan", str(repo.work), "--git", "HEAD", "--git-path", "specs"]
        + ["-o", "json", "--server", ctl.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 1, planned.stderr  # an invalid spec
    verdicts = {i["name"]: i["action"] for i in json.loads(planned.stdout)["items"]}
    assert verdicts == {a: "rerun", b: "stop", c: "start", keep: "unchanged", "broken": "invalid"}

    c2 = repo.commit("push it")
    applied(data, c2)
    st = wait_for(lambda: (s := read_status(data, a)) and s["observedGeneration"] != gen_a and s, 30, what="rerun")
    assert st["source"]["commit"] == c2
    wait_phase(data, b, "Stopped", "Succeeded", "Failed", timeout=40)
    wait_phase(data, c, "Running")
    assert read_status(data, keep)["source"]["commit"] == c1 and read_status(data, keep)["phase"] == "Running"
    assert wait_for(lambda: (s := read_status(data, "broken")) and s["reason"] == "InvalidSpec", 30)
