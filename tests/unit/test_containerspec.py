"""Spec -> container request and job_info fields, as tables: pure, no engine and no files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller.containerspec import Placement, container_request, created_info, phase_info, phase_info_changed
from controller.decide import Create
from controller.jobsecurity import DEFAULT_CAPS
from controller.runtime.base import ContainerInfo, CreateRejected, Mount
from controller.status import JobStatus

from .factories import IMAGE, T0, at, manifest

WHERE = Placement(instance="a1b2c3", host_data=Path("/srv/opeva"), default_network="none")
CREATE = Create(container="opeva-a1b2c3-train-0123abcd-2", attempt=2)


def request(extra_env=None, create=CREATE, where=WHERE, **spec):
    return container_request(manifest("train", labels={"team": "ml"}, **spec), create, where, extra_env)


@pytest.mark.parametrize(
    ("spec", "extra_env", "expected"),
    [
        ({}, None, {"OPEVA_JOB_ID": "train", "OPEVA_JOB_DIR": "/data/jobs/train", "OPEVA_ATTEMPT": "2"}),
        ({"env": {"LR": "0.1"}}, None, {"LR": "0.1", "OPEVA_ATTEMPT": "2"}),
        ({"env": {"OPEVA_JOB_ID": "mine"}}, None, {"OPEVA_JOB_ID": "train"}),  # the controller's names win
        ({"env": {"A": "spec"}}, {"A": "hook", "MLFLOW_RUN_ID": "r1"}, {"A": "hook", "MLFLOW_RUN_ID": "r1"}),
        ({"configFile": "configs/a.yaml"}, None, {"OPEVA_CONFIG": "/data/configs/a.yaml"}),
    ],
)
def test_environment(spec, extra_env, expected):
    env = request(extra_env, **spec).env
    assert {k: env.get(k) for k in expected} == expected
    if "configFile" not in spec:
        assert "OPEVA_CONFIG" not in env


@pytest.mark.parametrize(
    ("spec", "present", "absent"),
    [
        ({}, {"team": "ml", "opeva.managed": "true", "opeva.instance": "a1b2c3", "opeva.job": "train"}, {}),
        ({}, {"opeva.attempt": "2"}, {"opeva.runId", "opeva.logCapture", "opeva.queue"}),
        ({"runId": "r7"}, {"opeva.runId": "r7"}, {}),
        ({"logCapture": False}, {"opeva.logCapture": "false"}, {}),
        ({"queue": "gpu"}, {"opeva.queue": "gpu"}, {}),
    ],
)
def test_labels(spec, present, absent):
    labels = request(**spec).labels
    assert {k: labels.get(k) for k in present} == present
    assert not set(absent) & set(labels)
    m = manifest("train", labels={"team": "ml"}, **spec)
    assert labels["opeva.generation"] == m.generation and len(labels["opeva.run"]) == 12


def test_mounts_give_the_data_folder_read_only_and_the_job_folder_writable():
    assert request().mounts == (
        Mount("/srv/opeva", "/data", True),
        Mount("/srv/opeva/.opeva/empty", "/data/.opeva", True),
        Mount("/srv/opeva/jobs/train", "/data/jobs/train", False),
        Mount("/srv/opeva/jobs/train/progress", "/data/jobs/train/progress", False),
        Mount("/srv/opeva/jobs/train/results", "/data/jobs/train/results", False),
        Mount("/srv/opeva/jobs/train/logs", "/data/jobs/train/logs", False),
        Mount("/srv/opeva/jobs/train/outputs", "/data/jobs/train/outputs", False),
        Mount("/srv/opeva/jobs/train/events.jsonl", "/data/jobs/train/events.jsonl", True),
    )


def test_a_writable_shared_folder_keeps_the_controllers_state_and_other_jobs_read_only():
    where = Placement("a1b2c3", Path("/srv/opeva"), guarded=(".opeva", "jobs", "archive", "specs", "job_track.json"))
    mounts = request(where=where, sharedData="ReadWrite").mounts
    assert mounts[0] == Mount("/srv/opeva", "/data", False)
    for guarded in ("jobs", "archive", "specs", "job_track.json"):
        assert Mount(f"/srv/opeva/{guarded}", f"/data/{guarded}", True) in mounts
    assert Mount("/srv/opeva/.opeva/empty", "/data/.opeva", True) in mounts  # hidden, not merely read-only
    assert len({m.target for m in mounts}) == len(mounts)  # one mount per place
    assert Mount("/srv/opeva/jobs/train", "/data/jobs/train", False) in mounts
    assert Mount("/srv/opeva/jobs/train/events.jsonl", "/data/jobs/train/events.jsonl", True) in mounts


LAB = Placement("a1b2c3", Path("/srv/opeva"), hidden=(".opeva", "secrets"), specs="specs")


@pytest.mark.parametrize(
    ("spec", "hidden", "visible"),
    [
        ({}, {".opeva", "secrets", "specs"}, set()),
        ({"sharedData": "ReadWrite"}, {".opeva", "secrets", "specs"}, set()),
        ({"mountSpecs": True}, {".opeva", "secrets"}, {"specs"}),
    ],
)
def test_the_state_the_secrets_and_the_specs_are_hidden_unless_a_spec_shows_its_specs(spec, hidden, visible):
    mounts = request(where=LAB, **spec).mounts
    covered = {m.target.removeprefix("/data/") for m in mounts if m.source == "/srv/opeva/.opeva/empty"}
    assert covered == hidden and all(m.read_only for m in mounts if m.source == "/srv/opeva/.opeva/empty")
    assert not visible & covered
    assert len({m.target for m in mounts}) == len(mounts)


def test_specs_that_are_no_folder_of_the_data_folder_cannot_be_shown():
    with pytest.raises(CreateRejected, match="spec.mountSpecs"):
        request(mountSpecs=True)  # WHERE knows no specs folder inside the data folder (a git checkout, --specs)


def test_secret_values_go_into_the_environment_only():
    m = manifest("train", secretEnv={"TOKEN": "api-token"}, env={"A": "1"})
    req = container_request(m, CREATE, WHERE, {"MLFLOW_RUN_ID": "r1"}, secret_env={"TOKEN": "s3cr3t-value"})
    assert req.env["TOKEN"] == "s3cr3t-value" and req.env["A"] == "1" and req.env["MLFLOW_RUN_ID"] == "r1"
    assert "s3cr3t-value" not in repr(dataclasses.replace(req, env={}))  # not in labels, mounts or arguments


def test_job_name_and_pull_policy():
    req = request(image="calof/opeva_simulator:latest")
    assert req.env["OPEVA_JOB_NAME"] == "train" and req.pull_policy == "Always"
    assert request(image="calof/opeva_simulator:v2").pull_policy == "IfNotPresent"
    assert request(image="busybox").pull_policy == "Always"
    assert request(image="busybox", imagePullPolicy="Never").pull_policy == "Never"


@pytest.mark.parametrize(
    ("spec", "where", "expected"),
    [
        ({}, WHERE, {"network": "none", "cpus": None, "memory": None, "stop_grace": 30}),
        ({"network": "host"}, dataclasses.replace(WHERE, allow_host_network=True), {"network": "host"}),
        ({"network": "lab"}, dataclasses.replace(WHERE, networks_allowed=("lab",)), {"network": "lab"}),
        ({}, Placement("a1b2c3", Path("/d")), {"network": None}),
        ({"resources": {"cpus": 1.5, "memory": "512Mi"}}, WHERE, {"cpus": 1.5, "memory": 512 * 2**20}),
        ({"terminationGracePeriodSeconds": 5}, WHERE, {"stop_grace": 5}),
        ({}, WHERE, {"init": True}),
        ({"init": False}, WHERE, {"init": False}),
        ({"command": ["python"], "args": ["t.py"], "workingDir": "/w"}, WHERE, {"entrypoint": ["python"]}),
        ({"command": ["python"], "args": ["t.py"], "workingDir": "/w"}, WHERE, {"command": ["t.py"]}),
        ({"workingDir": "/w"}, WHERE, {"working_dir": "/w", "image": IMAGE}),
    ],
)
def test_resources_network_and_command(spec, where, expected):
    req = request(where=where, **spec)
    assert {k: getattr(req, k) for k in expected} == expected


@pytest.mark.parametrize("network", ["host", "container:other-job", "some-net"])
def test_a_network_not_allowed_is_refused_before_anything_is_created(network):
    with pytest.raises(CreateRejected, match="spec.network"):
        request(network=network)


def test_jobs_keep_only_the_small_capability_set_and_run_as_the_job_user():
    req = request(where=dataclasses.replace(WHERE, job_user="1000:1000"))
    assert req.cap_add == DEFAULT_CAPS and req.user == "1000:1000"
    assert not {"MKNOD", "SETUID", "SETGID", "FSETID", "CHOWN", "FOWNER"} & set(req.cap_add)
    req = request(capabilities={"add": ["SETUID", "CAP_SETGID"], "reason": "gosu drops to the app user"}, user="0")
    assert {"SETUID", "SETGID"} <= set(req.cap_add) and req.user == "0"


def test_the_name_and_gpus_come_from_the_action():
    req = request(create=Create(container="c-9", attempt=9, gpu_ids=("1",)))
    assert (req.name, req.gpu_ids, req.env["OPEVA_ATTEMPT"]) == ("c-9", ("1",), "9")


def test_created_info():
    m = manifest("train", labels={"team": "ml"}, args=["x"], runId="r7")
    info = ContainerInfo(
        id="abc", name="c-1", job="train", generation=m.generation, run="k", attempt=1, state="running", created_at=T0
    )
    st = JobStatus(name="train", specFile="train.yaml")
    assert created_info(m, st, 1, info) == {
        "job_id": "train",
        "image": IMAGE,
        "command": None,
        "args": ["x"],
        "labels": {"team": "ml"},
        "generation": m.generation,
        "run_id": "r7",
        "attempt": 1,
        "container_name": "c-1",
        "container_id": "abc",
        "created_at": "2024-05-01T12:00:00Z",
        "spec_file": "train.yaml",
        "log_file": "logs/train.log",
    }
    no_capture = manifest("train", logCapture=False)
    assert created_info(no_capture, st, 1, info)["log_file"] == "logs/train.stdout.log"
    source = {
        "repoURL": "https://git/lab.git",
        "ref": "main",
        "commit": "c" * 40,
        "path": "specs/t.yaml",
        "digest": "d",
    }
    assert created_info(m, st.model_copy(update={"source": source}), 1, info)["source"] == source


def test_the_run_provenance_is_a_label_the_attempt_record_reads_back():
    source = {
        "repoURL": "https://git/lab.git",
        "ref": "main",
        "commit": "c" * 40,
        "path": "specs/t.yaml",
        "digest": "d",
    }
    m = manifest("train")
    req = container_request(m, CREATE, WHERE, None, source)
    info = ContainerInfo(
        id="abc", name="c-1", job="train", generation="g", run="k", attempt=1, state="exited", labels=req.labels
    )
    assert info.source == source
    assert "opeva.source" not in container_request(m, CREATE, WHERE).labels


@pytest.mark.parametrize(
    ("phase", "seed_word"),
    [
        ("Pending", "queued"),
        ("Running", "running"),
        ("Succeeded", "finished"),
        ("Failed", "failed"),
        ("Stopped", "stopped"),
    ],
)
def test_phase_info(phase, seed_word):
    st = JobStatus(name="t", phase=phase, reason="R", exitCode=3, startedAt=T0, finishedAt=at(5), submittedAt=at(-5))
    assert phase_info(st) == {
        "status": seed_word,
        "phase": phase,
        "reason": "R",
        "exit_code": 3,
        "started_at": "2024-05-01T12:00:00Z",
        "finished_at": "2024-05-01T12:00:05Z",
        "submitted_at": "2024-05-01T11:59:55Z",
    }


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (None, {}, True),
        ({}, {}, False),
        ({}, {"reason": "Other"}, False),  # only the phase and the container make job_info stale
        ({}, {"phase": "Running"}, True),
        ({}, {"containerId": "x"}, True),
    ],
)
def test_phase_info_changed(old, new, changed):
    base = {"name": "t", "phase": "Pending"}
    before = None if old is None else JobStatus(**{**base, **old})
    assert phase_info_changed(before, JobStatus(**{**base, **new})) is changed
