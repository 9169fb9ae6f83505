"""The pure decision: every branch of controller/decide, one behaviour per test, no I/O and no clocks."""

from __future__ import annotations

import dataclasses

import pytest

from controller.decide import (
    DEFAULT_GRACE,
    LOG_DRAIN_POLL,
    Collect,
    Create,
    Remove,
    Start,
    Stop,
    container_name,
    decide,
    fail_attempt_start,
    run_key,
)
from controller.status import JobStatus

from .factories import (
    INSTANCE,
    T0,
    Job,
    at,
    container,
    creates,
    desired_for,
    exited,
    facts,
    fail_repeatedly,
    finished_job,
    manifest,
    name_of,
    observed,
    reasons,
    removes,
    running_job,
    stops,
)

M = manifest()
ON_FAILURE = {"restartPolicy": "OnFailure", "backoffLimit": 3}
ERROR = "job.yaml: spec.imagee: unknown field"


# ---- a new job ------------------------------------------------------------------------------------------------
def test_new_job_creates_attempt_1():
    assert Job(M).step().actions == [Create(name_of(M, 1), 1)]


def test_new_job_records_the_create_intent_before_acting():
    st = Job(M).step().status
    assert (st.phase, st.reason, st.attempts, st.containerName) == ("Pending", "Starting", 1, name_of(M, 1))


def test_new_job_records_generation_and_submission_time():
    st = Job(M).step(now=at(5)).status
    assert (st.observedGeneration, st.submittedAt, st.condition("Accepted").status) == (M.generation, at(5), "True")


def test_new_job_events_say_accepted_then_creating():
    assert reasons(Job(M).step()) == ["Accepted", "Creating"]


def test_create_intent_without_a_container_yet_creates_the_same_attempt_again():
    job = Job(M)
    job.step()
    d = job.step(now=at(1))
    assert (d.actions, d.events, d.status.attempts) == ([Create(name_of(M, 1), 1)], [], 1)


def test_created_but_not_started_container_is_started():
    job = Job(M)
    job.step()
    d = job.step(container(M, 1, "created"), now=at(1))
    assert d.actions == [Start(name_of(M, 1))]


# ---- adoption -------------------------------------------------------------------------------------------------
def test_running_container_is_adopted_as_running():
    job, c = running_job(M, started=at(2))
    st = job.status
    assert (st.phase, st.reason, st.containerId, st.startedAt) == ("Running", "Started", c.id, at(2))


def test_running_container_adoption_emits_started_and_no_actions():
    job, _ = running_job(M)
    assert (reasons(job.last), job.last.actions) == (["Started"], [])


def test_newer_running_attempt_than_recorded_is_adopted_not_duplicated():
    job = Job(M)
    job.step()  # the status says attempt 1; a later attempt exists (a create that raced, a restored backup)
    d = job.step(container(M, 2), now=at(1))
    assert (d.status.attempts, d.status.containerName, d.status.phase, creates(d)) == (2, name_of(M, 2), "Running", [])
    assert "Adopted" in reasons(d)


def test_lost_status_with_running_container_adopts_without_create():
    d = Job(M).step(container(M, 1))
    assert (d.status.phase, d.status.attempts, creates(d)) == ("Running", 1, [])


def test_newer_created_attempt_is_adopted_and_started():
    job = Job(M)
    job.step()
    assert job.step(container(M, 2, "created"), now=at(1)).actions == [Start(name_of(M, 2))]


# ---- completion -----------------------------------------------------------------------------------------------
def test_exit_waits_for_the_log_to_drain_before_anything_else():
    job, _ = running_job(M)
    c = exited(M, 1, 0)
    d = job.step(c, now=at(30), undrained=(c.name,))
    assert (d.actions, d.status.phase, d.status.history) == ([], "Running", [])
    assert d.requeue_after == LOG_DRAIN_POLL <= 1


def test_exit_0_succeeds_completed():
    job, _ = running_job(M)
    st = job.step(exited(M, 1, 0, finished=at(30)), now=at(31)).status
    assert (st.phase, st.reason, st.exitCode, st.finishedAt) == ("Succeeded", "Completed", 0, at(30))


def test_exit_0_is_written_to_the_attempt_history():
    job, _ = running_job(M)
    h = job.step(exited(M, 1, 0), now=at(31)).status.history
    assert [(r.attempt, r.outcome, r.reason, r.exitCode, r.counted) for r in h] == [
        (1, "Succeeded", "Completed", 0, False)
    ]


def test_finished_container_is_removed_once_its_log_is_complete():
    job, _ = running_job(M)
    d = job.step(exited(M, 1, 0), now=at(31))
    assert (removes(d), creates(d)) == ([Remove(name_of(M, 1))], [])


def test_keep_finished_containers_keeps_the_container():
    job, _ = running_job(M)
    assert job.step(exited(M, 1, 0), now=at(31), keep_finished_containers=True).actions == []


def test_nonzero_exit_with_default_policy_fails_with_error():
    job, _ = running_job(M)
    d = job.step(exited(M, 1, 3), now=at(31))
    st = d.status
    assert (st.phase, st.reason, st.exitCode, st.message, creates(d)) == ("Failed", "Error", 3, "exit code 3", [])


def test_exit_seen_before_running_still_records_the_start_time():
    job = Job(M)
    job.step()
    assert job.step(exited(M, 1, 0, started=at(1)), now=at(40)).status.startedAt == at(1)


