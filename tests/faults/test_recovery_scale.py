"""Recovery time at scale: from controller start until every job is in its desired state.

Most jobs are finished records (seeded as a controller leaves them); a few are real containers that exited or kept
running while no controller ran. Target: under 5 s for 1,000 jobs.
"""

from __future__ import annotations

import json
import time

import pytest
from e2e.harness import BUSYBOX, SESSION, TEST_LABEL, ControllerProcess, job_name, read_status, shell_spec, write_spec

from bench.seed import seed_finished
from controller import settledindex

from .conftest import iterations
from .invariants import EventRecorder, check, counting_script, instance_of, report, settled

LINES = 5


def start_ten(data, prefix: str, before_exit: str) -> tuple[list[str], list[str]]:
    """Five jobs that print and exit after `before_exit`, five that print and keep running; back once all run."""
    exited = [job_name(f"{prefix}-exit-{i}") for i in range(5)]
    running = [job_name(f"{prefix}-run-{i}") for i in range(5)]
    for n in exited:
        write_spec(data, shell_spec(n, f"{before_exit}; {counting_script(LINES, 0.01)}"))
    for n in running:
        write_spec(data, shell_spec(n, counting_script(LINES, 0.01, then="sleep 300"), terminationGracePeriodSeconds=1))
    for n in exited + running:
        t0 = time.monotonic()
        while (st := read_status(data, n)) is None or st["phase"] != "Running":
            assert time.monotonic() - t0 < 60, f"{n} never ran"
            time.sleep(0.05)
    return exited, running


@pytest.mark.long
@pytest.mark.parametrize("total", [100, 1000])
def test_recovery_time(tmp_path, total):
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    ctl = ControllerProcess(data).start()
    recorder = EventRecorder(instance_of(data)).start()
    exited, running = start_ten(data, f"rec{total}", "sleep 2")
    ctl.kill()
    seeded = seed_finished(
        data,
        total - len(exited) - len(running),
        ["true"],
        BUSYBOX,
        {TEST_LABEL: SESSION},
        prefix=f"rec{total}-{SESSION}",
    )
    time.sleep(2.5)  # the 'exited' jobs finish while no controller runs
    expected = {**{n: "Succeeded" for n in seeded + exited}, **{n: "Running" for n in running}}
    t0 = time.monotonic()
    ctl = ControllerProcess(data).start()
    while not settled(data, expected):
        assert time.monotonic() - t0 < 60, "did not recover within 60 s"
        time.sleep(0.02)
    recovery = time.monotonic() - t0
    # the running ones are adopted: their logs keep flowing into the same file, no second container
    time.sleep(1)
    ctl.kill()
    recorder.stop()
    violations = check(data, {n: "Succeeded" for n in exited}, LINES, recorder)
    violations += [
        f"{n}: {read_status(data, n)['attempts']} attempts"
        for n in running + exited
        if read_status(data, n)["attempts"] != 1
    ]
    report(
        f"controller restart, {total} jobs ({len(running)} running, {len(exited)} exited while down)",
        1,
        len(violations),
        recovery,
    )
    assert not violations, violations
    assert recovery < 5.0 or total < 1000, f"recovery of {total} jobs took {recovery:.2f} s (target < 5 s)"


def _index_lists(data, count: int) -> bool:
    path = data / ".opeva" / settledindex.FILE
    try:
        return len(json.loads(path.read_bytes())["jobs"]) >= count
    except (OSError, ValueError, KeyError):
        return False


@pytest.mark.long
def test_recovery_with_a_year_of_history(tmp_path):
    """A large settled history, indexed by an earlier controller; 5 jobs running and 5 that exit while no controller
    runs. The restart takes the history from the index and recovers the ten: all correct, no second container."""
    total = iterations(2_000, 100_000)
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    seeded = seed_finished(data, total - 10, ["true"], BUSYBOX, {TEST_LABEL: SESSION}, prefix=f"hist-{SESSION}")
    ctl = ControllerProcess(data).start()
    t0 = time.monotonic()
    while not _index_lists(data, len(seeded)):  # the first controller on this folder reads and indexes it all
        assert time.monotonic() - t0 < 1800, "the history was never indexed"
        time.sleep(1)
    first_index = time.monotonic() - t0
    recorder = EventRecorder(instance_of(data)).start()
    # the five 'exited' ones wait for DATA/release, created once the controller is down
    exited, running = start_ten(data, "year", "while [ ! -e /data/release ]; do sleep 0.1; done")
    ctl.kill()
    (data / "release").touch()
    time.sleep(3)  # the 'exited' jobs finish while no controller runs
    ten = {**{n: "Succeeded" for n in exited}, **{n: "Running" for n in running}}
    t0 = time.monotonic()
    ctl = ControllerProcess(data).start()
    while not settled(data, ten):
        assert time.monotonic() - t0 < 60, "did not recover within 60 s"
        time.sleep(0.02)
    recovery = time.monotonic() - t0
    time.sleep(1)  # the running ones are adopted: their logs keep flowing into the same file, no second container
    ctl.kill()
    recorder.stop()
    violations = check(data, {n: "Succeeded" for n in exited}, LINES, recorder)
    violations += [
        f"{n}: {read_status(data, n)['attempts']} attempts" for n in ten if read_status(data, n)["attempts"] != 1
    ]
    violations += [
        f"{n}: {st and st['phase']}"
        for n in seeded
        if (st := read_status(data, n)) is None or st["phase"] != "Succeeded"
    ]
    report(
        f"restart over {total} jobs with a settled index (5 running, 5 exited while down; "
        f"first indexing {first_index:.0f} s)",
        1,
        len(violations),
        recovery,
    )
    print(f"recovery of {total} jobs with the settled index: {recovery:.2f} s (first indexing {first_index:.1f} s)")
    assert not violations, violations[:20]
