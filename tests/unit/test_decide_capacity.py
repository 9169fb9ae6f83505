"""decide and capacity: a container is asked for only once the scheduler admits the job."""

from __future__ import annotations

import dataclasses

from controller.decide import Create, Decision, decide
from controller.scheduler import Admission

from .factories import Job, at, container, creates, desired_for, exited, facts, manifest, name_of, observed, reasons

M = manifest(resources={"cpus": 1, "gpus": 1})
GO = Admission("Admitted", gpu_ids=("1",))
CPU_WAIT = Admission("Waiting", "InsufficientCPU", "1 CPU requested, 0 free", position=2, waiting=3)
NEVER = Admission("Unschedulable", "Unschedulable", "4 CPUs requested, the machine offers 2 CPUs")


def step(job: Job, admission: Admission | None, *containers, now=at(0)) -> Decision:
    """One decision with the scheduler's answer in the observation."""
    obs = dataclasses.replace(observed(*containers), admission=admission)
    d = decide(desired_for(job.m), obs, job.status, facts(now))
    job.status, job.last = d.status, d
    return d


def test_admitted_job_is_created_with_its_gpus():
    job = Job(M)
    d = step(job, GO)
    assert d.actions == [Create(name_of(M, 1), 1, ("1",))]
    assert d.status.gpuIds == ["1"] and d.status.queuePosition is None


def test_no_admission_asked_means_go():
    assert creates(step(Job(M), None)) == [Create(name_of(M, 1), 1)]


def test_waiting_job_stays_pending_with_reason_position_and_condition():
    d = step(Job(M), CPU_WAIT)
    st = d.status
    assert not d.actions and st.attempts == 0
    assert (st.phase, st.reason, st.queuePosition) == ("Pending", "InsufficientCPU", 2)
    assert st.message == "1 CPU requested, 0 free; position 2 of 3 in the queue"
    cond = st.condition("Pending")
    assert (cond.status, cond.reason, cond.message) == ("True", "InsufficientCPU", st.message)
    assert reasons(d) == ["Accepted", "Waiting"]


def test_a_move_in_the_queue_updates_the_position_without_a_new_event():
    job = Job(M)
    step(job, CPU_WAIT)
    d = step(job, dataclasses.replace(CPU_WAIT, position=1, waiting=2), now=at(5))
    assert d.status.queuePosition == 1 and "position 1 of 2" in d.status.message
    assert reasons(d) == []


def test_a_new_reason_is_an_event():
    job = Job(M)
    step(job, CPU_WAIT)
    d = step(job, Admission("Waiting", "QueueFull", "queue 'q' runs 2 of its maxRunning 2", 1, 1), now=at(5))
    assert d.status.reason == "QueueFull" and reasons(d) == ["Waiting"]


def test_admitted_after_waiting_clears_position_and_condition():
    job = Job(M)
    step(job, CPU_WAIT)
    d = step(job, GO, now=at(9))
    assert creates(d) == [Create(name_of(M, 1), 1, ("1",))]
    st = d.status
    assert st.queuePosition is None and st.condition("Pending").status == "False"
    assert (st.phase, st.reason, st.attempts) == ("Pending", "Starting", 1)


def test_unschedulable_job_fails_and_is_never_retried():
    job = Job(M)
    d = step(job, NEVER)
    st = d.status
    assert not d.actions and (st.phase, st.reason) == ("Failed", "Unschedulable")
    assert "machine offers 2 CPUs" in st.message and st.attempts == 0
    again = step(job, None, now=at(60))
    assert not again.actions and again.status.reason == "Unschedulable"


def test_recorded_attempt_without_container_waits_for_admission_too():
    """Intent written, then the controller restarted before the create: the create still needs admission."""
    job = Job(M)
    step(job, GO)
    d = step(job, CPU_WAIT, now=at(1))
    assert not d.actions and d.status.attempts == 1 and d.status.reason == "InsufficientCPU"
    d = step(job, GO, now=at(2))
    assert d.actions == [Create(name_of(M, 1), 1, ("1",))]


def test_retry_after_failure_waits_its_turn_without_counting_an_attempt():
    m = manifest(resources={"cpus": 1}, restartPolicy="OnFailure", backoff={"initialSeconds": 1})
    job = Job(m)
    step(job, GO)
    step(job, GO, container(m, 1), now=at(1))
    d = step(job, GO, exited(m, 1, 1, started=at(1), finished=at(3)), now=at(3))
    assert d.status.reason == "BackingOff" and d.status.condition("Pending").reason == "BackingOff"
    d = step(job, CPU_WAIT, now=at(10))
    assert d.status.attempts == 1 and d.status.reason == "InsufficientCPU" and not creates(d)
    d = step(job, GO, now=at(20))
    assert creates(d)[0].attempt == 2 and d.status.condition("Pending").status == "False"


def test_deleting_a_waiting_job_takes_it_out_of_the_queue_record():
    job = Job(M)
    step(job, CPU_WAIT)
    job.edit(None)
    d = decide(desired_for(None), observed(), job.status, facts(at(5)))
    st = d.status
    assert (st.phase, st.reason, st.queuePosition) == ("Stopped", "SpecDeleted", None)
    assert st.condition("Pending").status == "False"


def test_suspending_a_waiting_job_clears_its_position():
    job = Job(M)
    step(job, CPU_WAIT)
    job.edit(manifest(resources={"cpus": 1, "gpus": 1}, suspend=True))
    d = step(job, None, now=at(5))
    assert (d.status.phase, d.status.queuePosition) == ("Stopped", None)
