"""The scheduler: the pure pass as tables of cases, then the shared object's reservations, release and wake-ups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.capacity import Capacity, machine_capacity, parse_gpu_list, parse_queues
from controller.runtime.base import LABEL_JOB, ContainerInfo
from controller.scheduler import (
    LABEL_QUEUE,
    PendingJob,
    Request,
    Reservation,
    Scheduler,
    pending_job,
    schedule,
)

from .factories import T0, manifest

GI = 2**30
MACHINE = Capacity(cpus=4, memory=8 * GI, gpu_ids=("0", "1"))


def job(
    name: str, cpus: float = 0, mem: float = 0, gpus: int = 0, prio: int = 0, t: float = 0, queue: str | None = None
) -> PendingJob:
    """A pending job submitted `t` seconds after T0."""
    return PendingJob(name, Request(cpus, int(mem * GI), gpus), prio, T0 + timedelta(seconds=t), queue)


def held(name: str, cpus: float = 0, mem: float = 0, gpus: tuple[str, ...] = (), queue: str | None = None):
    return Reservation(name, Request(cpus, int(mem * GI), len(gpus)), gpus, queue, f"c-{name}")


def outcome(plan) -> dict[str, str]:
    """job -> 'start', the wait reason, or 'Unschedulable'."""
    out = {name: "start" for name in plan.admitted}
    out.update({name: w.reason for name, w in plan.waiting.items()})
    out.update({name: "Unschedulable" for name in plan.unschedulable})
    return out


# ---- who starts ------------------------------------------------------------------------------------------------
CASES = [
    # (id, capacity, reservations, pending, expected outcome)
    ("fits", MACHINE, [], [job("a", 2, 1)], {"a": "start"}),
    ("no resources asked: always fits", MACHINE, [held("r", 4, 8)], [job("a")], {"a": "start"}),
    ("cpu full", MACHINE, [held("r", 4)], [job("a", 1)], {"a": "InsufficientCPU"}),
    ("memory full", MACHINE, [held("r", 0, 7.5)], [job("a", 0, 1)], {"a": "InsufficientMemory"}),
    ("gpus taken", MACHINE, [held("r", gpus=("0", "1"))], [job("a", gpus=1)], {"a": "InsufficientGPU"}),
    (
        "two fit, third waits",
        MACHINE,
        [],
        [job("a", 2, t=0), job("b", 2, t=1), job("c", 2, t=2)],
        {"a": "start", "b": "start", "c": "InsufficientCPU"},
    ),
    (
        "priority beats submission time",
        Capacity(1, 8 * GI),
        [],
        [job("early", 1, t=0), job("urgent", 1, prio=5, t=9)],
        {"urgent": "start", "early": "InsufficientCPU"},
    ),
    (
        "fifo within a priority",
        Capacity(1, 8 * GI),
        [],
        [job("zz", 1, t=0), job("aa", 1, t=1)],
        {"zz": "start", "aa": "InsufficientCPU"},
    ),
    (
        "big head holds back a small job",
        MACHINE,
        [held("r", 2)],
        [job("big", 4, t=0), job("small", 1, t=1)],
        {"big": "InsufficientCPU", "small": "InsufficientCPU"},
    ),
    (
        "backfill what the head does not need",
        MACHINE,
        [held("r", 2)],
        [job("big", 4, t=0), job("mem-only", 0, 1, t=1)],
        {"big": "InsufficientCPU", "mem-only": "start"},
    ),
    (
        "backfill only beyond the head's full request",
        MACHINE,
        [held("r", 0, 0, ("0",))],
        [job("gpu-head", 2, gpus=2, t=0), job("cpu-small", 2, t=1), job("cpu-more", 1, t=2)],
        {"gpu-head": "InsufficientGPU", "cpu-small": "start", "cpu-more": "InsufficientCPU"},
    ),
    (
        "every waiting job ahead holds back",
        Capacity(4, 8 * GI),
        [held("r", 3)],
        [job("a", 2, t=0), job("b", 2, t=1), job("c", 1, t=2)],
        {"a": "InsufficientCPU", "b": "InsufficientCPU", "c": "InsufficientCPU"},
    ),
    ("too big for the machine", MACHINE, [], [job("huge", 5)], {"huge": "Unschedulable"}),
    ("too much memory", MACHINE, [], [job("huge", 1, 9)], {"huge": "Unschedulable"}),
    ("no gpus at all", Capacity(4, 8 * GI), [], [job("g", gpus=1)], {"g": "Unschedulable"}),
    (
        "unschedulable holds nothing back",
        Capacity(1, 8 * GI),
        [],
        [job("huge", 2, t=0), job("a", 1, t=1)],
        {"huge": "Unschedulable", "a": "start"},
    ),
    ("global maxRunning", Capacity(4, 8 * GI, max_running=1), [held("r")], [job("a")], {"a": "QueueFull"}),
    (
        "maxRunning counts jobs started in this pass",
        Capacity(4, 8 * GI, max_running=2),
        [],
        [job("a", t=0), job("b", t=1), job("c", t=2)],
        {"a": "start", "b": "start", "c": "QueueFull"},
    ),
    (
        "queue limit",
        Capacity(4, 8 * GI, queues={"q": 1}),
        [held("r", queue="q")],
        [job("a", queue="q"), job("b", queue="other")],
        {"a": "QueueFull", "b": "start"},
    ),
    (
        "queue limit in one pass",
        Capacity(4, 8 * GI, queues={"q": 1}),
        [],
        [job("a", queue="q", t=0), job("b", queue="q", t=1)],
        {"a": "start", "b": "QueueFull"},
    ),
    (
        "a queue-limited job holds no resources",
        Capacity(2, 8 * GI, queues={"q": 1}),
        [held("r", 1, queue="q")],
        [job("a", 1, queue="q", t=0), job("b", 1, t=1)],
        {"a": "QueueFull", "b": "start"},
    ),
    (
        "maxRunning 0 pauses a queue",
        Capacity(4, 8 * GI, queues={"q": 0}),
        [],
        [job("a", queue="q")],
        {"a": "QueueFull"},
    ),
    (
        "over-committed after a restart: nothing starts",
        Capacity(2, 8 * GI),
        [held("r1", 2), held("r2", 1)],
        [job("a", 0.5)],
        {"a": "InsufficientCPU"},
    ),
]


@pytest.mark.parametrize("capacity, reservations, pending, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schedule(capacity, reservations, pending, expected):
    assert outcome(schedule(capacity, reservations, pending)) == expected


def test_positions_count_waiting_jobs_in_queue_order():
    plan = schedule(Capacity(1, GI), [held("r", 1)], [job("c", 1, t=2), job("a", 1, t=0), job("b", 1, prio=1, t=5)])
    assert {n: w.position for n, w in plan.waiting.items()} == {"b": 1, "a": 2, "c": 3}
    assert plan.queue_length == 3


def test_gpus_are_assigned_by_id_and_never_shared():
    plan = schedule(
        Capacity(8, 8 * GI, gpu_ids=("0", "1", "2", "3")),
        [held("r", gpus=("1",))],
        [job("a", gpus=2, t=0), job("b", gpus=1, t=1), job("c", gpus=1, t=2)],
    )
    assert plan.admitted == {"a": ("0", "2"), "b": ("3",)}
    assert plan.waiting["c"].reason == "InsufficientGPU"


def test_wait_message_says_what_is_missing():
    plan = schedule(Capacity(2, GI), [held("r", 1.5, 0.75)], [job("a", 1, 0.5)])
    w = plan.waiting["a"]
    assert w.reason == "InsufficientCPU"
    assert "1 CPU requested, 0.5 free" in w.message and "512Mi of memory requested, 256Mi free" in w.message


def test_wait_message_says_when_jobs_ahead_hold_resources_back():
    plan = schedule(Capacity(4, GI), [held("r", 2)], [job("big", 4, t=0), job("small", 1, t=1)])
    assert "jobs ahead" in plan.waiting["small"].message and "jobs ahead" not in plan.waiting["big"].message


def test_unschedulable_message_names_request_and_machine():
    plan = schedule(Capacity(2, GI), [], [job("a", 3, 2, gpus=1)])
    msg = plan.unschedulable["a"]
    assert "3 CPUs requested, the machine offers 2 CPUs" in msg
    assert "2Gi of memory requested, the machine offers 1Gi" in msg and "the machine has none" in msg


def test_schedule_is_deterministic_for_equal_submission_times():
    pending = [job(n, 1) for n in ("c", "a", "b")]
    assert list(schedule(Capacity(1, GI), [], pending).admitted) == ["a"]


# ---- the shared object ----------------------------------------------------------------------------------------
def live(
    name: str,
    cpus: float | None = None,
    memory: int | None = None,
    gpus: tuple[str, ...] = (),
    queue: str | None = None,
    state: str = "running",
) -> ContainerInfo:
    labels = {LABEL_JOB: name, **({LABEL_QUEUE: queue} if queue else {})}
    return ContainerInfo(
        id=f"id-{name}",
        name=f"c-{name}",
        job=name,
        generation="g",
        run="r",
        attempt=1,
        state=state,
        labels=labels,
        cpus=cpus,
        memory=memory,
        gpu_ids=gpus,
    )


def test_admit_takes_the_reservation():
    s = Scheduler(Capacity(2, GI, gpu_ids=("0", "1")))
    a = s.admit(job("a", 1, gpus=1), "c-a")
    assert a.admitted and a.gpu_ids == ("0",)
    assert s.reservations()["a"].request.cpus == 1 and not s.pending()


def test_admit_again_keeps_the_same_gpus():
    """A create that failed half-way (engine away) is retried with the same devices."""
    s = Scheduler(Capacity(2, GI, gpu_ids=("0", "1")))
    s.admit(job("other", gpus=1), "c-other")
    first = s.admit(job("a", gpus=1), "c-a")
    assert s.admit(job("a", gpus=1), "c-a").gpu_ids == first.gpu_ids == ("1",)


def test_waiting_job_gets_reason_and_position():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1, t=0), "c-a")
    s.admit(job("b", 1, t=1), "c-b")
    w = s.admit(job("c", 1, t=2), "c-c")
    assert (w.verdict, w.reason, w.position, w.waiting) == ("Waiting", "InsufficientCPU", 2, 2)


def test_unschedulable_job_leaves_the_queue():
    s = Scheduler(Capacity(1, GI))
    a = s.admit(job("huge", 8), "c")
    assert a.verdict == "Unschedulable" and "8 CPUs requested" in a.message
    assert not s.pending()


def test_release_wakes_the_jobs_that_may_start_now():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1, t=0), "c-a")
    s.settle("a", live("a", 1), waiting=False)
    s.admit(job("b", 1, t=1), "c-b")
    s.settle("b", None, waiting=True)
    s.admit(job("c", 1, t=2), "c-c")
    s.settle("c", None, waiting=True)
    wake = s.settle("a", None, waiting=False)  # a's container exited
    assert wake.now == ("b",) and "c" in wake.later
    assert "a" not in s.reservations()


def test_a_container_that_died_frees_its_share_before_its_job_is_looked_at():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1, t=0), "c-a")
    s.settle("a", live("a", 1), waiting=False)
    s.admit(job("b", 1, t=1), "c-b")
    s.settle("b", None, waiting=True)
    assert s.ended("c-a").now == ("b",)
    # a cache that has not seen the exit yet does not bring the reservation back
    s.settle("a", live("a", 1), waiting=False)
    assert "a" not in s.reservations() and s.admit(job("b", 1, t=1), "c-b").admitted


def test_settle_keeps_the_reservation_while_the_container_is_being_created():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1), "c-a")
    s.settle("a", None, waiting=False, creating=True)
    assert "a" in s.reservations()


def test_withdrawn_job_frees_its_place():
    """A waiting job that is deleted or suspended stops holding back the jobs behind it."""
    s = Scheduler(Capacity(2, GI))
    s.admit(job("r", 1), "c-r")
    s.settle("r", live("r", 1), waiting=False)
    s.admit(job("big", 2, t=0), "c-big")
    s.settle("big", None, waiting=True)
    assert s.admit(job("small", 1, t=1), "c-small").reason == "InsufficientCPU"
    s.settle("small", None, waiting=True)
    wake = s.settle("big", None, waiting=False)
    assert wake.now == ("small",)


def test_adopted_container_without_reservation_gets_one_from_the_engine():
    s = Scheduler(Capacity(2, GI, gpu_ids=("0", "1")))
    s.settle("a", live("a", cpus=1.5, memory=GI // 2, gpus=("1",), queue="q"), waiting=False)
    r = s.reservations()["a"]
    assert (r.request, r.gpu_ids, r.queue) == (Request(1.5, GI // 2, 1), ("1",), "q")


def test_rebuild_after_restart_prevents_over_commit():
    s = Scheduler(Capacity(2, 2 * GI, gpu_ids=("0", "1"), queues={"q": 1}))
    s.rebuild([live("a", 1, gpus=("0",)), live("b", 1, queue="q"), live("gone", 1, state="exited")])
    assert set(s.reservations()) == {"a", "b"}
    assert s.admit(job("c", 1), "c-c").reason == "InsufficientCPU"
    assert s.admit(job("d", gpus=1), "c-d").gpu_ids == ("1",)
    assert s.admit(job("e", queue="q"), "c-e").reason == "QueueFull"


def test_enqueue_restores_order_before_anyone_asks():
    s = Scheduler(Capacity(1, GI))
    s.enqueue([job("high", 1, prio=9, t=5)])
    assert s.admit(job("low", 1, t=0), "c-low").verdict == "Waiting"
    assert s.admit(job("high", 1, prio=9, t=5), "c-high").admitted


def test_new_attempt_replaces_the_old_reservation():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1), "c-a-1")
    assert s.admit(job("a", 1), "c-a-2").admitted
    assert s.reservations()["a"].container == "c-a-2"


def test_retry_waits_its_turn_behind_jobs_ahead():
    s = Scheduler(Capacity(1, GI))
    s.admit(job("a", 1, t=5), "c-a-1")
    s.admit(job("urgent", 1, prio=3, t=6), "c-u")
    assert s.admit(job("a", 1, t=5), "c-a-2").reason == "InsufficientCPU"
    assert "a" not in s.reservations()


def test_pending_job_from_a_manifest():
    m = manifest(resources={"cpus": 2, "memory": "1Gi", "gpus": 1}, priority=3, queue="gpu-long")
    assert pending_job(m, T0) == PendingJob("job", Request(2.0, GI, 1), 3, T0, "gpu-long")
    assert pending_job(manifest(), None).request == Request()


# ---- capacity settings ----------------------------------------------------------------------------------------
def test_given_figures_are_what_jobs_get_and_the_reserve_comes_off_detected_ones():
    c = machine_capacity(cpus=3, memory="2Gi", gpus=("0",), reserve_cpus=1, reserve_memory="1Gi")
    assert (c.cpus, c.memory, c.gpu_ids) == (3.0, 2 * GI, ("0",))
    detected = machine_capacity(gpus=(), reserve_cpus=0.5)
    assert detected.cpus > 0 and detected.memory > 0
    assert machine_capacity(gpus=()).cpus - detected.cpus == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text, ids", [("0,1,2", ("0", "1", "2")), (" 3 , 1 ", ("3", "1")), ("none", ()), ("", ()), (None, None)]
)
def test_parse_gpu_list(text, ids):
    assert parse_gpu_list(text) == ids


def test_parse_gpu_list_rejects_duplicates():
    with pytest.raises(ValueError, match="twice"):
        parse_gpu_list("0,0")


def test_parse_queues_from_json_and_from_a_file(tmp_path):
    assert parse_queues('{"gpu-long": {"maxRunning": 2}}') == {"gpu-long": 2}
    f = tmp_path / "queues.yaml"
    f.write_text("queues:\n  gpu-long: {maxRunning: 2}\n  cpu: {maxRunning: 0}\n")
    assert parse_queues(str(f)) == {"gpu-long": 2, "cpu": 0}


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"q": {"maxRuning": 2}}', "must be {maxRunning: N}"),
        ('{"q": {"maxRunning": -1}}', "non-negative"),
        ("[1]", "expected a mapping"),
        ("{not json", "not valid JSON"),
        ("/nonexistent/queues.yaml", "cannot read"),
    ],
)
def test_parse_queues_rejects_bad_input(text, problem):
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("[", r"\[")):
        parse_queues(text)


def test_capacity_settings_from_the_environment(monkeypatch, tmp_path):
    from controller.settings import Settings

    monkeypatch.setenv("OPEVA_CPUS", "3.5")
    monkeypatch.setenv("OPEVA_MEMORY", "2Gi")
    monkeypatch.setenv("OPEVA_GPUS", "0,1")
    monkeypatch.setenv("OPEVA_MAX_RUNNING", "4")
    monkeypatch.setenv("OPEVA_QUEUES", '{"gpu-long": {"maxRunning": 2}}')
    s = Settings.from_env(data_dir=tmp_path, cpus=2.0)  # a flag wins over the environment
    assert (s.cpus, s.memory, s.gpus, s.max_running, s.queues) == (2.0, 2 * GI, ("0", "1"), 4, {"gpu-long": 2})


def test_a_bad_capacity_setting_names_its_variable(monkeypatch, tmp_path):
    from controller.settings import Settings

    monkeypatch.setenv("OPEVA_MEMORY", "lots")
    with pytest.raises(ValueError, match="OPEVA_MEMORY"):
        Settings.from_env(data_dir=tmp_path)


def test_a_bad_capacity_flag_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["run", "--data", str(tmp_path), "--no-api", "--queues", '{"q": 2}'])
    assert result.exit_code == 2 and "must be {maxRunning: N}" in result.output
