"""Recovery time at scale: from controller start until every job is in its desired state.

Most jobs are finished records (seeded as a controller leaves them); a few are real containers that exited or kept
running while no controller ran. Target: under 5 s for 1,000 jobs.
"""

from __future__ import annotations

import time

import pytest
from e2e.harness import BUSYBOX, SESSION, TEST_LABEL, ControllerProcess, job_name, read_status, shell_spec, write_spec

from bench.seed import seed_finished

from .invariants import EventRecorder, check, counting_script, instance_of, report, settled

LINES = 5


@pytest.mark.long
@pytest.mark.parametrize("total", [100, 1000])
def test_recovery_time(tmp_path, total):
    data = tmp_path / "data"
    (data / "specs").mkdir(parents=True)
    ctl = ControllerProcess(data).start()
    recorder = EventRecorder(instance_of(data)).start()
    exited = [job_name(f"rec{total}-exit-{i}") for i in range(5)]
    running = [job_name(f"rec{total}-run-{i}") for i in range(5)]
    for n in exited:
        write_spec(data, shell_spec(n, f"sleep 2; {counting_script(LINES, 0.01)}"))
    for n in running:
        write_spec(data, shell_spec(n, counting_script(LINES, 0.01, then="sleep 300"), terminationGracePeriodSeconds=1))
    for n in exited + running:
        t0 = time.monotonic()
        while (st := read_status(data, n)) is None or st["phase"] != "Running":
            assert time.monotonic() - t0 < 60, f"{n} never ran"
            time.sleep(0.05)
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
