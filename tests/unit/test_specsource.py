"""The specs folder as desired state: which job names changed between scans."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from controller.specsource import CREATED_GRACE, SpecSource

from .factories import doc

_stamp = itertools.count(1)


def put(path: Path, content: str | dict, young: bool = False) -> Path:
    """Write a file; settled (a minute old, a distinct mtime each write) unless `young`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(content, str):
        content = json.dumps(content) if path.suffix == ".json" else yaml.safe_dump(content)
    path.write_text(content)
    if not young:
        settle(path)
    return path


def settle(path: Path) -> None:
    """Age a file past the settle time, with an mtime no other write shares."""
    t = time.time() - 60 + next(_stamp) * 0.001
    os.utime(path, (t, t))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    return tmp_path


@pytest.fixture
def source(data: Path) -> SpecSource:
    return SpecSource(data / "specs", data)


@pytest.fixture
def two_jobs(data: Path, source: SpecSource) -> SpecSource:
    put(data / "specs" / "a.yaml", doc("alpha"))
    put(data / "specs" / "team" / "b.yaml", doc("beta"))
    source.scan()
    return source


def test_first_scan_reports_every_job(data, source):
    put(data / "specs" / "a.yaml", doc("alpha"))
    put(data / "specs" / "team" / "b.json", doc("beta"))
    assert (source.scan().changed, source.names()) == ({"alpha", "beta"}, {"alpha", "beta"})


def test_desired_state_carries_the_manifest_and_relative_file(two_jobs):
    d = two_jobs.desired("beta")
    assert (d.manifest.name, d.spec_file, d.error) == ("beta", "team/b.yaml", None)


def test_unknown_name_is_desired_absent(two_jobs):
    assert two_jobs.desired("gamma").exists is False


def test_unchanged_folder_reports_nothing(two_jobs):
    r = two_jobs.scan()
    assert (r.changed, r.rewritten_same, r.unsettled) == (set(), set(), False)


def test_edited_file_reports_only_its_job(data, two_jobs):
    put(data / "specs" / "a.yaml", doc("alpha", args=["v2"]))
    assert two_jobs.scan().changed == {"alpha"}


def test_deleted_file_reports_its_job_absent(data, two_jobs):
    (data / "specs" / "team" / "b.yaml").unlink()
    assert (two_jobs.scan().changed, two_jobs.desired("beta").exists) == ({"beta"}, False)


def test_renamed_file_reports_the_job_changed(data, two_jobs):
    (data / "specs" / "a.yaml").rename(data / "specs" / "renamed.yaml")
    assert (two_jobs.scan().changed, two_jobs.desired("alpha").spec_file) == ({"alpha"}, "renamed.yaml")


def test_identical_rewrite_is_reported_as_rewritten_same(data, two_jobs):
    put(data / "specs" / "a.yaml", doc("alpha"))
    r = two_jobs.scan()
    assert (r.changed, r.rewritten_same) == (set(), {"alpha"})


def test_reformatted_rewrite_with_the_same_meaning_is_rewritten_same(data, two_jobs):
    put(
        data / "specs" / "a.yaml",
        '{"spec": {"image": "busybox:latest"}, "metadata": {"name": "alpha"}, "kind": "Job", "apiVersion": "opeva/v1"}',
    )
    r = two_jobs.scan()
    assert (r.changed, r.rewritten_same) == (set(), {"alpha"})


@pytest.fixture
def duplicated(data: Path, source: SpecSource) -> SpecSource:
    """Two files, a.yaml and b.yaml, both naming the job `job`."""
    for stem in ("a", "b"):
        put(data / "specs" / f"{stem}.yaml", doc("job", args=[f"from-{stem}"]))
    source.scan()
    return source


def test_duplicate_names_first_file_wins(duplicated):
    d = duplicated.desired("job")
    assert (d.spec_file, d.manifest.spec.args) == ("a.yaml", ["from-a"])


def test_duplicate_loser_takes_over_when_the_winner_goes(data, duplicated):
    (data / "specs" / "a.yaml").unlink()
    assert (duplicated.scan().changed, duplicated.desired("job").spec_file) == ({"job"}, "b.yaml")


def test_editing_the_duplicate_loser_changes_nothing(data, duplicated):
    put(data / "specs" / "b.yaml", doc("job", args=["edited"]))
    assert duplicated.scan().changed == set()


def test_young_broken_file_is_unsettled_and_not_yet_reported(data, source):
    put(data / "specs" / "half.yaml", "apiVersion: opeva/v1\nkind: Job\nmetadata: {name: ha", young=True)
    r = source.scan()
    assert (r.unsettled, r.changed, source.names()) == (True, set(), set())


def test_broken_file_is_reported_once_it_has_settled(data, source):
    path = put(data / "specs" / "half.yaml", "apiVersion: opeva/v1\nkind: Job\nmetadata: {name: ha", young=True)
    source.scan()
    settle(path)
    r = source.scan()
    assert (r.unsettled, r.changed, "cannot parse YAML" in source.desired("half").error) == (False, {"half"}, True)