@pytest.mark.parametrize("code", [0, 1], ids=["succeeded", "failed"])
def test_finished_job_is_never_created_again_for_the_same_run(code):
    job = finished_job(M, code)
    # a controller restart: the status comes back from its JSON file
    job.status = JobStatus.model_validate_json(job.status.model_dump_json())
    before = job.status.model_copy(deep=True)
    d = job.step(now=at(86400))
    assert (d.actions, d.events, d.status) == ([], [], before)


# ---- retries and backoff --------------------------------------------------------------------------------------
def test_on_failure_backs_off_instead_of_failing():
    m = manifest(**ON_FAILURE)
    job, _ = running_job(m)
    d = job.step(exited(m, 1, 1), now=at(30))
    st = d.status
    assert (st.phase, st.reason, st.failures, st.nextAttemptAt, d.requeue_after) == (
        "Pending",
        "BackingOff",
        1,
        at(40),
        10,
    )
    assert (st.condition("BackingOff").status, st.history[-1].counted, creates(d)) == ("True", True, [])


@pytest.mark.parametrize(
    "spec, delays",
    [
        ({}, [10, 20, 40, 80, 160, 300, 300]),
        ({"backoff": {"initialSeconds": 1, "maxSeconds": 3}}, [1, 2, 3, 3]),
        ({"backoff": {"initialSeconds": 5}}, [5, 10, 20]),
    ],
    ids=["default-10s-doubling-to-5min", "custom-capped", "custom-initial"],
)
def test_backoff_doubles_from_initial_up_to_max(spec, delays):
    job = Job(manifest(restartPolicy="OnFailure", backoffLimit=len(delays), **spec))
    got = [
        (d.status.nextAttemptAt - d.status.history[-1].finishedAt).total_seconds()
        for d in fail_repeatedly(job, len(delays))
    ]
    assert got == delays


def test_no_new_attempt_before_backoff_is_due():
    job = Job(manifest(**ON_FAILURE))
    fail_repeatedly(job, 1)  # failed at 30 s, next attempt due at 40 s
    d = job.step(now=at(39))
    assert (d.actions, d.requeue_after, d.status.reason) == ([], 1, "BackingOff")


def test_next_attempt_is_created_when_backoff_is_due():
    m = manifest(**ON_FAILURE)
    job = Job(m)
    fail_repeatedly(job, 1)
    d = job.step(now=at(40))
    assert (d.actions, d.status.attempts, d.status.reason) == ([Create(name_of(m, 2), 2)], 2, "Starting")


def test_started_retry_clears_backing_off():
    m = manifest(**ON_FAILURE)
    job = Job(m)
    fail_repeatedly(job, 1)
    job.step(now=at(40))
    st = job.step(container(m, 2, started=at(41)), now=at(41)).status
    assert (st.phase, st.nextAttemptAt, st.condition("BackingOff").status) == ("Running", None, "False")


@pytest.mark.parametrize(
    "spec, allowed, reason",
    [
        ({}, 1, "Error"),
        ({"restartPolicy": "OnFailure"}, 4, "BackoffLimitExceeded"),
        ({"restartPolicy": "OnFailure", "backoffLimit": 1}, 2, "BackoffLimitExceeded"),
        ({"backoffLimit": 2}, 3, "BackoffLimitExceeded"),
    ],
    ids=["never-default-0", "onfailure-default-3", "onfailure-limit-1", "never-limit-2"],
)
def test_job_fails_when_failures_exceed_backoff_limit(spec, allowed, reason):
    job = Job(manifest(**spec))
    decisions = fail_repeatedly(job, allowed)
    assert [d.status.phase for d in decisions] == ["Pending"] * (allowed - 1) + ["Failed"]
    assert (job.status.reason, job.status.failures, creates(decisions[-1])) == (reason, allowed, [])


# ---- failurePolicy and OOM ------------------------------------------------------------------------------------
def exit_under(policy: list[dict], code: int, oom: bool = False):
    m = manifest(failurePolicy=policy, **ON_FAILURE)
    job, _ = running_job(m)
    return m, job.step(exited(m, 1, code, oom=oom), now=at(60))  # past the settle window of a signal death


def test_failure_rule_failjob_ends_the_job_at_once():
    _, d = exit_under([{"exitCodes": [2, 3], "action": "FailJob"}], 3)
    assert (d.status.phase, d.status.reason, creates(d)) == ("Failed", "Error", [])
    assert "failurePolicy rule 1: FailJob" in d.status.message


def test_failure_rule_ignore_retries_at_once_without_counting():
    m, d = exit_under([{"exitCodes": [2], "action": "FailJob"}, {"exitCodes": [75], "action": "Ignore"}], 75)
    h = d.status.history[-1]
    assert (d.status.failures, h.outcome, h.counted, creates(d)) == (0, "Ignored", False, [Create(name_of(m, 2), 2)])


def test_failure_rule_count_counts_like_the_default():
    _, d = exit_under([{"exitCodes": [1], "action": "Count"}], 1)
    assert (d.status.failures, d.status.reason) == (1, "BackingOff")


def test_unmatched_exit_code_falls_back_to_count():
    _, d = exit_under([{"exitCodes": [2], "action": "FailJob"}], 1)
    assert (d.status.failures, d.status.reason) == (1, "BackingOff")


