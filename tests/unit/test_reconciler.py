"""The reconciler's observe -> decide -> record -> act round over real files and a `FakeRuntime` (no Docker).

The same behaviour against the real engine is covered end to end in tests/e2e; these pin the reconciler's own
bookkeeping fast: intent recorded before the create, an exit recorded with its log, a name conflict adopted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from controller.loop import Controller
from controller.settings import Settings
from controller.wiring import build_controller

from .factories import IMAGE, doc
from .fakeruntime import FakeRuntime


def make(data: Path, runtime: FakeRuntime) -> Controller:
    ctl = build_controller(Settings(data_dir=data, cpus=4.0, memory=2**32, gpus=()), runtime)
    ctl.statuses.load()
    return ctl


def drop(ctl: Controller, name: str, **spec) -> None:
    (ctl.store.specs_dir / f"{name}.yaml").write_text(yaml.safe_dump(doc(name, **spec)))
    ctl.specs.scan()


def status(data: Path, name: str) -> dict:
    return json.loads((data / "jobs" / name / "status.json").read_text())


def settle(ctl: Controller, name: str, timeout: float = 5.0) -> None:
    """Reconcile until the job asks for no further look (log capture runs on its own threads)."""
    end = time.monotonic() + timeout
    while ctl.reconciler.reconcile(name) is not None:
        if time.monotonic() > end:
            raise TimeoutError(f"{name} did not settle")
        time.sleep(0.02)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


def test_a_new_spec_records_its_attempt_and_creates_its_container(tmp_path, runtime):
    ctl = make(tmp_path, runtime)
    drop(ctl, "train", command=["sh", "-c"], args=["echo hi"], env={"LR": "0.1"})

    assert ctl.reconciler.reconcile("train") == 0.0
    intent = status(tmp_path, "train")  # written before the create
    [name] = runtime.containers
    assert intent["phase"] == "Pending" and intent["containerName"] == name and intent["containerId"] is None

    ctl.reconciler.reconcile("train")
    st = status(tmp_path, "train")
    assert st["phase"] == "Running" and st["containerId"] == runtime.containers[name].id and st["attempts"] == 1
    req = runtime.requests[name]
    assert req.image == IMAGE and req.env["LR"] == "0.1" and req.env["OPEVA_JOB_ID"] == "train"
    info = json.loads((tmp_path / "jobs" / "train" / "job_info.json").read_text())
    assert info["container_name"] == name and info["phase"] == "Running" and info["attempt"] == 1
    assert ctl.statuses.phase_counts() == {"Running": 1}


def test_an_exit_is_recorded_with_its_log(tmp_path, runtime):
    ctl = make(tmp_path, runtime)
    drop(ctl, "train")
    ctl.reconciler.reconcile("train")
    [name] = runtime.containers
    runtime.output(name, "epoch 1 done")
    runtime.exit(name, 0)
    ctl.cache.update(runtime.inspect(name))  # what the engine's die event does

    settle(ctl, "train")
    st = status(tmp_path, "train")
    assert st["phase"] == "Succeeded" and st["exitCode"] == 0
    assert [(h["containerName"], h["outcome"]) for h in st["history"]] == [(name, "Succeeded")]
    assert "epoch 1 done" in (tmp_path / "jobs" / "train" / "logs" / "train.log").read_text()
    assert name not in runtime.containers  # finished containers are removed once their log is complete
    assert ctl.statuses.phase_counts() == {"Succeeded": 1}


def test_a_container_created_before_a_crash_is_adopted_not_duplicated(tmp_path, runtime):
    first = make(tmp_path, runtime)
    drop(first, "train")
    runtime.fail_after_create = True  # the engine made the container, the controller never heard back
    with pytest.raises(Exception, match="went away"):
        first.reconciler.reconcile("train")
    intent = status(tmp_path, "train")
    assert intent["containerName"] and intent["containerId"] is None

    second = make(tmp_path, runtime)  # a restarted controller: its cache has not seen the container
    second.specs.scan()
    settle_until = time.monotonic() + 5
    while status(tmp_path, "train")["containerId"] is None and time.monotonic() < settle_until:
        second.reconciler.reconcile("train")
    st = status(tmp_path, "train")
    assert list(runtime.containers) == [intent["containerName"]]
    assert st["phase"] == "Running" and st["containerId"] == runtime.containers[intent["containerName"]].id
    assert runtime.creates == [intent["containerName"]] * 2  # the second create met the first one's name


def test_a_missing_image_fails_the_job_and_leaves_no_container(tmp_path):
    runtime = FakeRuntime(images=frozenset())
    ctl = make(tmp_path, runtime)
    drop(ctl, "train")
    ctl.reconciler.reconcile("train")
    st = status(tmp_path, "train")
    assert st["phase"] == "Failed" and st["reason"] == "ImageNotFound"
    assert runtime.containers == {}


def test_the_backstop_rescan_of_a_costly_specs_folder_waits_its_budget(tmp_path, runtime):
    """The periodic rescan only catches what the watcher lost: over a folder that takes long to scan (100,000
    specs), it runs at most ~1% of the time; a full resync always rescans."""
    ctl = make(tmp_path, runtime)
    scans = []
    scan = ctl.scan_specs
    ctl.scan_specs = lambda: (scans.append(1), scan())[1]  # type: ignore[method-assign]
    for _ in range(3):
        ctl.resync()
    assert len(scans) == 1  # the third resync rescans (a cheap folder)
    ctl._scan_seconds = 60.0  # as if that scan had taken a minute
    for _ in range(3):
        ctl.resync()
    assert len(scans) == 1
    ctl.resync(full=True)
    assert len(scans) == 2
