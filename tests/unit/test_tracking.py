"""MLflow tracking without a server: the translation rules, the outbox on disk, the sender's order and retries."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.hooks import NoHooks
from controller.spec import parse_document
from controller.status import AttemptRecord, JobStatus
from controller.store import DataStore
from controller.tracking import build_hooks
from controller.tracking.config import TrackingConfig, TrackingConfigError
from controller.tracking.hooks import MlflowHooks
from controller.tracking.outbox import Entry, Outbox, new_entry_id
from controller.tracking.rest import Rejected, Unavailable
from controller.tracking.sender import MAX_SERVER_ERRORS, Sender, _merge
from controller.tracking.values import (
    experiment_name,
    progress_values,
    result_values,
    run_name,
    run_status,
    safe_key,
    spec_params,
)

CONFIG = TrackingConfig.from_env("http://127.0.0.1:5000", env={})


def manifest(**spec):
    labels = spec.pop("labels", {})
    return parse_document(
        {
            "apiVersion": "opeva/v1",
            "kind": "Job",
            "metadata": {"name": "job", "labels": labels},
            "spec": {"image": "busybox", **spec},
        }
    )


# ---- translation rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "outcome,reason,status",
    [
        ("Succeeded", "Completed", "FINISHED"),
        ("Failed", "Error", "FAILED"),
        ("Failed", "OOMKilled", "FAILED"),
        ("Failed", "ProgressStalled", "FAILED"),
        ("Ignored", "Error", "FAILED"),
        ("Stopped", "DeadlineExceeded", "FAILED"),
        ("Stopped", "Suspended", "KILLED"),
        ("Stopped", "SpecDeleted", "KILLED"),
        ("Stopped", "Superseded", "KILLED"),
        ("Interrupted", "Interrupted", "KILLED"),
        ("Interrupted", "ContainerRemoved", "KILLED"),
    ],
)
def test_outcome_maps_to_run_status(outcome, reason, status):
    assert run_status(outcome, reason) == status


def test_progress_mirrors_percent_and_metrics_numbers_with_the_jobs_step():
    values, step = progress_values(
        {
            "percent": 45,
            "stage": "train",
            "step": 7,
            "eta": 12,
            "metrics": {"reward": 1.5, "ok": True, "loss": {"train": 0.1}, "tag": "x", "nan": float("nan")},
        }
    )
    assert values == {"percent": 45.0, "reward": 1.5, "loss/train": 0.1}
    assert step == 7


@pytest.mark.parametrize("doc", [None, [], "x", {"step": -1}, {"step": True}, {"step": 1.5}])
def test_progress_without_a_usable_step_or_numbers(doc):
    values, step = progress_values(doc)
    assert values == {} and step is None


def test_result_numbers_are_every_numeric_leaf():
    assert result_values({"score": 0.9, "kpis": {"cost": 12, "unit": "EUR"}, "runs": [1, 2], "done": False}) == {
        "score": 0.9,
        "kpis/cost": 12.0,
    }
    assert result_values([1, 2]) == {}


@pytest.mark.parametrize(
    "key,safe",
    [
        ("reward", "reward"),
        ("owner@lab", "owner_lab"),
        ("a//b", "a/b"),
        ("/abs/", "abs"),
        ("../up", "up"),
        ("app.kubernetes.io/name", "app.kubernetes.io/name"),
        ("", "_"),
        ("é", "_"),
    ],
)
def test_keys_are_made_acceptable_to_mlflow(key, safe):
    assert safe_key(key) == safe


def test_params_are_env_and_command_line_with_secret_values_masked():
    m = manifest(env={"SEED": "42", "WANDB_API_KEY": "k", "DB_PASSWORD": "p"}, args=["--x", "1"], command=["run"])
    assert spec_params(m) == {
        "env.DB_PASSWORD": "***",
        "env.SEED": "42",
        "env.WANDB_API_KEY": "***",
        "args": '["--x", "1"]',
        "command": '["run"]',
    }


def test_experiment_from_spec_then_label_then_default_and_run_name():
    assert experiment_name(manifest(mlflow={"experiment": "e1"}, labels={"experiment": "e2"}), "d") == "e1"
    assert experiment_name(manifest(labels={"experiment": "e2"}), "d") == "e2"
    assert experiment_name(manifest(), "d") == "d"
    assert run_name(manifest(), 3) == "job-a3"
    assert run_name(manifest(mlflow={"runName": "ppo"}), 3) == "ppo"


def test_config_wants_an_http_server_and_without_a_uri_mlflow_is_off(tmp_path, monkeypatch):
    with pytest.raises(TrackingConfigError, match="http"):
        TrackingConfig.from_env("sqlite:///mlflow.db", env={})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert isinstance(build_hooks(DataStore.open(tmp_path)), NoHooks)
    ui = TrackingConfig.from_env("http://h:5000/", env={"OPEVA_MLFLOW_UI": "https://ui/"})
    assert ui.run_url("3", "abc") == "https://ui/#/experiments/3/runs/abc"


# ---- the outbox on disk ---------------------------------------------------------------------------------------
def entry(job="job", attempt=1, container="c-1", prior=0) -> Entry:
    return Entry(
        id=new_entry_id(job, "k" * 12, attempt),
        job=job,
        attempt=attempt,
        generation="g",
        run_key="k" * 12,
        spec_run_id=None,
        container=container,
        experiment="e",
        run_name=f"{job}-a{attempt}",
        tags={"opeva.job": job},
        created_ms=1,
        prior_records=prior,
        log_offsets={},
    )


def test_outbox_survives_a_restart_in_order(tmp_path):
    box = Outbox(tmp_path)
    e = entry()
    box.add(e)
    for i in range(3):
        box.append(e, {"kind": "metrics", "metrics": [{"key": "m", "value": i}]})
    e.run_id = "r1"
    box.save(e)
    (box.root / "half-made").mkdir()  # a crash between mkdir and entry.json: nothing was asked of MLflow yet

    again = Outbox(tmp_path)
    assert again.load() == 1 and not (box.root / "half-made").exists()
    [loaded] = again.entries()
    assert loaded.run_id == "r1" and loaded.to_json() == e.to_json()
    again.append(loaded, {"kind": "metrics", "metrics": [{"key": "m", "value": 3}]})
    assert [op["metrics"][0]["value"] for _, op in again.pending(loaded)] == [0, 1, 2, 3]
    assert again.find_open("job", "k" * 12, 1, "c-1") is loaded


def test_metric_snapshots_are_merged_params_go_alone():
    ops = [
        (Path("1"), {"kind": "metrics", "metrics": [1] * 600}),
        (Path("2"), {"kind": "metrics", "metrics": [2] * 300}),
        (Path("3"), {"kind": "metrics", "metrics": [3] * 200}),
        (Path("4"), {"kind": "params", "params": [4]}),
    ]
    files, body = _merge(ops)
    assert files == [Path("1"), Path("2")] and len(body["metrics"]) == 900
    files, body = _merge(ops[3:] + ops[:1])
    assert files == [Path("4")] and body["params"] == [4] and body["metrics"] == []


# ---- the sender's order and retries ---------------------------------------------------------------------------
class FakeRest:
    def __init__(self):
        self.calls: list[tuple] = []
        self.fail: Exception | None = None
        self.running: dict | None = None

    def _call(self, *call):
        if self.fail is not None:
            raise self.fail
        self.calls.append(call)

    def experiment_id(self, name, deadline):
        self._call("experiment", name)
        return "7"

    def running_runs(self, exp, tags, deadline):
        self._call("find", tuple(sorted(tags.items())))
        return [self.running] if self.running else []

    def create_run(self, exp, name, start, tags, deadline):
        self._call("create", name)
        return {"run_id": "run-1", "artifact_uri": "mlflow-artifacts:/7/run-1/artifacts"}

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self._call("log", len(metrics), len(params), len(tags))

    def update_run(self, run_id, status, end_ms):
        self._call("status", status)

    def upload(self, uri, path, name, source, start, end):
        self._call("upload", f"{path}/{name}", os.pread(source.fileno(), end - start, start))


def sender_with(tmp_path) -> tuple[Sender, FakeRest, Outbox, list]:
    box = Outbox(tmp_path)
    rest = FakeRest()
    closed: list = []
    sender = Sender(CONFIG, rest, box, on_run_known=lambda e: None, on_closed=closed.append)
    return sender, rest, box, closed


def test_sender_order_is_run_ops_then_close_with_the_status_last(tmp_path):
    sender, rest, box, closed = sender_with(tmp_path)
    e = entry()
    box.add(e)
    box.append(e, {"kind": "params", "params": [{"key": "p", "value": "1"}]})
    box.append(e, {"kind": "metrics", "metrics": [{"key": "m"}]})
    box.append(e, {"kind": "metrics", "metrics": [{"key": "m"}]})
    log = tmp_path / "job.log"
    log.write_bytes(b"attempt 0\nattempt 1\n")
    e.close = {
        "status": "FINISHED",
        "end_ms": 5,
        "metrics": [{"key": "score"}],
        "tags": [{"key": "t"}],
        "artifacts": [{"file": str(log), "start": 10, "end": 20, "artifact_path": "logs", "name": "job.log"}],
        "done": [],
    }
    box.save(e)
    sender.drain()
    assert [c[0] for c in rest.calls] == [
        "experiment",
        "find",
        "create",
        "log",
        "log",
        "log",
        "upload",
        "status",
        "find",
    ]
    assert rest.calls[4] == ("log", 2, 0, 0), "two metric snapshots, one request"
    assert rest.calls[6] == ("upload", "logs/job.log", b"attempt 1\n"), "only the attempt's part of the log"
    assert rest.calls[-2] == ("status", "FINISHED")
    assert closed == [e] and box.entries() == [] and not (box.root / e.id).exists()


def test_a_run_created_before_a_crash_is_found_again_not_created_twice(tmp_path):
    sender, rest, box, _ = sender_with(tmp_path)
    box.add(entry())
    rest.running = {"run_id": "run-0", "artifact_uri": "x"}
    sender.drain()
    assert "create" not in [c[0] for c in rest.calls]
    assert box.entries()[0].run_id == "run-0"


def test_a_twin_run_left_by_a_timed_out_create_is_closed_with_the_attempt(tmp_path):
    sender, rest, box, _ = sender_with(tmp_path)
    e = entry()
    box.add(e)
    sender.drain()
    rest.running = {"run_id": "twin", "artifact_uri": "x"}  # the server made a second run after our timeout
    e.close = {"status": "FAILED", "metrics": [], "tags": [], "artifacts": [], "done": []}
    box.save(e)
    sender.drain()
    assert rest.calls[-3:] == [("find", rest.calls[1][1]), ("log", 0, 0, 1), ("status", "KILLED")]
    assert ("status", "FAILED") in rest.calls


def test_mlflow_away_keeps_everything_for_later(tmp_path):
    sender, rest, box, _ = sender_with(tmp_path)
    e = entry()
    box.add(e)
    box.append(e, {"kind": "metrics", "metrics": [{"key": "m"}]})
    rest.fail = Unavailable("connection refused")
    with pytest.raises(Unavailable):
        sender.drain()
    assert box.pending_count(e) == 1 and e.run_id is None
    rest.fail = None
    sender.drain()
    assert box.pending_count(e) == 0 and e.run_id == "run-1"


def test_a_refused_op_is_dropped_and_a_repeated_server_error_given_up(tmp_path):
    sender, rest, box, _ = sender_with(tmp_path)
    e = entry()
    box.add(e)
    sender.drain()
    box.append(e, {"kind": "params", "params": [{"key": "p", "value": "changed"}]})
    rest.fail = Rejected("Changing param values is not allowed", code="INVALID_PARAMETER_VALUE")
    sender.drain()
    assert box.pending_count(e) == 0, "refused: dropped, so it never blocks the rest"
    box.append(e, {"kind": "metrics", "metrics": [{"key": "m"}]})
    rest.fail = Unavailable("HTTP 500", server_error=True)
    for _ in range(MAX_SERVER_ERRORS - 1):
        with pytest.raises(Unavailable):
            sender.drain()
    assert box.pending_count(e) == 1
    sender.drain()
    assert box.pending_count(e) == 0


# ---- closing runs whose after_finish was missed ---------------------------------------------------------------
class FakeRuntime:
    def __init__(self, existing=()):
        self.existing = set(existing)

    def inspect(self, name):
        return object() if name in self.existing else None


def record(container: str, outcome: str, reason: str) -> AttemptRecord:
    return AttemptRecord(
        attempt=1,
        generation="g",
        containerName=container,
        outcome=outcome,
        reason=reason,
        finishedAt=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "status,existing,verdict",
    [
        (dict(phase="Running", containerName="c-1"), (), None),
        (dict(phase="Pending", containerName="c-1"), (), None),
        (
            dict(phase="Succeeded", containerName="c-1", history=[record("c-1", "Succeeded", "Completed")]),
            (),
            "FINISHED",
        ),
        (
            dict(phase="Pending", containerName="c-2", history=[record("c-1", "Interrupted", "Interrupted")]),
            (),
            "KILLED",
        ),
        (dict(phase="Stopped", reason="SpecDeleted", containerName="c-1"), ("c-1",), None),  # still stopping
        (dict(phase="Failed", reason="ImageNotFound", containerName="c-1"), (), "FAILED"),
        (dict(phase="Stopped", reason="SpecDeleted", containerName=None), (), "KILLED"),
    ],
)
def test_sweep_closes_only_attempts_that_ended(tmp_path, status, existing, verdict):
    store = DataStore.open(tmp_path)
    hooks = MlflowHooks(CONFIG, store, FakeRuntime(existing))
    store.ensure_job_dirs("job")
    got = hooks._verdict(entry(), JobStatus(name="job", **status))
    assert (got[0] if got else None) == verdict


def test_sweep_ignores_an_earlier_runs_record_of_the_same_container_and_closes_a_collected_job(tmp_path):
    store = DataStore.open(tmp_path)
    hooks = MlflowHooks(CONFIG, store, FakeRuntime())
    old = JobStatus(name="job", phase="Running", containerName="c-1", history=[record("c-1", "Succeeded", "Completed")])
    assert hooks._verdict(entry(prior=1), old) is None
    assert hooks._verdict(entry(), None)[0] == "KILLED"  # no status and no folder: the record was collected