def test_oom_killed_is_its_own_reason():
    job, _ = running_job(M)
    st = job.step(exited(M, 1, 137, oom=True), now=at(30)).status
    assert (st.phase, st.reason) == ("Failed", "OOMKilled")


def test_oom_rule_matches_an_oom_kill():
    _, d = exit_under([{"oomKilled": True, "action": "FailJob"}], 137, oom=True)
    assert (d.status.phase, d.status.reason) == ("Failed", "OOMKilled")


def test_oom_rule_does_not_match_a_plain_failure():
    _, d = exit_under([{"oomKilled": True, "action": "FailJob"}], 137)
    assert (d.status.phase, d.status.reason) == ("Pending", "BackingOff")


# ---- interruptions --------------------------------------------------------------------------------------------
# The attempt runs from T0 and ends at 30 s; each case places the machine's trouble around that.
INTERRUPTIONS = {
    "rebooted": {"boot_time": at(20)},
    "daemon-restarted": {"daemon_started_at": at(40)},
    "engine-outage": {"outages": ((at(25), at(35)),)},
}


def exit_with_facts(code: int, m=M, **fact_kw):
    job, _ = running_job(m)
    return job.step(exited(m, 1, code, finished=at(30)), now=at(60), **fact_kw)


@pytest.mark.parametrize("fact_kw", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_interrupted_attempt_runs_again_as_a_new_attempt(fact_kw):
    d = exit_with_facts(137, **fact_kw)
    assert (creates(d), d.status.attempts) == ([Create(name_of(M, 2), 2)], 2)
    assert "Interrupted" in reasons(d)


@pytest.mark.parametrize("fact_kw", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_interrupted_attempt_is_not_counted(fact_kw):
    st = exit_with_facts(137, **fact_kw).status
    h = st.history[-1]
    assert (st.failures, h.outcome, h.counted, st.condition("Interrupted").status) == (0, "Interrupted", False, "True")


@pytest.mark.parametrize("fact_kw", INTERRUPTIONS.values(), ids=INTERRUPTIONS.keys())
def test_exit_0_inside_an_interruption_window_is_success(fact_kw):
    st = exit_with_facts(0, **fact_kw).status
    assert (st.phase, st.reason) == ("Succeeded", "Completed")


def test_interruption_policy_fail_ends_the_job():
    d = exit_with_facts(137, manifest(interruptionPolicy="Fail"), boot_time=at(20))
    assert (d.status.phase, d.status.reason, creates(d)) == ("Failed", "Interrupted", [])


def test_exit_outside_any_interruption_window_is_the_jobs_failure():
    st = exit_with_facts(1, boot_time=at(-3600), daemon_started_at=at(-3600), outages=((at(-100), at(-50)),)).status
    assert (st.phase, st.reason) == ("Failed", "Error")


def test_container_removed_after_its_id_was_recorded_is_an_interruption():
    job, _ = running_job(M)
    d = job.step(now=at(60))  # the container is gone, its exit never seen
    h = d.status.history[-1]
    assert (h.outcome, h.reason, d.status.failures, creates(d)) == (
        "Interrupted",
        "ContainerRemoved",
        0,
        [Create(name_of(M, 2), 2)],
    )


# ---- activeDeadlineSeconds ------------------------------------------------------------------------------------
DEADLINE = manifest(activeDeadlineSeconds=60)


def test_active_deadline_requeues_for_the_time_left():
    job, c = running_job(DEADLINE)
    d = job.step(c, now=at(45))
    assert (d.actions, d.requeue_after) == ([], 15)


def test_active_deadline_exceeded_stops_and_fails():
    job, c = running_job(DEADLINE)
    d = job.step(c, now=at(60))
    assert (stops(d), d.status.phase, d.status.reason) == (
        [Stop(c.name, 30, "DeadlineExceeded")],
        "Failed",
        "DeadlineExceeded",
    )
    assert d.status.stopping.reason == "DeadlineExceeded"


def test_deadline_exceeded_container_still_running_is_stopped_again():
    job, c = running_job(DEADLINE)
    job.step(c, now=at(60))
    assert job.step(c, now=at(61)).actions == [Stop(c.name, 30, "DeadlineExceeded")]


def test_deadline_exceeded_container_exit_is_recorded_as_stopped():
    job, c = running_job(DEADLINE)
    job.step(c, now=at(60))
    d = job.step(exited(DEADLINE, 1, 137, finished=at(61)), now=at(62))
    assert (d.status.history[-1].outcome, d.status.reason, d.actions) == (
        "Stopped",
        "DeadlineExceeded",
        [Remove(c.name)],
    )


def test_deadline_exceeded_while_backing_off_fails_without_a_new_attempt():
    job = Job(manifest(activeDeadlineSeconds=35, **ON_FAILURE))
    fail_repeatedly(job, 1)  # next attempt due at 40 s
    d = job.step(now=at(40))
    assert (d.actions, d.status.phase, d.status.reason) == ([], "Failed", "DeadlineExceeded")


def test_deadline_clock_pauses_while_suspended():
    m = manifest(activeDeadlineSeconds=100)
    job, c = running_job(m)
    job.edit(manifest(activeDeadlineSeconds=100, suspend=True)).step(c, now=at(60))  # 60 s active
    job.step(exited(m, 1, 143, finished=at(61)), now=at(61))
    job.step(now=at(5000))
    job.edit(m).step(now=at(5000))  # resumed: attempt 2
    c2 = container(m, 2, started=at(5000))
    assert (job.step(c2, now=at(5039)).actions, stops(job.step(c2, now=at(5040)))) == (
        [],
        [Stop(c2.name, 30, "DeadlineExceeded")],
    )


# ---- progressDeadlineSeconds ----------------------------------------------------------------------------------
PROGRESS = manifest(progressDeadlineSeconds=60)


def test_progress_stall_stops_the_attempt_with_intent():
    job, c = running_job(PROGRESS)
    d = job.step(c, now=at(61))
    assert (d.actions, d.status.stopping.reason, d.status.phase) == (
        [Stop(c.name, 30, "ProgressStalled")],
        "ProgressStalled",
        "Running",
    )
    assert "ProgressStalled" in reasons(d)


def test_recent_progress_requeues_until_the_progress_deadline():
    job, c = running_job(PROGRESS)
    d = job.step(c, now=at(61), progress_at=at(50))
    assert (d.actions, d.requeue_after) == ([], 49)


def test_pending_stop_intent_is_sent_again_without_new_events():
    job, c = running_job(PROGRESS)
    job.step(c, now=at(61))
    d = job.step(c, now=at(62))
    assert (d.actions, d.events) == ([Stop(c.name, 30, "ProgressStalled")], [])


@pytest.mark.parametrize(
    "spec, phase, reason",
    [
        ({}, "Failed", "ProgressStalled"),
        ({"restartPolicy": "OnFailure"}, "Pending", "BackingOff"),
    ],
    ids=["never", "on-failure"],
)
def test_progress_stalled_exit_is_a_counted_failure(spec, phase, reason):
    m = manifest(progressDeadlineSeconds=60, **spec)
    job, c = running_job(m)
    job.step(c, now=at(61))
    st = job.step(exited(m, 1, 143, finished=at(62)), now=at(62)).status
    assert (st.phase, st.reason, st.failures, st.history[-1].counted) == (phase, reason, 1, True)


# ---- suspend and resume ---------------------------------------------------------------------------------------
SUSPENDED = manifest(suspend=True)


def test_suspended_before_start_never_creates():
    d = Job(SUSPENDED).step()
    assert (d.actions, d.status.phase, d.status.reason, d.status.attempts) == ([], "Stopped", "Suspended", 0)
    assert reasons(d) == ["Accepted", "Suspended"]


def test_suspend_while_running_stops_with_intent():
    job, c = running_job(M)
    d = job.edit(SUSPENDED).step(c, now=at(10))
    assert (d.actions, d.status.stopping.reason, d.status.phase) == (
        [Stop(c.name, 30, "Suspended")],
        "Suspended",
        "Running",
    )
    assert "Stopping" in reasons(d)


def test_a_suspend_in_its_grace_period_says_stopping_then_stopped_with_fresh_conditions():
    job, c = running_job(M)
    st = job.edit(SUSPENDED).step(c, now=at(10)).status
    terminating = st.condition("Terminating")
    assert (st.phase, st.reason, st.seed_status) == ("Running", "Stopping", "stop_requested")
    assert (terminating.status, terminating.reason) == ("True", "Suspended")
    st = job.step(exited(M, 1, 143, finished=at(11)), now=at(11)).status
    conds = {c.type: c.status for c in st.conditions}
    assert (st.phase, st.stopping, st.seed_status) == ("Stopped", None, "stopped")
    assert (conds["Terminating"], conds["Running"], conds["Suspended"]) == ("False", "False", "True")


def test_suspended_attempt_exit_is_recorded_as_stopped_not_failed():
    job, c = running_job(M)
    job.edit(SUSPENDED).step(c, now=at(10))
    d = job.step(exited(M, 1, 143, finished=at(11)), now=at(11))
    st, h = d.status, d.status.history[-1]
    assert (st.phase, st.reason, st.failures, h.outcome, h.counted) == ("Stopped", "Suspended", 0, "Stopped", False)
    assert d.actions == [Remove(c.name)]


def test_resume_runs_a_new_attempt():
    job, c = running_job(M)
    job.edit(SUSPENDED).step(c, now=at(10))
    job.step(exited(M, 1, 143, finished=at(11)), now=at(11))
    d = job.edit(M).step(now=at(100))
    assert (d.actions, d.status.reason) == ([Create(name_of(M, 2), 2)], "Starting")
    assert "Resumed" in reasons(d)


def test_resume_of_a_job_suspended_before_start_creates_attempt_1():
    job = Job(SUSPENDED)
    job.step()
    assert job.edit(M).step(now=at(100)).actions == [Create(name_of(M, 1), 1)]


def test_stop_uses_the_grace_period_the_container_was_created_with():
    m = manifest(terminationGracePeriodSeconds=5)
    job, c = running_job(m)
    assert job.edit(manifest(terminationGracePeriodSeconds=5, suspend=True)).step(c, now=at(10)).actions == [
        Stop(c.name, 5, "Suspended")
    ]


# ---- spec edits and reruns ------------------------------------------------------------------------------------
V1, V2 = manifest(args=["v1"]), manifest(args=["v2"])


def superseded_job():
    job, c1 = running_job(V1)
    d = job.edit(V2).step(c1, now=at(10))
    return job, c1, d


def test_generation_change_stops_the_old_attempt_as_superseded():
    _, c1, d = superseded_job()
    assert (d.actions, d.status.observedGeneration) == ([Stop(c1.name, 30, "Superseded")], V2.generation)
    assert "GenerationChanged" in reasons(d)


def test_generation_change_creates_nothing_while_the_old_attempt_runs():
    job, c1, _ = superseded_job()
    assert creates(job.step(c1, now=at(11))) == []


def test_generation_change_waits_for_the_old_log_to_drain():
    job, c1, _ = superseded_job()
    old = exited(V1, 1, 143, finished=at(11))
    assert job.step(old, now=at(12), undrained=(old.name,)).actions == []


def test_generation_change_creates_attempt_1_of_the_new_run_once_the_old_one_is_gone():
    job, c1, _ = superseded_job()
    d = job.step(exited(V1, 1, 143, finished=at(11)), now=at(12))
    assert (creates(d), removes(d)) == ([Create(name_of(V2, 1), 1)], [Remove(c1.name)])
    assert (d.status.history[-1].outcome, d.status.history[-1].reason) == ("Stopped", "Superseded")


def test_generation_change_on_a_finished_job_runs_it_again():
    d = finished_job(V1).edit(V2).step(now=at(100))
    assert (d.actions, d.status.phase) == ([Create(name_of(V2, 1), 1)], "Pending")


def test_run_id_change_on_a_finished_job_reruns_it():
    rerun = manifest(runId="r2")
    d = finished_job(M).edit(rerun).step(now=at(100))
    assert (d.actions, len(d.status.history), d.status.runId) == ([Create(name_of(rerun, 1), 1)], 1, "r2")
    assert "Rerun" in reasons(d)


def test_rerun_attempts_have_their_own_container_names():
    assert name_of(manifest(runId="r2"), 1) != name_of(M, 1)


@pytest.mark.parametrize(
    "edit",
    [
        {"labels": {"team": "grid"}},
        {"priority": 5},
        {"ttlSecondsAfterFinished": 60},
        {"suspend": True},
    ],
    ids=["labels", "priority", "ttl", "suspend"],
)
def test_control_field_edit_leaves_a_finished_job_finished(edit):
    labels = edit.pop("labels", None)
    d = finished_job(M).edit(manifest(labels=labels, **edit)).step(now=at(100))
    assert (d.actions, d.status.phase) == ([], "Succeeded")


def test_label_edit_is_copied_to_the_status():
    assert finished_job(M).edit(manifest(labels={"team": "grid"})).step(now=at(100)).status.labels == {"team": "grid"}


def test_finished_job_tidies_a_leftover_container_of_an_earlier_run():
    old = exited(V1, 1, 143)
    d = finished_job(V2).step(old, now=at(100))
    assert ((d.status.history[-1].reason, d.status.phase), d.actions) == (
        ("Superseded", "Succeeded"),
        [Remove(old.name)],
    )


def test_stale_container_of_an_earlier_run_blocks_recreating_the_current_attempt():
    job, c1, _ = superseded_job()
    job.step(exited(V1, 1, 143, finished=at(11)), now=at(12))  # attempt 1 of V2 is now intended
    assert creates(job.step(c1, now=at(13))) == []  # a lagging view shows the old one running again


def test_container_in_transition_is_waited_for():
    job, _ = running_job(M)
    assert job.step(container(M, 1, "removing"), now=at(10)).actions == []


def test_identical_rewritten_spec_changes_nothing():
    job, c = running_job(M)
    before = job.status.model_copy(deep=True)
    d = job.edit(manifest()).step(c, now=at(10))  # the file saved again: an equal, freshly parsed manifest
    assert (d.actions, d.events, d.status) == ([], [], before)


# ---- the fixed point: deciding on its own output changes nothing ------------------------------------------------
def _running():
    job, c = running_job(M)
    return job, (c,), at(10)


def _backing_off():
    job = Job(manifest(**ON_FAILURE))
    fail_repeatedly(job, 1)
    return job, (), at(35)


def _invalid_while_running():
    job, c = running_job(M)
    job.edit(None, error=ERROR)
    return job, (c,), at(10)


def _deleted_after_stop():
    job, c = running_job(M)
    job.edit(None).step(c, now=at(10))
    return job, (), at(20)


SETTLED = {
    "running": _running,
    "succeeded": lambda: (finished_job(M), (), at(100)),
    "failed": lambda: (finished_job(M, 2), (), at(100)),
    "suspended": lambda: (Job(SUSPENDED), (), T0),
    "backing-off": _backing_off,
    "invalid": lambda: (Job(None, error=ERROR), (), T0),
    "invalid-while-running": _invalid_while_running,
    "config-missing": lambda: (Job(M, config_missing="configFile c.yaml does not exist"), (), T0),
    "spec-deleted": _deleted_after_stop,
}


@pytest.mark.parametrize("build", SETTLED.values(), ids=SETTLED.keys())
def test_deciding_again_on_its_own_output_is_a_fixed_point(build):
    job, containers, now = build()
    first = job.step(*containers, now=now).status.model_copy(deep=True)
    d = job.step(*containers, now=now)
    assert (d.events, d.actions, d.status) == ([], [], first)


# ---- spec deleted ---------------------------------------------------------------------------------------------
def test_spec_deleted_stops_the_running_container_and_is_stopped_only_once_it_is_gone():
    job, c = running_job(M)
    d = job.edit(None).step(c, now=at(10))
    assert (d.actions, d.status.phase, d.status.reason) == ([Stop(c.name, 30, "SpecDeleted")], "Running", "Stopping")
    terminating = d.status.condition("Terminating")
    assert (terminating.status, terminating.reason) == ("True", "SpecDeleted")
    assert (d.status.seed_status, reasons(d)) == ("stop_requested", ["Stopping"])
    d = job.step(c, now=at(15))  # still inside its grace period
    assert (d.status.phase, d.status.reason, d.actions) == ("Running", "Stopping", [Stop(c.name, 30, "SpecDeleted")])
    d = job.step(exited(M, 1, 137, finished=at(40)), now=at(40))
    st = d.status
    assert (st.phase, st.reason, st.stopping, st.seed_status) == ("Stopped", "SpecDeleted", None, "stopped")
    assert (st.condition("Terminating").status, st.condition("Running").status) == ("False", "False")
    assert "SpecDeleted" in reasons(d)


def test_spec_deleted_is_stopped_once_the_exit_is_recorded_not_before():
    job, c = running_job(M)
    job.edit(None).step(c, now=at(10))
    gone = exited(M, 1, 143, finished=at(11))
    d = job.step(gone, now=at(11), undrained=(gone.name,))  # its last log lines are still being read
    assert (d.status.phase, d.status.reason, d.status.stopping is not None) == ("Running", "Stopping", True)
    st = job.step(gone, now=at(12)).status
    assert (st.phase, st.stopping, st.history[-1].outcome) == ("Stopped", None, "Stopped")


def test_spec_deleted_stop_falls_back_to_the_default_grace():
    job, c = running_job(M)
    c = dataclasses.replace(c, stop_grace=None)
    assert job.edit(None).step(c, now=at(10)).actions == [Stop(c.name, DEFAULT_GRACE, "SpecDeleted")]


def test_spec_deleted_exit_is_recorded_and_the_container_removed():
    job, c = running_job(M)
    job.edit(None).step(c, now=at(10))
    d = job.step(exited(M, 1, 143, finished=at(11)), now=at(12))
    assert ((d.status.history[-1].outcome, d.status.history[-1].reason), d.actions) == (
        ("Stopped", "SpecDeleted"),
        [Remove(c.name)],
    )


def test_spec_deleted_before_the_job_started_stops_it_without_finish_time():
    job = Job(M)
    job.step()
    st = job.edit(None).step(now=at(1)).status
    assert (st.phase, st.reason, st.finishedAt) == ("Stopped", "SpecDeleted", None)


def test_spec_deleted_removes_a_kept_container_without_a_new_record():
    job = finished_job(M)
    d = job.edit(None).step(exited(M, 1, 0), now=at(100))
    assert (len(d.status.history), d.actions) == (1, [Remove(name_of(M, 1))])


def test_spec_deleted_for_an_unknown_job_does_nothing():
    d = Job(None).step()
    assert (d.status, d.actions, d.events) == (None, [], [])


def test_spec_deleted_orphan_container_gets_a_record_and_a_stop():
    c = container(M, 1)
    d = Job(None).step(c)
    assert ((d.status.phase, d.status.reason), d.actions) == (
        ("Stopped", "SpecDeleted"),
        [Stop(c.name, 30, "SpecDeleted")],
    )


def test_a_job_deleted_by_a_user_is_stopped_then_collected_into_the_archive():
    job, c = running_job(M)
    d = job.edit(None, deleted=True).step(c, now=at(10))
    assert d.actions == [Stop(c.name, 30, "SpecDeleted")]  # nothing is collected while the container runs
    d = job.step(exited(M, 1, 143, finished=at(11)), now=at(12))
    assert d.actions == [Remove(c.name)]
    d = job.step(now=at(13))
    assert d.actions == [Collect("Stopped", archive=True)]


def test_spec_restored_after_a_delete_runs_a_new_attempt():
    job, c = running_job(M)
    job.edit(None).step(c, now=at(10))
    job.step(exited(M, 1, 143, finished=at(11)), now=at(12))
    d = job.edit(M).step(now=at(20))
    assert (d.actions, d.status.failures) == ([Create(name_of(M, 2), 2)], 0)


def test_spec_deleted_finished_job_keeps_its_outcome():
    st = finished_job(M).edit(None).step(now=at(100)).status
    assert (st.phase, st.reason) == ("Succeeded", "Completed")


# ---- invalid specs --------------------------------------------------------------------------------------------
def test_invalid_spec_without_a_container_fails_invalid_spec():
    d = Job(None, error=ERROR).step()
    st = d.status
    assert (st.phase, st.reason, st.message, st.condition("SpecValid").status) == (
        "Failed",
        "InvalidSpec",
        ERROR,
        "False",
    )
    assert [(e.reason, e.type) for e in d.events] == [("InvalidSpec", "Warning")]


def test_invalid_spec_leaves_a_running_container_alone():
    job, c = running_job(M)
    d = job.edit(None, error=ERROR).step(c, now=at(10))
    assert (d.actions, d.status.phase, d.status.condition("SpecValid").status) == ([], "Running", "False")


def test_an_exit_while_the_spec_is_invalid_waits_for_the_valid_spec():
    job, c = running_job(M)
    job.edit(None, error=ERROR).step(c, now=at(10))
    d = job.step(exited(M, 1, 0), now=at(31))
    assert (d.status.history, d.actions, d.status.reason) == ([], [], "InvalidSpec")
    d = job.edit(M).step(exited(M, 1, 0), now=at(40))
    assert (d.status.phase, d.status.history[-1].outcome, d.actions, creates(d)) == (
        "Succeeded",
        "Succeeded",
        [Remove(c.name)],
        [],
    )


def test_a_failure_while_the_spec_is_invalid_is_judged_by_the_restored_policy():
    m = manifest(restartPolicy="OnFailure", backoffLimit=2)
    job, c = running_job(m)
    job.edit(None, error=ERROR).step(c, now=at(10))
    job.step(exited(m, 1, 1), now=at(31))
    d = job.edit(m).step(exited(m, 1, 1), now=at(40))
    assert (d.status.phase, d.status.reason, d.status.failures) == ("Pending", "BackingOff", 1)


def test_invalid_spec_removes_a_kept_container_without_a_new_record():
    job = finished_job(M)
    d = job.edit(None, error=ERROR).step(exited(M, 1, 0), now=at(100))
    assert (len(d.status.history), d.actions) == (1, [Remove(name_of(M, 1))])


def test_invalid_spec_with_a_new_error_is_reported_again():
    job = Job(None, error=ERROR)
    job.step()
    d = job.edit(None, error="job.yaml: spec.image: field required").step(now=at(1))
    assert (reasons(d), d.status.message) == (["InvalidSpec"], "job.yaml: spec.image: field required")


def test_fixed_spec_runs_the_job():
    job = Job(None, error=ERROR)
    job.step()
    d = job.edit(M).step(now=at(10))
    assert (d.actions, d.status.phase, d.status.condition("SpecValid").status) == (
        [Create(name_of(M, 1), 1)],
        "Pending",
        "True",
    )


def test_spec_fixed_while_running_keeps_the_attempt():
    job, c = running_job(M)
    job.edit(None, error=ERROR).step(c, now=at(10))
    d = job.edit(M).step(c, now=at(20))
    assert (d.actions, d.status.phase, d.status.condition("SpecValid").status) == ([], "Running", "True")


# ---- configFile -----------------------------------------------------------------------------------------------
MISSING = "configFile configs/ppo.yaml does not exist in the data folder"


def test_missing_config_file_waits_pending_without_create():
    d = Job(M, config_missing=MISSING).step()
    st = d.status
    assert (d.actions, st.phase, st.reason, st.message, st.attempts) == ([], "Pending", "ConfigFileMissing", MISSING, 0)
    assert "ConfigFileMissing" in reasons(d)


def test_config_file_appearing_creates_attempt_1():
    job = Job(M, config_missing=MISSING)
    job.step()
    assert job.edit(M).step(now=at(5)).actions == [Create(name_of(M, 1), 1)]


def test_config_file_vanishing_before_the_create_holds_the_attempt():
    job = Job(M)
    job.step()
    d = job.edit(M, config_missing=MISSING).step(now=at(1))
    assert (d.actions, d.status.reason, d.status.attempts) == ([], "ConfigFileMissing", 1)


# ---- the engine refused the attempt ---------------------------------------------------------------------------
def test_fail_attempt_start_fails_the_job_with_reason_and_message():
    job = Job(M)
    job.step()
    d = fail_attempt_start(job.status, "ImageNotFound", "image busybox:latest could not be pulled", at(1))
    st = d.status
    assert (st.phase, st.reason, st.message, st.finishedAt, d.actions) == (
        "Failed",
        "ImageNotFound",
        "image busybox:latest could not be pulled",
        at(1),
        [],
    )
    assert [(e.reason, e.type) for e in d.events] == [("Failed", "Warning")]


def test_failed_start_is_not_retried():
    job = Job(M)
    job.step()
    job.status = fail_attempt_start(job.status, "ImageNotFound", "no such image", at(1)).status
    assert job.step(now=at(60)).actions == []


# ---- names ----------------------------------------------------------------------------------------------------
def test_container_name_is_deterministic():
    assert (
        container_name(INSTANCE, "job", run_key("abc123def4567890", None), 3)
        == container_name(INSTANCE, "job", run_key("abc123def4567890", None), 3)
        == "opeva-a1b2c3-job-abc123de-3"
    )


def test_run_key_without_run_id_is_the_generation_prefix():
    assert run_key("abc123def4567890", None) == "abc123def456"


def test_run_key_is_deterministic_per_run_id():
    assert run_key("g", "r1") == run_key("g", "r1") != run_key("g", "r2")


@pytest.mark.parametrize(
    "other",
    [
        ("zzzzzz", "job", "abc123def456", 1),
        ("a1b2c3", "job2", "abc123def456", 1),
        ("a1b2c3", "job", "ffff23def456", 1),
        ("a1b2c3", "job", "abc123def456", 2),
    ],
    ids=["instance", "job", "run", "attempt"],
)
def test_container_name_differs_when_any_part_differs(other):
    assert container_name(*other) != container_name("a1b2c3", "job", "abc123def456", 1)


@pytest.mark.parametrize(
    "kw, exists", [({}, False), ({"error": ERROR}, True), ({"manifest": M}, True)], ids=["deleted", "invalid", "valid"]
)
def test_desired_exists_when_a_file_names_the_job(kw, exists):
    assert desired_for(None, **kw).exists is exists


def test_decide_does_not_mutate_the_recorded_status():
    job, c = running_job(M)
    before = job.status.model_copy(deep=True)
    decide(desired_for(M), observed(exited(M, 1, 1)), job.status, facts(at(30)))
    assert job.status == before


# ---- regressions: bugs found by these tests and fixed ----------------------------------------------------------
def test_finished_job_broken_then_restored_is_not_run_again():
    job = finished_job(M)
    job.edit(None, error=ERROR).step(now=at(100))
    d = job.edit(M).step(now=at(200))
    assert (creates(d), d.status.phase) == ([], "Succeeded")


def run_to_success(job: Job, m, start: float) -> list:
    """Steps a new run from `start`: creates, runs and exits 0 attempt 1; returns the creates along the way."""
    made = creates(job.edit(m).step(now=at(start)))
    job.step(container(m, 1, started=at(start + 1)), now=at(start + 1))
    return made + creates(job.step(exited(m, 1, 0, started=at(start + 1)), now=at(start + 40)))


@pytest.mark.parametrize("first, second", [(V1, V2), (M, manifest(runId="r1"))], ids=["generation", "runId"])
def test_reverted_spec_runs_once_and_records_its_exit(first, second):
    job = finished_job(first)
    run_to_success(job, second, 100)
    made = run_to_success(job, first, 200)
    assert (len(made), job.status.phase, job.status.attempts) == (1, "Succeeded", 1)


def test_empty_run_id_is_the_same_run_as_no_run_id():
    d = finished_job(M).edit(manifest(runId="")).step(now=at(100))
    assert (d.actions, d.status.phase) == ([], "Succeeded")


@pytest.mark.parametrize(
    "first, then",
    [(V1, V2), (M, SUSPENDED), (M, None), (DEADLINE, DEADLINE)],
    ids=["superseded", "suspended", "spec-deleted", "deadline"],
)
def test_never_started_container_that_must_go_is_removed(first, then):
    job = Job(first)
    job.step()
    c = container(first, 1, "created")
    job.edit(then)
    actions = job.step(c, now=at(100)).actions + job.step(c, now=at(101)).actions
    assert Remove(c.name) in actions


def test_spec_restored_before_the_stopped_exit_is_recorded_does_not_count_a_failure():
    job, c = running_job(M)
    job.edit(None).step(c, now=at(10))
    st = job.edit(M).step(exited(M, 1, 143, finished=at(11)), now=at(12)).status
    assert (st.failures, st.phase, st.history[-1].outcome) == (0, "Pending", "Stopped")


def test_vanished_attempt_history_keeps_its_run_id():
    m = manifest(runId="r1")
    job, _ = running_job(m)
    assert job.step(now=at(60)).status.history[-1].runId == "r1"


def test_older_exited_attempt_is_recorded_and_removed_after_adopting_a_newer_one():
    old = exited(M, 1, 1)
    job = Job(M)  # the status was lost; attempt 1 failed and attempt 2 runs
    actions = job.step(old, container(M, 2, started=at(40)), now=at(50)).actions
    actions += job.step(old, container(M, 2, started=at(40)), now=at(51)).actions
    assert (job.status.recorded(old.name), Remove(old.name) in actions) == (True, True)


# ---- a signal death waits before it is blamed on the job ------------------------------------------------------
def test_a_signal_death_is_not_recorded_at_once():
    job, _ = running_job(M)
    d = job.step(exited(M, 1, 137, finished=at(30)), now=at(31))
    assert (d.status.phase, d.status.history, d.actions) == ("Running", [], [])
    assert 18.5 <= d.requeue_after <= 19.0


def test_a_signal_death_is_the_jobs_failure_once_the_engine_stayed_up():
    job, _ = running_job(M)
    job.step(exited(M, 1, 137, finished=at(30)), now=at(31))
    d = job.step(exited(M, 1, 137, finished=at(30)), now=at(51))
    assert (d.status.phase, d.status.reason, d.status.exitCode) == ("Failed", "Error", 137)


def test_a_signal_death_during_a_daemon_shutdown_is_an_interruption():
    """The daemon kills containers while its event stream still runs; the outage begins just after."""
    job, _ = running_job(M)
    job.step(exited(M, 1, 143, finished=at(30)), now=at(30.5))
    d = job.step(exited(M, 1, 143, finished=at(30)), now=at(33), outages=((at(31), at(33)),))
    assert d.status.history[-1].outcome == "Interrupted" and d.status.failures == 0
    assert creates(d) and creates(d)[0].attempt == 2


def test_a_plain_non_zero_exit_is_recorded_at_once():
    job, _ = running_job(M)
    d = job.step(exited(M, 1, 1, finished=at(30)), now=at(30))
    assert (d.status.phase, d.status.reason) == ("Failed", "Error")


# ---- conditions describe the current state ----------------------------------------------------------------------
def test_conditions_after_retry_then_a_success_never_seen_running():
    m = manifest(restartPolicy="OnFailure", backoffLimit=3)
    job, _ = running_job(m)
    job.step(exited(m, 1, 1), now=at(30))
    assert job.status.condition("BackingOff").status == "True"
    job.step(now=at(100))  # backoff over: attempt 2 created
    # attempt 2 exits 0 before any reconcile sees it running
    st = job.step(exited(m, 2, 0, started=at(100), finished=at(100)), now=at(101)).status
    true = sorted(c.type for c in st.conditions if c.status == "True")
    assert (st.phase, true) == ("Succeeded", ["Accepted", "Succeeded"])
