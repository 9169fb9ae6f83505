"""SIGKILL the controller at random moments, inside and outside the windows that matter, during a burst of jobs.

Fixed seed, printed for replay: OPEVA_FAULT_SEED=N bash scripts/test.sh tests/faults -m long
"""

from __future__ import annotations

import os
import random
import time

import pytest
from e2e.harness import ControllerProcess, job_name, shell_spec, write_spec

from .conftest import iterations
from .invariants import EventRecorder, StatusPoller, check, counting_script, instance_of, report, settled

POINTS = "after_intent,after_create,before_record,mid_log,before_remove"
JOBS = 30
LINES = 15


def crash_env(rng: random.Random) -> dict[str, str]:
    """Crash points armed with a small probability and a seed drawn from the test's seeded generator."""
    return {"OPEVA_CRASH_POINTS": POINTS, "OPEVA_CRASH_PROB": "0.03", "OPEVA_CRASH_SEED": str(rng.randrange(1 << 30))}


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_sigkill_at_random_moments_during_a_burst(tmp_path):
    seed = int(os.environ.get("OPEVA_FAULT_SEED", "20261127"))
    print(f"\nfault seed {seed} (replay with OPEVA_FAULT_SEED={seed})")
    rng = random.Random(seed)
    rounds = iterations(short=2, long=15)
    total_violations, kills, recoveries = 0, 0, []
    for it in range(rounds):
        data = tmp_path / f"it{it}" / "data"
        (data / "specs").mkdir(parents=True)
        names = {job_name(f"burst{it}-{i}"): ("Succeeded" if i % 4 else "Failed") for i in range(JOBS)}
        ctl = ControllerProcess(data, resync=1.0, env=crash_env(rng)).start()
        recorder = EventRecorder(instance_of(data)).start()
        poller = StatusPoller(data, list(names)).start()
        for name, phase in names.items():
            write_spec(data, shell_spec(name, counting_script(LINES, 0.05, 0 if phase == "Succeeded" else 1)))
        deadline = time.monotonic() + 240
        while not settled(data, names) and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.1, 1.2))
            if ctl.proc.poll() is None and rng.random() < 0.5:
                ctl.kill()  # a kill from outside, at any instant
            if ctl.proc.poll() is not None:
                kills += 1
                ctl = ControllerProcess(data, resync=1.0, env=crash_env(rng)).start()
        # a last, clean start: it must reach the desired state on its own
        ctl.kill()
        t0 = time.monotonic()
        ctl = ControllerProcess(data, resync=1.0).start()
        while not settled(data, names) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        recoveries.append(time.monotonic() - t0)
        time.sleep(1.0)
        ctl.kill()
        recorder.stop()
        poller.stop()
        violations = check(data, names, LINES, recorder, poller)
        assert not violations, f"seed {seed} iteration {it}: {violations[:10]}"
        total_violations += len(violations)
    report(
        f"SIGKILL anywhere, {JOBS} jobs (crash points: {POINTS})",
        rounds,
        total_violations,
        max(recoveries),
        f"{kills} kills, seed {seed}",
    )
