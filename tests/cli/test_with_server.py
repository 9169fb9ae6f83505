"""Every client command through the installed `opeva` entry point, against a real `opeva run` (controller + API) and
the real Docker engine."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.harness import containers, shell_spec, wait_for

from controller.decide import container_name, run_key
from controller.spec import parse_document
from controller.status import JobStatus
from controller.store import atomic_write_json

from .conftest import Server

pytestmark = pytest.mark.docker


def write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def job(name: str, script: str, labels: dict[str, str], **spec: Any) -> dict:
    spec.setdefault("terminationGracePeriodSeconds", 1)
    return shell_spec(name, script, labels=labels, **spec)


def apply(server: Server, tmp_path: Path, *docs: dict) -> None:
    folder = tmp_path / f"apply-{time.monotonic_ns()}"
    for doc in docs:
        write(folder / f"{doc['metadata']['name']}.yaml", doc)
    result = server.cli("apply", "-f", str(folder))
    assert result.returncode == 0, result.stderr


def wait_phase(server: Server, *names: str, phase: str, timeout: float = 60) -> None:
    result = server.cli("wait", *names, "--for", phase, "--timeout", str(timeout), timeout=timeout + 30)
    assert result.returncode == 0, result.stderr


def listed(server: Server, selector: str, count: int) -> None:
    """The list comes from the controller's index (updated within ~2 s): wait until it shows the jobs."""
    wait_for(
        lambda: len(server.cli("get", "-l", selector, "-o", "name").stdout.split()) == count,
        timeout=20,
        what=f"{count} jobs listed for {selector}",
    )