def test_young_broken_edit_keeps_the_previous_desired_state(data, two_jobs):
    put(data / "specs" / "a.yaml", "apiVersion: opeva/v1\nkind: Jo", young=True)
    r = two_jobs.scan()
    assert (r.unsettled, r.changed, two_jobs.desired("alpha").manifest.name) == (True, set(), "alpha")


def test_young_valid_file_is_reported_at_once(data, source):
    put(data / "specs" / "fresh.yaml", doc("fresh"), young=True)
    r = source.scan()
    assert (r.unsettled, r.changed) == (False, {"fresh"})


def test_invalid_file_with_a_readable_name_is_recorded_under_that_name(data, source):
    put(data / "specs" / "x.yaml", doc("alpha", imagee="typo"))
    source.scan()
    assert "spec.imagee: unknown field" in source.desired("alpha").error


@pytest.mark.parametrize(
    "rel", [".a.yaml", ".a.yaml.tmp", "a.yaml~", "a.yaml.swp", "#a.yaml#", "a.yaml.tmp", ".git/a.yaml", "notes.txt"]
)
def test_hidden_editor_and_temp_files_are_ignored(data, source, rel):
    put(data / "specs" / rel, doc("alpha"))
    assert (source.scan().changed, source.names()) == (set(), set())


def test_missing_config_file_is_noted_in_the_desired_state(data, source):
    put(data / "specs" / "a.yaml", doc("alpha", configFile="configs/ppo.yaml"))
    source.scan()
    assert "configs/ppo.yaml" in source.desired("alpha").config_missing


def test_config_file_appearing_reports_the_job_changed(data, source):
    put(data / "specs" / "a.yaml", doc("alpha", configFile="configs/ppo.yaml"))
    source.scan()
    put(data / "configs" / "ppo.yaml", "lr: 0.1\n")
    assert (source.scan().changed, source.desired("alpha").config_missing) == ({"alpha"}, None)


# ---- a file is taken once its writer is done ------------------------------------------------------------------
def test_a_file_moved_in_from_elsewhere_is_looked_at_again_when_its_grace_ends(data: Path, source: SpecSource):
    """inotify reports a file renamed in from outside the folder as created, with no write or close after it."""
    source.watched(closes_reported=True)
    path = put(data / "specs" / "a.yaml", doc("a"))
    source.file_event("created", str(path))
    result = source.scan()
    assert result.unsettled and 0 < result.recheck_in <= CREATED_GRACE
    time.sleep(result.recheck_in)
    assert source.scan().changed == {"a"}


def test_with_inotify_a_file_still_open_for_writing_waits_for_its_close(data: Path, source: SpecSource):
    source.watched(closes_reported=True)
    path = put(data / "specs" / "a.yaml", doc("a"), young=True)
    source.file_event("created", str(path))
    source.file_event("modified", str(path))  # the writer has not closed it yet
    result = source.scan()
    assert (result.changed, result.unsettled, source.names()) == (set(), True, set())
    source.file_event("closed", str(path))
    assert source.scan().changed == {"a"}


def test_with_inotify_a_file_renamed_into_place_is_taken_at_once(data: Path, source: SpecSource):
    source.watched(closes_reported=True)
    tmp = put(data / "specs" / ".a.yaml.tmp", doc("a"), young=True)
    source.file_event("modified", str(tmp))
    source.file_event("closed", str(tmp))
    path = data / "specs" / "a.yaml"
    os.replace(tmp, path)
    source.file_event("moved", str(tmp), str(path))
    assert source.scan().changed == {"a"}


def test_with_inotify_a_writer_that_keeps_a_file_open_and_idle_is_not_waited_for_forever(
    data: Path, source: SpecSource, monkeypatch
):
    import controller.specsource as specsource

    source.watched(closes_reported=True)
    path = put(data / "specs" / "a.yaml", doc("a"), young=True)
    source.file_event("modified", str(path))
    assert source.scan().changed == set()
    monkeypatch.setattr(specsource, "OPEN_WRITE_LIMIT", 0.0)
    source.file_event("modified", str(path))  # its last write, long ago
    assert source.scan().changed == {"a"}


def test_with_inotify_a_new_file_waits_briefly_for_its_first_write(data: Path, source: SpecSource, monkeypatch):
    """A file moved in from another folder is reported as created and never written or closed: taken after a beat."""
    import controller.specsource as specsource

    source.watched(closes_reported=True)
    path = put(data / "specs" / "a.yaml", doc("a"), young=True)
    source.file_event("created", str(path))
    assert source.scan().changed == set()
    monkeypatch.setattr(specsource, "CREATED_GRACE", 0.0)
    source.file_event("created", str(path))
    assert source.scan().changed == {"a"}


def test_a_polled_folder_takes_a_file_once_it_has_been_quiet(data: Path, source: SpecSource):
    source.watched(closes_reported=False)
    path = put(data / "specs" / "a.yaml", doc("a"), young=True)
    result = source.scan()
    assert (result.changed, result.unsettled) == (set(), True)
    settle(path)
    assert source.scan().changed == {"a"}


def test_without_a_watcher_files_are_taken_as_they_are(data: Path, source: SpecSource):
    """`opeva plan` and the API read the folder without a watcher: nothing waits."""
    put(data / "specs" / "a.yaml", doc("a"), young=True)
    assert source.scan().changed == {"a"}
