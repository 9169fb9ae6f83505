"""What the status says is what is (issue 15), against the real engine: a stop in its grace period is not `Stopped`,
signals reach a Python job through the init process, conditions follow every transition, a spec written in two
pieces runs once with its full definition."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from controller.status import seed_word

from .harness import (
    ControllerProcess,
    job_name,
    read_events,
    read_json_file,
    read_log,
    read_status,
    shell_spec,
    spec_doc,
    wait_for,
    wait_phase,
    write_spec,
)

PYTHON = "opeva-test/python:3.11"


def running_containers(name: str) -> list[str]:
    """What `docker ps` shows for the job: its running containers."""
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=opeva.job={name}"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_a_job_that_ignores_sigterm_is_never_stopped_while_its_container_runs(data, controller):
    name = job_name("ignores-term")
    path = write_spec(
        data,
        shell_spec(name, "trap '' TERM; echo up; while true; do sleep 0.1; done", terminationGracePeriodSeconds=6),
    )
    wait_phase(data, name, "Running")
    wait_for(lambda: "up" in read_log(data, name), what="the job to start its loop")
    path.unlink()
    deleted = time.monotonic()
    stopping_seen = None
    seed_words = set()
    while True:
        st = read_status(data, name)  # the status first, then docker ps: a Stopped read before a running container
        word = read_json_file(data / "jobs" / name / "job_info.json")["status"]
        live = running_containers(name)
        if not live:
            gone = time.monotonic()
            break
        seed_words.add(word)
        assert st["phase"] != "Stopped", f"Stopped while docker ps shows {live}"
        if st["reason"] == "Stopping" and stopping_seen is None:
            stopping_seen = st
        assert time.monotonic() - deleted < 30, "the container never went"
        time.sleep(0.05)
    assert gone - deleted >= 5, "the grace period was waited out"
    assert "stop_requested" in seed_words and "stopped" not in seed_words
    assert stopping_seen is not None and stopping_seen["phase"] == "Running"
    terminating = next(c for c in stopping_seen["conditions"] if c["type"] == "Terminating")
    assert (terminating["status"], terminating["reason"]) == ("True", "SpecDeleted")
    st = wait_phase(data, name, "Stopped", timeout=5)
    assert time.monotonic() - gone <= 1.0, "Stopped within 1 s of the container's end"
    assert st["reason"] == "SpecDeleted" and st["stopping"] is None
    assert next(c for c in st["conditions"] if c["type"] == "Terminating")["status"] == "False"
    # job_info.json is written right after status.json (two files, two atomic writes): give it that moment
    wait_for(
        lambda: read_json_file(data / "jobs" / name / "job_info.json")["status"] == "stopped",
        timeout=2,
        what="job_info's seed word to follow the status",
    )


def test_a_python_job_as_pid_1_stops_within_2_s_of_a_delete(data, controller):
    name = job_name("py-pid1")
    loop = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
    doc = spec_doc(name, image=PYTHON, command=["python3", "-c", loop])
    path = write_spec(data, doc)
    wait_phase(data, name, "Running")
    wait_for(lambda: "up" in read_log(data, name), what="python to start")
    path.unlink()
    deleted = time.monotonic()
    wait_for(lambda: not running_containers(name), timeout=30, interval=0.05, what="the container to stop")
    assert time.monotonic() - deleted <= 2.0, "SIGTERM reached python through the init process"
    wait_phase(data, name, "Stopped", timeout=5)


def test_init_can_be_turned_off(data, controller):
    name = job_name("no-init")
    write_spec(data, shell_spec(name, "cat /proc/1/cmdline | tr '\\0' ' '; echo", init=False))
    wait_phase(data, name, "Succeeded")
    assert read_log(data, name).strip().splitlines()[-1].startswith("sh -c")
    on = job_name("with-init")
    write_spec(data, shell_spec(on, "cat /proc/1/cmdline | tr '\\0' ' '; echo"))
    wait_phase(data, on, "Succeeded")
    assert "init" in read_log(data, on).strip().splitlines()[-1]


def test_conditions_after_retry_then_success_describe_success(data, controller):
    name = job_name("retry-ok")
    write_spec(
        data,
        shell_spec(
            name,
            '[ "$OPEVA_ATTEMPT" -ge 3 ] || exit 1',
            restartPolicy="OnFailure",
            backoffLimit=3,
            backoff={"initialSeconds": 1, "maxSeconds": 1},
        ),
    )
    st = wait_phase(data, name, "Succeeded", timeout=60)
    assert st["attempts"] == 3
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    assert conditions["Succeeded"] == "True"
    stale = {t: s for t, s in conditions.items() if s == "True" and t not in ("Accepted", "Succeeded")}
    assert stale == {}, f"conditions that no longer hold: {st['conditions']}"
    assert conditions["BackingOff"] == "False"


def test_a_spec_written_in_two_pieces_runs_once_with_the_full_definition(data, controller):
    name = job_name("two-pieces")
    doc = shell_spec(name, 'echo "piece=$PIECE"')
    text = yaml.safe_dump(doc, sort_keys=False)
    rest = "  env:\n    PIECE: two\n"
    specs = data / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    with open(specs / f"{name}.yaml", "w") as f:  # a slow copy: the prefix is a valid spec on its own
        f.write(text)
        f.flush()
        time.sleep(0.3)
        f.write(rest)
    st = wait_phase(data, name, "Succeeded", timeout=30)
    time.sleep(1)
    st = read_status(data, name)
    reasons = [e["reason"] for e in read_events(data, name)]
    assert (st["attempts"], len(st["history"]), reasons.count("Creating")) == (1, 1, 1), reasons
    assert "GenerationChanged" not in reasons
    assert "piece=two" in read_log(data, name)


def test_copies_a_crash_left_behind_their_record_are_restored_at_start(data):
    """A SIGKILL between the record's write and its copies' leaves jobs/NAME/status.json and job_info.json one step
    behind; a finished job never changes again, so the next start must bring them in step."""
    name = job_name("copy-behind")
    ctl = ControllerProcess(data).start()
    try:
        write_spec(data, shell_spec(name, "echo done"))
        wait_phase(data, name, "Succeeded")
        ctl.kill()
        record = (data / ".opeva" / "status" / f"{name}.json").read_text()
        behind = {**json.loads(record), "phase": "Running", "reason": "Started"}
        (data / "jobs" / name / "status.json").write_text(json.dumps(behind))
        info_path = data / "jobs" / name / "job_info.json"
        info = read_json_file(info_path)
        info_path.write_text(json.dumps({**info, "status": "running", "phase": "Running", "finished_at": None}))
        ctl = ControllerProcess(data).start()
        assert (data / "jobs" / name / "status.json").read_text() == record
        info = read_json_file(info_path)
        assert (info["phase"], info["status"]) == ("Succeeded", seed_word("Succeeded", False))
        assert info["finished_at"] is not None
    finally:
        ctl.kill()
