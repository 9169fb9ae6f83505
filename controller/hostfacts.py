"""What the machine tells us about interruptions: the host's boot, the engine daemon's start, engine outages.

The decision blames an attempt's end on the machine (and does not count it as the job's failure) when it ended
around one of these. The loop reports what it sees of the engine through `engine_down`, `engine_up` and
`daemon_seen`; the reconciler reads `snapshot`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from .status import utcnow

OUTAGES_KEPT = 20

Span = tuple[datetime, datetime]


def host_boot_time() -> datetime | None:
    try:
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return datetime.fromtimestamp(btime, UTC)
    except (OSError, StopIteration, ValueError):
        return None


class HostFacts:
    def __init__(self, boot_time: datetime | None = None):
        self.boot_time = boot_time
        self._daemon_started_at: datetime | None = None
        self._outages: tuple[Span, ...] = ()  # spans the engine was away
        self._outage_since: datetime | None = None  # an outage going on now
        self._lock = threading.Lock()

    @classmethod
    def of_this_host(cls) -> HostFacts:
        return cls(host_boot_time())

    @property
    def daemon_started_at(self) -> datetime | None:
        return self._daemon_started_at

    def daemon_seen(self, started_at: datetime | None) -> None:
        """The engine daemon's start time, as the engine reported it (None: it did not say)."""
        self._daemon_started_at = started_at

    def engine_down(self) -> bool:
        """The engine does not answer; True when this begins an outage."""
        with self._lock:
            if self._outage_since is not None:
                return False
            self._outage_since = utcnow()
            return True

    def engine_up(self) -> Span | None:
        """The engine answers again; the outage that ended, if one was going on."""
        with self._lock:
            if self._outage_since is None:
                return None
            span = (self._outage_since, utcnow())
            self._outages = (self._outages + (span,))[-OUTAGES_KEPT:]
            self._outage_since = None
            return span

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    def outages_until(self, now: datetime) -> tuple[Span, ...]:
        """Past outages, and the one going on now as ending at `now`."""
        with self._lock:
            since = self._outage_since
            return self._outages + ((since, now),) if since is not None else self._outages
