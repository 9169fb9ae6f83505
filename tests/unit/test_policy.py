"""The lifecycle policy's pure helpers, as tables."""

from __future__ import annotations

import dataclasses

import pytest

from controller.policy import backoff_delay, interruption_cause, match_failure_rule
from controller.spec import FailureRule

from .factories import at, exited, manifest

M = manifest()

# ---- backoff_delay --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failures, initial, maximum, delay",
    [
        (0, 10, 300, 0),
        (1, 10, 300, 10),
        (2, 10, 300, 20),
        (3, 10, 300, 40),
        (5, 10, 300, 160),
        (6, 10, 300, 300),
        (50, 10, 300, 300),
        (10_000, 10, 300, 300),  # no overflow for absurd counts
        (1, 0.5, 2, 0.5),
        (4, 0.5, 2, 2),
        (1, 30, 5, 5),  # the cap wins even over the first delay
    ],
)
def test_backoff_delay(failures, initial, maximum, delay):
    assert backoff_delay(failures, initial, maximum) == delay


# ---- match_failure_rule ---------------------------------------------------------------------------------------
FAIL_2_3 = {"exitCodes": [2, 3], "action": "FailJob"}
IGNORE_75 = {"exitCodes": [75], "action": "Ignore"}
OOM_IGNORE = {"oomKilled": True, "action": "Ignore"}
NOT_OOM_COUNT = {"oomKilled": False, "action": "Count"}
OOM_137_FAIL = {"exitCodes": [137], "oomKilled": True, "action": "FailJob"}


@pytest.mark.parametrize(
    "rules, code, oom, expected",
    [
        ([], 1, False, (None, "Count")),
        ([FAIL_2_3, IGNORE_75], 3, False, (0, "FailJob")),
        ([FAIL_2_3, IGNORE_75], 75, False, (1, "Ignore")),
        ([FAIL_2_3, IGNORE_75], 1, False, (None, "Count")),
        ([IGNORE_75, {"exitCodes": [75], "action": "FailJob"}], 75, False, (0, "Ignore")),  # first match wins
        ([OOM_IGNORE], 137, True, (0, "Ignore")),
        ([OOM_IGNORE], 137, False, (None, "Count")),
        ([NOT_OOM_COUNT], 1, False, (0, "Count")),
        ([NOT_OOM_COUNT], 137, True, (None, "Count")),
        ([OOM_137_FAIL], 137, True, (0, "FailJob")),  # both given: both must hold
        ([OOM_137_FAIL], 137, False, (None, "Count")),
        ([OOM_137_FAIL], 1, True, (None, "Count")),
        ([FAIL_2_3], None, False, (None, "Count")),
    ],
    ids=[
        "no-rules",
        "failjob",
        "ignore",
        "unmatched",
        "first-wins",
        "oom",
        "oom-rule-plain-exit",
        "not-oom",
        "not-oom-rule-oom-exit",
        "code-and-oom",
        "code-not-oom",
        "oom-other-code",
        "no-exit-code",
    ],
)
def test_match_failure_rule(rules, code, oom, expected):
    assert match_failure_rule([FailureRule(**r) for r in rules], code, oom) == expected


# ---- interruption_cause ---------------------------------------------------------------------------------------
# The container runs from T0 (at(0)) to at(30) unless the case says otherwise.
@pytest.mark.parametrize(
    "finished, facts, word",
    [
        (at(30), {}, None),
        (at(30), {"boot_time": at(20)}, "rebooted"),
        (at(30), {"boot_time": at(-1)}, None),  # started after the boot
        (at(30), {"daemon_started_at": at(40)}, "daemon"),
        (at(30), {"daemon_started_at": at(150)}, "daemon"),  # exit 120 s before the daemon started
        (at(30), {"daemon_started_at": at(151)}, None),  # 121 s before: the job's own exit
        (at(60), {"daemon_started_at": at(1)}, "daemon"),  # marked dead 59 s after the daemon started
        (at(62), {"daemon_started_at": at(1)}, None),  # 61 s after: too late to blame the restart
        (None, {"daemon_started_at": at(1)}, "daemon"),  # no finish time: the daemon's start stands in
        (at(30), {"daemon_started_at": at(-1)}, None),  # started under the current daemon
        (at(30), {"outages": ((at(10), at(20)),)}, None),  # the exit came 10 s after the engine was back
        (at(30), {"outages": ((at(10), at(25)),)}, "engine"),  # within the 5 s slack after the outage
        (at(30), {"outages": ((at(60), at(70)),)}, "engine"),  # 30 s before: a shutting-down daemon stops its
        (at(30), {"outages": ((at(61), at(70)),)}, None),  # containers before its event stream breaks
        (at(30), {"outages": ((at(-50), at(-40)), (at(28), at(32)))}, "engine"),  # any span counts
        (None, {"outages": ((at(25), at(35)),)}, None),  # no finish time to place in a span
    ],
    ids=[
        "no-facts",
        "boot",
        "after-boot",
        "daemon",
        "daemon-before-edge",
        "daemon-before-out",
        "daemon-after-edge",
        "daemon-after-out",
        "daemon-no-finish",
        "same-daemon",
        "outage-over",
        "outage-slack-after",
        "outage-slack-before",
        "outage-out",
        "outage-any-span",
        "outage-no-finish",
    ],
)
def test_interruption_cause(finished, facts, word):
    c = dataclasses.replace(exited(M, 1, 137, started=at(0)), finished_at=finished)
    cause = interruption_cause(c, **{"boot_time": None, "daemon_started_at": None, "outages": (), **facts})
    assert cause is None if word is None else word in cause


def test_interruption_cause_needs_a_start_time():
    c = exited(M, 1, 137, started=None, finished=at(30))
    assert interruption_cause(c, at(100), at(100), ((at(0), at(100)),)) is None


def test_exit_before_the_reboot_is_the_jobs_own_failure():
    c = exited(M, 1, 1, started=at(0), finished=at(30))
    assert interruption_cause(c, boot_time=at(3600), daemon_started_at=None, outages=()) is None
