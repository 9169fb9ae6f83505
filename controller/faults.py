"""Crash points for the fault-injection suite; inert unless OPEVA_CRASH_POINTS is set.

    OPEVA_CRASH_POINTS=after_intent,after_create,before_record,mid_log,before_remove
    OPEVA_CRASH_PROB=0.05  OPEVA_CRASH_SEED=7

At a named point the process SIGKILLs itself with the given probability, exactly as a crash would: no cleanup, no
flush. The points sit in the windows that matter for crash safety (see tests/faults).
"""

from __future__ import annotations

import os
import random
import signal

POINTS = frozenset(p for p in os.environ.get("OPEVA_CRASH_POINTS", "").split(",") if p)
_PROB = float(os.environ.get("OPEVA_CRASH_PROB", "1"))
_RNG = random.Random(os.environ.get("OPEVA_CRASH_SEED"))


def crash_point(name: str) -> None:
    if name in POINTS and _RNG.random() < _PROB:
        os.write(2, f'{{"event": "crash_point", "point": "{name}"}}\n'.encode())
        os.kill(os.getpid(), signal.SIGKILL)
