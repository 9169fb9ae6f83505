"""The settled-jobs index over real files (a temporary data folder): used when it matches the records, and any
record it does not match, and the whole index when it is unusable, is read again so that nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller import settledindex
from controller.specsource import SpecSource
from controller.status import AttemptRecord, JobStatus
from controller.statuscache import StatusCache
from controller.store import DataStore

from .factories import T0, doc

CONTEXT = {"instance": "a1b2c3", "ttl_succeeded": None}


def finished(name: str, phase: str = "Succeeded") -> JobStatus:
    return JobStatus(
        name=name,
        phase=phase,
        reason="Completed",
        attempts=1,
        containerName=f"c-{name}",
        finishedAt=T0,
        labels={"team": "ml"},
        history=[AttemptRecord(attempt=1, generation="g", containerName=f"c-{name}", outcome=phase)],
    )


def settled_folder(root: Path, names: list[str]) -> DataStore:
    """A folder whose jobs all settled under a controller that wrote its indexes before stopping."""
    store = DataStore.open(root)
    for name in names:
        store.write_status(finished(name))
        (store.specs_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc(name)))
    cache = StatusCache(store, CONTEXT)
    cache.load()
    specs = SpecSource(store.specs_dir, store.root)
    specs.scan()
    for name in names:
        cache.settle(name, specs.stamp(name))
    cache.write_indexes()
    return store


def loaded(store: DataStore, context=CONTEXT) -> StatusCache:
    cache = StatusCache(store, context)
    cache.load()
    return cache


NAMES = [f"job-{i}" for i in range(5)]


def test_settled_jobs_come_from_the_index_without_being_read(tmp_path):
    store = settled_folder(tmp_path, NAMES)
    cache = loaded(store)
    assert cache.live() == {}  # nothing parsed into a model
    assert cache.names() == set(NAMES)
    assert cache.phase_counts() == {"Succeeded": 5}
    rows = list(cache.rows())
    assert [r[0] for r in rows] == NAMES and rows[0][4] == "Succeeded" and rows[0][8] == {"team": "ml"}
    assert cache.get("job-1") == store.read_status("job-1")  # read when looked at, and live from then on
    assert set(cache.live()) == {"job-1"} and cache.phase_counts() == {"Succeeded": 5}


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"\x00garbage{"),
        lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),  # cut short by a crash or a full disk
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "version": 999})),
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "jobs": [["job-0", 1]]})),
        lambda p: p.unlink(),
    ],
    ids=["garbage", "truncated", "other-version", "bad-entry", "missing"],
)
def test_an_unusable_index_is_ignored_and_rebuilt_with_nothing_lost(tmp_path, damage):
    store = settled_folder(tmp_path, NAMES)
    path = store.state_dir / settledindex.FILE
    damage(path)
    cache = loaded(store)
    assert set(cache.live()) == set(NAMES)  # every record read again
    assert {n: s.phase for n, s in cache.live().items()} == {n: "Succeeded" for n in NAMES}
    assert cache.index_dirty.is_set()
    cache.write_indexes()
    assert settledindex.read(store.state_dir, CONTEXT) == {}  # rewritten, readable (nothing settled yet)


def test_an_index_made_under_other_settings_is_not_used(tmp_path):
    store = settled_folder(tmp_path, NAMES)
    cache = loaded(store, {**CONTEXT, "ttl_succeeded": 60.0})
    assert set(cache.live()) == set(NAMES)


def test_a_record_changed_after_the_index_was_written_is_read_again(tmp_path):
    store = settled_folder(tmp_path, NAMES)
    changed = finished("job-2", phase="Failed").model_copy(update={"reason": "BackoffLimitExceeded"})
    store.write_status(changed)
    store.status_path("job-3").unlink()  # collected by hand
    store.status_copy_path("job-3").unlink()
    store.write_status(finished("job-9"))  # new since the index
    cache = loaded(store)
    assert set(cache.live()) == {"job-2", "job-9"}
    assert cache.live()["job-2"].phase == "Failed"
    assert cache.names() == {"job-0", "job-1", "job-2", "job-4", "job-9"}
    assert cache.phase_counts() == {"Succeeded": 4, "Failed": 1}


def test_quiet_leaves_out_jobs_whose_record_or_spec_changed(tmp_path):
    store = settled_folder(tmp_path, NAMES)
    cache = loaded(store)
    specs = SpecSource(store.specs_dir, store.root)
    specs.prime(cache.spec_stamps())
    specs.scan()
    assert cache.quiet(specs.stamp, exclude=set()) == set(NAMES)
    (store.specs_dir / "job-0.yaml").write_text(yaml.safe_dump(doc("job-0", args=["again"])))
    specs.scan()
    store.write_status(finished("job-1", phase="Failed"))
    assert cache.quiet(specs.stamp, exclude={"job-4"}) == {"job-2", "job-3"}


def test_spec_files_of_settled_jobs_are_parsed_only_when_looked_at(tmp_path):
    store = settled_folder(tmp_path, NAMES)
    cache = loaded(store)
    specs = SpecSource(store.specs_dir, store.root)
    specs.prime(cache.spec_stamps())
    (store.specs_dir / "job-1.yaml").write_text(yaml.safe_dump(doc("job-1", args=["edited"])))
    (store.specs_dir / "new.yaml").write_text(yaml.safe_dump(doc("new")))
    result = specs.scan()
    assert result.changed == {"job-1", "new"}  # the unchanged ones are no news
    assert specs.names() == set(NAMES) | {"new"}
    assert specs._deferred.keys() == {"job-0", "job-2", "job-3", "job-4"}
    d = specs.desired("job-0")
    assert d.manifest is not None and d.manifest.name == "job-0" and d.spec_file == "job-0.yaml"
    assert "job-0" not in specs._deferred
    assert specs.scan().changed == set()
    (store.specs_dir / "job-2.yaml").unlink()
    assert specs.scan().changed == {"job-2"} and specs.desired("job-2").exists is False
