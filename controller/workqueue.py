"""A keyed work queue in the manner of client-go's: it knows nothing of jobs.

- A key queued twice before a worker takes it is processed once (dedup).
- A key being processed is never handed to a second worker; re-adds while it runs are processed after it (dirty set).
- `add_after` delays a key (timers, backoff and deadlines all become this); `add_rate_limited` backs off a failing
  key exponentially until `forget` is called.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable

from . import metrics


class WorkQueue:
    def __init__(self, base_delay: float = 0.05, max_delay: float = 300.0):
        self._cond = threading.Condition()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiting: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self._added_at: dict[Hashable, float] = {}  # when a queued key was queued, for the latency metric
        self._seq = 0
        self._shutdown = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        metrics.QUEUE_ADDS.inc()
        if key not in self._processing:
            self._enqueue_locked(key)

    def _enqueue_locked(self, key: Hashable) -> None:
        self._queue.append(key)
        self._added_at.setdefault(key, time.monotonic())
        metrics.QUEUE_DEPTH.set(len(self._queue))
        self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        when = time.monotonic() + delay
        with self._cond:
            if self._shutdown or self._due.get(key, float("inf")) <= when:
                return
            self._due[key] = when
            self._seq += 1
            heapq.heappush(self._waiting, (when, self._seq, key))
            self._cond.notify()

    def add_rate_limited(self, key: Hashable) -> float:
        """Requeue a failing key after base * 2^failures (capped); returns the delay chosen."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        metrics.QUEUE_RETRIES.inc()
        delay = min(self.base_delay * (2 ** min(n, 30)), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key, or None on shutdown or timeout. The caller must call `done(key)`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                self._promote_due_locked(now)
                if self._queue:
                    key = self._queue.popleft()
                    metrics.QUEUE_DEPTH.set(len(self._queue))
                    metrics.QUEUE_LATENCY.observe(now - self._added_at.pop(key, now))
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                if self._shutdown:
                    return None
                wait = None if not self._waiting else max(self._waiting[0][0] - now, 0)
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def _promote_due_locked(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            when, _, key = heapq.heappop(self._waiting)
            if self._due.get(key) == when:
                del self._due[key]
                self._add_locked(key)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._enqueue_locked(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)
