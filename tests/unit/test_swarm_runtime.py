"""The Swarm runtime's pure parts: service names, Swarm's task states as ContainerInfo, waiting reasons, the log
cursor. (What Swarm really does is tested on a real swarm: tests/swarm, and tests/e2e over both engines.)"""

from __future__ import annotations

from controller.runtime.swarm import (
    LABEL_CONTAINER,
    LABEL_EXIT,
    LABEL_FINISHED,
    LABEL_STOPPED,
    SwarmRuntime,
    _Cursor,
    service_name,
    waiting_reason,
)

NAME = "opeva-abc123-train-7c71891c-2"
LABELS = {
    "opeva.job": "train",
    "opeva.attempt": "2",
    "opeva.generation": "g1",
    "opeva.run": "r1",
    LABEL_CONTAINER: NAME,
}


def service(total: int = 1, **labels: str) -> dict:
    return {
        "ID": "svc1",
        "CreatedAt": "2026-12-02T01:00:00.000000001Z",
        "Spec": {
            "Name": NAME,
            "Labels": {**LABELS, **labels},
            "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": total}},
            "TaskTemplate": {
                "ContainerSpec": {"StopGracePeriod": 5_000_000_000},
                "Resources": {"Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2**30}},
            },
        },
    }


def task(state: str, err: str = "", code: int | None = None, at: str = "2026-12-02T01:00:05Z") -> dict:
    status: dict = {"State": state, "Timestamp": at, "Err": err}
    if code is not None:
        status["ContainerStatus"] = {"ContainerID": "c1", "ExitCode": code}
    return {"ID": "t1", "NodeID": "node2", "CreatedAt": "2026-12-02T01:00:00.5Z", "Status": status}


RT = SwarmRuntime("unix:///nonexistent/docker.sock", instance="abc123", version="1.41")  # no engine is asked


def info(svc: dict, *tasks: dict):
    return RT._info(svc, list(tasks))


def test_names_swarm_accepts_are_kept_and_long_ones_shortened_deterministically():
    assert service_name(NAME) == NAME
    long = "opeva-abc123-" + "x" * 63 + "-7c71891c-1"
    short = service_name(long)
    assert len(short) <= 63 and short == service_name(long) and short != service_name(long[:-1] + "2")


def test_task_states_map_to_container_states():
    assert info(service()).state == "created"  # no task yet
    assert info(service(), task("pending")).state == "created"
    running = info(service(), task("running", code=0))
    assert (running.state, running.node, running.cpus, running.memory, running.stop_grace) == (
        "running",
        "node2",
        1.5,
        2**30,
        5,
    )
    assert (running.job, running.attempt, running.name, running.id) == ("train", 2, NAME, "svc1")
    done = info(service(), task("complete", code=0))
    assert (done.state, done.exit_code, done.started_at is not None) == ("exited", 0, True)
    failed = info(service(), task("failed", "task: non-zero exit (3)", code=3))
    assert (failed.state, failed.exit_code, failed.error) == ("exited", 3, "task: non-zero exit (3)")
    assert info(service(), task("orphaned")).state == "dead"


def test_a_task_swarm_refused_is_created_so_that_start_reports_it():
    refused = info(service(), task("rejected", "No such image: x:1"))
    assert (refused.state, refused.error) == ("created", "No such image: x:1")
    never_ran = info(service(), task("failed", "starting container failed: exec: nope", code=128))
    assert never_ran.state == "created"


def test_an_unplaceable_task_waits_with_our_reason():
    pending = info(service(), task("pending", "no suitable node (scheduling constraints not satisfied on 3 nodes)"))
    assert (pending.state, pending.waiting) == ("created", "Unschedulable")
    assert "no suitable node" in pending.error


def test_waiting_reasons_from_swarms_words_and_the_nodes():
    nodes = [{"Description": {"Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2**34}}}]
    msg = "no suitable node (insufficient resources on 3 nodes)"
    assert waiting_reason(msg, None, 2**40, nodes) == "InsufficientMemory"
    assert waiting_reason(msg, 8.0, 2**30, nodes) == "InsufficientCPU"
    assert waiting_reason(msg, None, 2**30, nodes) == "InsufficientMemory"  # fits a node, but not now
    assert waiting_reason("no suitable node (scheduling constraints not satisfied on 3 nodes)", 1, 1, nodes) == (
        "Unschedulable"
    )


def test_a_stopped_attempt_is_read_from_its_labels_after_swarm_deleted_its_task():
    seen = info(
        service(0, **{LABEL_STOPPED: "2026-12-02T01:00:09Z", LABEL_EXIT: "143", LABEL_FINISHED: "2026-12-02T01:00:10Z"})
    )
    assert (seen.state, seen.exit_code, seen.finished_at.second) == ("exited", 143, 10)
    crashed_mid_stop = info(service(0, **{LABEL_STOPPED: "2026-12-02T01:00:09Z"}))
    assert (crashed_mid_stop.state, crashed_mid_stop.exit_code, crashed_mid_stop.finished_at.second) == (
        "exited",
        137,
        9,
    )
    still_stopping = info(service(0, **{LABEL_STOPPED: "2026-12-02T01:00:09Z"}), task("running"))
    assert still_stopping.state == "running"


def test_the_log_cursor_skips_exactly_what_was_yielded():
    a, b, c, d = (f"2026-12-02T01:00:0{i}.000000001Z line{i}\n".encode() for i in (1, 2, 2, 3))
    cursor = _Cursor()
    for frame in (a, b):
        cursor.take(frame)
    # a re-read from a second earlier: a and the first frame at b's stamp were yielded; c shares the stamp
    assert list(cursor.new(iter([a, b, c, d]))) == [c, d]
    assert list(cursor.new(iter([a, b, c, d]))) == []