# ---- apply ------------------------------------------------------------------------------------------------------
def test_apply_says_created_configured_unchanged_and_dry_run_changes_nothing(server: Server, tmp_path: Path):
    cli = server.cli
    doc = job("apply-a", "echo one", {"suite": "apply"})
    path = write(tmp_path / "a.yaml", doc)
    dry = cli("apply", "-f", str(path), "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "job/apply-a created (dry run)\n")
    assert cli("get", "apply-a").returncode == 1, "a dry run creates nothing"

    assert cli("apply", "-f", str(path)).stdout == "job/apply-a created\n"
    assert cli("apply", "-f", str(path)).stdout == "job/apply-a unchanged\n"
    assert cli("apply", "-f", str(path), "--dry-run").stdout == "job/apply-a unchanged (dry run)\n"

    write(path, job("apply-a", "echo two", {"suite": "apply"}))
    assert cli("apply", "-f", str(path), "--dry-run").stdout == "job/apply-a configured (dry run)\n"
    assert json.loads(cli("get", "apply-a", "-o", "json").stdout)["spec"]["args"] == ["echo one"]
    assert cli("apply", "-f", str(path)).stdout == "job/apply-a configured\n"
    assert json.loads(cli("get", "apply-a", "-o", "json").stdout)["spec"]["args"] == ["echo two"]


def test_apply_from_stdin_and_a_folder_and_nothing_when_one_file_is_bad(server: Server, tmp_path: Path):
    cli = server.cli
    piped = cli("apply", "-f", "-", input=yaml.safe_dump(job("apply-stdin", "true", {"suite": "apply"})))
    assert (piped.returncode, piped.stdout) == (0, "job/apply-stdin created\n"), piped.stderr
    as_json = cli("apply", "-f", "-", input=json.dumps(job("apply-json", "true", {"suite": "apply"})))
    assert as_json.stdout == "job/apply-json created\n"

    folder = tmp_path / "specs"
    write(folder / "ok.yaml", job("apply-ok", "true", {"suite": "apply"}))
    bad = job("apply-bad", "true", {"suite": "apply"})
    bad["spec"]["restartPolicy"] = "Sometimes"
    write(folder / "nested" / "bad.yaml", bad)
    result = cli("apply", "-f", str(folder))
    assert result.returncode == 1
    assert (
        f"error: {folder}/nested/bad.yaml: spec.restartPolicy: Input should be 'Never' or 'OnFailure'" in result.stderr
    )
    assert "1 invalid spec file of 2; nothing was applied" in result.stderr
    missing = cli("get", "apply-ok")
    assert missing.returncode == 1 and "job 'apply-ok' not found" in missing.stderr


# ---- get: a known state, exactly -------------------------------------------------------------------------------
TIME_KEYS = {"submittedAt", "startedAt", "finishedAt", "updatedAt", "lastTransitionTime"}


def mask(value: Any) -> Any:
    """Times, container ids and the deadline clock differ from run to run; everything else is exact."""
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in TIME_KEYS and v is not None:
                out[k] = "<time>"
            elif k == "containerId" and v is not None:
                out[k] = "<id>"
            elif k == "activeSeconds":
                out[k] = "<seconds>"
            else:
                out[k] = mask(v)
        return out
    return value


OK_SCRIPT = (
    'echo working; echo \'{"percent": 100, "stage": "done"}\' > $OPEVA_JOB_DIR/progress/progress.json; '
    'echo \'{"reward": 1.5, "episodes": 3}\' > $OPEVA_JOB_DIR/results/result.json'
)


def expected_object(server: Server, doc: dict, *, ok: bool, progress: Any) -> dict:
    m = parse_document(doc)
    gen = m.generation
    instance = (server.data / ".opeva" / "instance-id").read_text().strip()
    cname = container_name(instance, m.name, run_key(gen, None), 1)
    t = "<time>"
    if ok:
        phase, reason, message, code = "Succeeded", "Completed", None, 0
        conditions = [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": None, "lastTransitionTime": t},
            {"type": "Running", "status": "False", "reason": "Completed", "message": None, "lastTransitionTime": t},
            {"type": "Succeeded", "status": "True", "reason": "Completed", "message": None, "lastTransitionTime": t},
        ]
    else:
        phase, reason, message, code = "Failed", "Error", "exit code 3", 3
        conditions = [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": None, "lastTransitionTime": t},
            {"type": "Running", "status": "False", "reason": "Error", "message": None, "lastTransitionTime": t},
            {"type": "FailureTarget", "status": "True", "reason": "Error", "message": message, "lastTransitionTime": t},
            {"type": "Failed", "status": "True", "reason": "Error", "message": message, "lastTransitionTime": t},
        ]
    status = {
        **JobStatus(name=m.name).model_dump(mode="json"),  # fields the controller leaves at their defaults
        "name": m.name,
        "phase": phase,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "runId": None,
        "attempts": 1,
        "failures": 0 if ok else 1,
        "exitCode": code,
        "containerName": cname,
        "containerId": "<id>",
        "submittedAt": t,
        "startedAt": t,
        "finishedAt": t,
        "updatedAt": t,
        "activeSeconds": "<seconds>",
        "specFile": f"{m.name}.yaml",
        "source": None,  # no git source: the folder is a plain folder
        "labels": doc["metadata"]["labels"],
        "conditions": conditions,
        "history": [
            {
                "attempt": 1,
                "generation": gen,
                "runId": None,
                "containerName": cname,
                "containerId": "<id>",
                "startedAt": t,
                "finishedAt": t,
                "exitCode": code,
                "outcome": phase,
                "reason": reason,
                "counted": not ok,
                "source": None,
            }
        ],
    }
    return {
        "apiVersion": "opeva/v1",
        "kind": "Job",
        "metadata": doc["metadata"],
        "spec": m.to_document()["spec"],
        "specFile": f"{m.name}.yaml",
        "specError": None,
        "status": status,
        "progress": progress,
    }


@pytest.fixture(scope="module")
def stable(server: Server, tmp_path_factory) -> dict[str, dict]:
    """Two finished jobs, one succeeded with progress and a result, one failed: a state that no longer changes."""
    labels = {"suite": "stable"}
    docs = {
        "stable-ok": job("stable-ok", OK_SCRIPT, labels),
        "stable-fail": job("stable-fail", "echo failing; exit 3", labels),
    }
    apply(server, tmp_path_factory.mktemp("stable"), *docs.values())
    wait_phase(server, "stable-ok", phase="Succeeded")
    failed = server.cli("wait", "stable-fail", "--for", "Succeeded", "--timeout", "60")
    assert failed.returncode == 1, "a job that ended in another phase fails the wait"
    assert "job stable-fail is Failed (Error: exit code 3); it will not become Succeeded" in failed.stderr
    wait_for(
        lambda: not containers("stable-ok") and not containers("stable-fail"),
        timeout=30,
        what="finished containers removed (the records no longer change)",
    )
    listed(server, "suite=stable", 2)
    return docs


def test_get_json_is_stable_and_exact_for_a_known_state(server: Server, stable: dict[str, dict]):
    first = server.cli("get", "-l", "suite=stable", "-o", "json")
    assert first.returncode == 0, first.stderr
    second = server.cli("get", "-l", "suite=stable", "-o", "json")
    assert second.stdout == first.stdout, "same state, same bytes"
    parsed = json.loads(first.stdout)
    assert first.stdout == json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert mask(parsed) == {
        "apiVersion": "opeva/v1",
        "kind": "List",
        "items": [
            expected_object(server, stable["stable-fail"], ok=False, progress=None),
            expected_object(server, stable["stable-ok"], ok=True, progress={"percent": 100, "stage": "done"}),
        ],
    }
    one = json.loads(server.cli("get", "stable-ok", "-o", "json").stdout)
    assert one == parsed["items"][1], "a named job is the object itself"


def test_get_table_filters_and_other_formats(server: Server, stable: dict[str, dict]):
    cli = server.cli
    table = cli("get", "-l", "suite=stable")
    assert table.returncode == 0 and "\x1b" not in table.stdout, "no colours when piped"
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "ATTEMPTS", "PROGRESS", "AGE", "DURATION"]
    assert re.fullmatch(r"stable-fail +Failed +1 +- +\d+[smh]\w* +\d+[smh]\w*", lines[1]), lines[1]
    assert re.fullmatch(r"stable-ok +Succeeded +1 +100% done +\d+[smh]\w* +\d+[smh]\w*", lines[2]), lines[2]
    assert len(lines) == 3

    wide = cli("get", "-l", "suite=stable", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["REASON", "EXIT", "IMAGE", "LABELS"]
    assert wide[1].split()[-4:-1] == ["Error", "3", "opeva-test/busybox:1"]

    assert cli("get", "-l", "suite=stable", "--phase", "Failed", "-o", "name").stdout == "job/stable-fail\n"
    assert cli("get", "-l", "suite=stable", "--phase", "finished", "-o", "name").stdout == "job/stable-ok\n"
    assert cli("get", "-l", "suite=nothing").stderr == "No jobs found.\n"
    as_yaml = yaml.safe_load(cli("get", "-l", "suite=stable", "-o", "yaml").stdout)
    assert as_yaml == json.loads(cli("get", "-l", "suite=stable", "-o", "json").stdout)
    bad_phase = cli("get", "--phase", "Done")
    assert bad_phase.returncode == 2 and "'Done' is not a phase" in bad_phase.stderr


def test_describe_shows_spec_status_conditions_events_progress_result_and_mlflow(
    server: Server, stable: dict[str, dict]
):
    info_path = server.data / "jobs" / "stable-ok" / "job_info.json"
    info = json.loads(info_path.read_text())
    atomic_write_json(info_path, {**info, "mlflow_run_url": "http://mlflow.example/#/experiments/1/runs/abc"})
    result = server.cli("describe", "stable-ok")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in (
        "Name:         stable-ok",
        "Labels:       opeva-test=",
        "Spec file:    stable-ok.yaml",
        "Image:        opeva-test/busybox:1",
        "Command:      sh -c",
        "Restart:      Never, backoffLimit 0",
        f"Generation:   {parse_document(stable['stable-ok']).generation}\n",
        "Phase:        Succeeded",
        "Reason:       Completed",
        "Attempts:     1",
        "Exit code:    0",
        "Progress:     100% done",
        "Result:       episodes=3, reward=1.5",
        "MLflow:       http://mlflow.example/#/experiments/1/runs/abc",
        "Conditions:",
        "Attempts of this run:",
        "Events (last ",
    ):
        assert line in out, line
    assert re.search(r"^  Succeeded +True +Completed", out, re.M)
    assert re.search(r"^  \S+ +Normal +Exited +container \S+ exited with code 0$", out, re.M)
    failed = server.cli("describe", "stable-fail").stdout
    assert "Message:      exit code 3" in failed and "Progress:     -" in failed and "MLflow:       -" in failed


# ---- wait -------------------------------------------------------------------------------------------------------
def test_wait_exits_0_when_reached_3_on_timeout_1_for_unknown(server: Server, tmp_path: Path, stable):
    done = server.cli("wait", "stable-ok", "--for", "succeeded")
    assert (done.returncode, done.stdout) == (0, "job/stable-ok condition met: phase=Succeeded\n")
    apply(server, tmp_path, job("wait-long", "sleep 120", {"suite": "wait"}))
    wait_phase(server, "wait-long", phase="Running")
    started = time.monotonic()
    timeout = server.cli("wait", "wait-long", "--for", "Succeeded", "--timeout", "1")
    assert timeout.returncode == 3
    assert "timed out after 1 s waiting for phase Succeeded (wait-long is Running)" in timeout.stderr
    assert time.monotonic() - started < 10
    unknown = server.cli("wait", "no-such-job", "--for", "Succeeded", "--timeout", "5")
    assert unknown.returncode == 1 and "job 'no-such-job' not found" in unknown.stderr
    assert server.cli("delete", "wait-long").returncode == 0


# ---- logs -------------------------------------------------------------------------------------------------------
def test_logs_whole_tail_and_one_attempt(server: Server, tmp_path: Path):
    script = 'echo "line from attempt $OPEVA_ATTEMPT"; [ "$OPEVA_ATTEMPT" -ge 2 ] || exit 1'
    apply(
        server,
        tmp_path,
        job(
            "logs-flaky",
            script,
            {"suite": "logs"},
            restartPolicy="OnFailure",
            backoffLimit=2,
            backoff={"initialSeconds": 0.2, "maxSeconds": 1},
        ),
    )
    wait_phase(server, "logs-flaky", phase="Succeeded")
    cli = server.cli
    whole = cli("logs", "logs-flaky").stdout
    assert whole.count("===== opeva: job logs-flaky attempt ") == 2
    assert "line from attempt 1\n" in whole and whole.endswith("line from attempt 2\n")
    assert cli("logs", "logs-flaky", "--tail", "1").stdout == "line from attempt 2\n"
    first = cli("logs", "logs-flaky", "--attempt", "1").stdout.splitlines()
    assert len(first) == 2 and first[0].startswith("===== opeva: job logs-flaky attempt 1 container ")
    assert first[1] == "line from attempt 1"
    assert cli("logs", "logs-flaky", "--attempt", "2", "--tail", "1").stdout == "line from attempt 2\n"
    absent = cli("logs", "logs-flaky", "--attempt", "3")
    assert absent.returncode == 1 and "attempt 3 of job logs-flaky is not in its log" in absent.stderr
    unknown = cli("logs", "no-such-job")
    assert unknown.returncode == 1 and "job 'no-such-job' not found" in unknown.stderr


def test_logs_follow_ends_when_the_job_does(server: Server, tmp_path: Path):
    apply(
        server,
        tmp_path,
        job("logs-follow", "for i in 1 2 3; do echo tick $i; sleep 0.5; done; echo bye", {"suite": "logs"}),
    )
    started = time.monotonic()
    result = server.cli("logs", "logs-follow", "-f", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("tick 1\ntick 2\ntick 3\nbye\n")
    assert time.monotonic() - started < 30
    again = server.cli("logs", "logs-follow", "-f", "--attempt", "1")
    assert again.returncode == 0 and again.stdout.splitlines()[1:] == ["tick 1", "tick 2", "tick 3", "bye"]


# ---- stop, resume, rerun, delete -------------------------------------------------------------------------------
def test_stop_resume_rerun_delete_one_job(server: Server, tmp_path: Path):
    cli = server.cli
    apply(server, tmp_path, job("ctl-long", "sleep 300", {"suite": "control"}))
    wait_phase(server, "ctl-long", phase="Running")
    assert cli("stop", "ctl-long").stdout == "job/ctl-long stopped\n"
    wait_phase(server, "ctl-long", phase="Stopped")
    assert cli("stop", "ctl-long").stdout == "job/ctl-long unchanged (already suspended)\n"
    assert cli("resume", "ctl-long").stdout == "job/ctl-long resumed\n"
    wait_phase(server, "ctl-long", phase="Running")
    rerun = cli("rerun", "ctl-long")
    run_id = re.fullmatch(r"job/ctl-long rerun requested \(runId (\S+)\)\n", rerun.stdout).group(1)
    wait_phase(server, "ctl-long", phase="Running")
    status = json.loads(cli("get", "ctl-long", "-o", "json").stdout)["status"]
    assert (status["runId"], status["attempts"]) == (run_id, 1), "wait waited for the new run"
    assert cli("delete", "ctl-long").stdout == "job/ctl-long deleted\n"
    wait_phase(server, "ctl-long", phase="Stopped")
    assert json.loads(cli("get", "ctl-long", "-o", "json").stdout)["status"]["reason"] == "SpecDeleted"
    again = cli("delete", "ctl-long")
    assert again.returncode == 1 and "job 'ctl-long' has no spec file" in again.stderr
    unknown = cli("stop", "no-such-job")
    assert unknown.returncode == 1 and "no-such-job" in unknown.stderr


def test_group_commands_need_confirmation_and_refuse_without_a_terminal(server: Server, tmp_path: Path):
    cli = server.cli
    apply(server, tmp_path, job("grp-1", "sleep 300", {"grp": "g"}), job("grp-2", "sleep 300", {"grp": "g"}))
    wait_phase(server, "grp-1", "grp-2", phase="Running")
    listed(server, "grp=g", 2)
    refused = cli("stop", "-l", "grp=g")
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: refusing to stop 2 jobs without confirmation: stdin is not a terminal; pass --yes to confirm\n"
    )
    items = json.loads(cli("get", "-l", "grp=g", "-o", "json").stdout)["items"]
    assert [i["spec"].get("suspend", False) for i in items] == [False, False], "nothing changed"
    stopped = cli("stop", "-l", "grp=g", "--yes")
    assert stopped.stdout == "job/grp-1 stopped\njob/grp-2 stopped\n"
    wait_phase(server, "grp-1", "grp-2", phase="Stopped")
    assert cli("delete", "--all", "-l", "grp=g", "--yes").stdout == "job/grp-1 deleted\njob/grp-2 deleted\n"
    both = cli("stop", "grp-1", "-l", "grp=g")
    assert both.returncode == 2 and "not both" in both.stderr
    assert cli("stop").returncode == 2


# ---- authentication ---------------------------------------------------------------------------------------------
def test_token_from_flag_env_or_config_file(server: Server, tmp_path: Path, stable):
    cli = server.cli
    wrong = cli("get", "--token", "wrong")
    assert wrong.returncode == 1 and "the token was rejected (401" in wrong.stderr
    none = cli("get", env={"OPEVA_API_TOKEN": ""})
    assert none.returncode == 1 and "this API requires a token" in none.stderr
    config = tmp_path / "config.yaml"
    token_file = tmp_path / "token"
    token_file.write_text(cli.env["OPEVA_API_TOKEN"] + "\n")
    config.write_text(f"server: {server.url}\ntokenFile: token\n")
    via_config = cli(
        "get",
        "stable-ok",
        "-o",
        "name",
        env={"OPEVA_API_TOKEN": "", "OPEVA_SERVER": "", "OPEVA_CONFIG_FILE": str(config)},
    )
    assert (via_config.returncode, via_config.stdout) == (0, "job/stable-ok\n"), via_config.stderr


# ---- watch ------------------------------------------------------------------------------------------------------
def test_watch_piped_prints_the_table_then_a_line_per_change(server: Server, tmp_path: Path):
    watch = server.cli.popen(
        "get", "-w", "-l", "suite=watch", "--interval", "0.3", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1)
        apply(server, tmp_path, job("watch-job", "sleep 1.5", {"suite": "watch"}))
        wait_phase(server, "watch-job", phase="Succeeded")
        listed(server, "suite=watch", 1)
        time.sleep(1.5)
    finally:
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=20)
    assert watch.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "ATTEMPTS", "PROGRESS", "AGE", "DURATION"]
    assert sum(1 for line in lines if line.startswith("NAME")) == 1
    phases = [line.split()[1] for line in lines[1:]]
    assert phases and phases[-1] == "Succeeded" and all(line.startswith("watch-job ") for line in lines[1:])
    assert len(phases) == len(set(phases)) or phases.count("Succeeded") == 1, "a line per change, not per tick"
    assert "\x1b" not in out


