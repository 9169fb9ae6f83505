"""The progress history: numbers picked out of progress.json, one point per change, bounded by thinning."""

from __future__ import annotations

import json
from pathlib import Path

from controller import sampler
from controller.sampler import Sampler, progress_values, read_history
from controller.status import JobStatus
from controller.store import DataStore


def test_progress_values_keeps_finite_numbers_with_dotted_keys():
    doc = {"percent": 40, "stage": "train", "ok": True, "metrics": {"reward": -1.5, "loss": float("nan")}, "l": [1]}
    assert progress_values(doc) == {"percent": 40.0, "metrics.reward": -1.5}
    assert progress_values([1, 2]) == {}


def _running(name: str) -> JobStatus:
    return JobStatus(name=name, phase="Running", containerName=f"c-{name}")


def test_one_point_per_change_and_thinned_past_the_bound(tmp_path: Path, monkeypatch):
    store = DataStore.open(tmp_path / "data")
    store.ensure_job_dirs("j")
    s = Sampler(store, runtime=None, running=lambda: [_running("j")])  # type: ignore[arg-type]
    monkeypatch.setattr(sampler, "MAX_PROGRESS_POINTS", 10)
    progress = store.progress_path("j")
    for step in range(1, 12):
        progress.write_text(json.dumps({"step": step, "stage": "train"}))
        s.sample(resources=False)
        s.sample(resources=False)  # unchanged: no new point
    points = read_history(store, "j", "progress")
    assert [p["values"]["step"] for p in points] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    assert points[-1]["stage"] == "train"
    progress.write_text("{half")  # being written: skipped, read again later
    s.sample(resources=False)
    assert len(read_history(store, "j", "progress")) == 6


def test_a_restarted_sampler_does_not_repeat_the_last_point(tmp_path: Path):
    store = DataStore.open(tmp_path / "data")
    store.ensure_job_dirs("j")
    store.progress_path("j").write_text(json.dumps({"step": 1}))
    Sampler(store, None, lambda: [_running("j")]).sample(resources=False)  # type: ignore[arg-type]
    Sampler(store, None, lambda: [_running("j")]).sample(resources=False)  # type: ignore[arg-type]
    assert len(read_history(store, "j", "progress")) == 1


def test_a_link_instead_of_progress_json_is_not_followed(tmp_path: Path):
    store = DataStore.open(tmp_path / "data")
    store.ensure_job_dirs("j")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"password": 1234}))
    store.progress_path("j").symlink_to(secret)
    Sampler(store, None, lambda: [_running("j")]).sample(resources=False)  # type: ignore[arg-type]
    assert read_history(store, "j", "progress") == []