def test_watch_on_a_terminal_draws_a_live_table(server: Server, stable):
    master, slave = pty.openpty()
    proc = server.cli.popen(
        "get",
        "-w",
        "-l",
        "suite=stable",
        "--interval",
        "0.3",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={"COLUMNS": "120", "LINES": "20", "TERM": "xterm-256color"},
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20  # a loaded machine may take seconds just to import the CLI
    drawn = time.monotonic() + 3600
    try:
        while time.monotonic() < min(deadline, drawn):
            if select.select([master], [], [], 0.1)[0]:
                out += os.read(master, 65536)
                if b"100% done" in out and drawn > deadline:
                    drawn = time.monotonic() + 1  # the table is up: watch it redraw for a moment more
    finally:
        proc.send_signal(signal.SIGINT)
        end = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < end:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        proc.wait(5)
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "\x1b[" in text and "Ctrl-C to stop" in text and "stable-ok" in text and "100% done" in text


# ---- plan -------------------------------------------------------------------------------------------------------
def test_plan_through_the_api_and_offline_print_the_same_exact_plan(server: Server, tmp_path: Path):
    labels = {"plan": "p"}
    done = job("plan-done", "echo done", labels)
    edit = job("plan-edit", "echo v1", labels)
    running = job("plan-running", "sleep 300", labels)
    apply(server, tmp_path, done, edit, running)
    wait_phase(server, "plan-done", "plan-edit", phase="Succeeded")
    wait_phase(server, "plan-running", phase="Running")
    listed(server, "plan=p", 3)

    checkout = tmp_path / "checkout"
    write(checkout / "plan-done.yaml", done)
    edited = job("plan-edit", "echo v2", labels)
    write(checkout / "experiments" / "plan-edit.yaml", edited)
    write(checkout / "plan-new.yaml", job("plan-new", "true", labels))
    broken = job("plan-broken", "true", labels)
    broken["spec"]["imagee"] = "typo"
    write(checkout / "plan-broken.yaml", broken)
    old, new = parse_document(edit).generation, parse_document(edited).generation
    expected = (
        "NAME           ACTION      DETAIL\n"
        "plan-broken    invalid     plan-broken.yaml: spec.imagee: unknown field\n"
        "plan-done      unchanged   Succeeded (Completed)\n"
        f"plan-edit      rerun       new generation {new} (recorded {old}, Succeeded (Completed))\n"
        "plan-new       start       new job\n"
        "plan-running   stop        spec removed; stops the running attempt 1, keeps the record\n"
        "\n"
        "Plan: 1 to start, 1 to rerun, 1 to stop, 1 unchanged, 1 invalid.\n"
    )
    via_api = server.cli("plan", str(checkout), "-l", "plan=p")
    assert (via_api.returncode, via_api.stdout) == (1, expected), via_api.stderr
    offline = server.cli(
        "plan", str(checkout), "-l", "plan=p", "--data", str(server.data), env={"OPEVA_SERVER": "http://127.0.0.1:9"}
    )
    assert (offline.returncode, offline.stdout) == (1, expected), offline.stderr

    (checkout / "plan-broken.yaml").unlink()
    assert server.cli("plan", str(checkout), "-l", "plan=p").returncode == 2, "changes"
    for path in checkout.rglob("*.yaml"):
        path.unlink()
    write(checkout / "plan-done.yaml", done)
    write(checkout / "plan-edit.yaml", edit)
    write(checkout / "plan-running.yaml", running)
    quiet = server.cli("plan", str(checkout), "-l", "plan=p")
    assert quiet.returncode == 0, quiet.stdout
    assert quiet.stdout.endswith("Plan: 0 to start, 0 to rerun, 0 to stop, 3 unchanged, 0 invalid.\n")
    assert server.cli("delete", "plan-running").returncode == 0


def test_apply_then_get_lists_the_job_every_time(server: Server, tmp_path: Path):
    """Read-your-writes through the command line: `opeva get` lists what `opeva apply` just returned from."""
    labels = {"ryw": "cli"}
    for i in range(10):
        name = f"ryw-cli-{i}"
        path = write(tmp_path / f"{name}.yaml", job(name, "true", labels, suspend=True))
        assert server.cli("apply", "-f", str(path)).returncode == 0
        listed = server.cli("get", "-l", "ryw=cli", "-o", "name").stdout.split()
        assert f"job/{name}" in listed, listed
    for i in range(10):
        server.cli("delete", f"ryw-cli-{i}")
