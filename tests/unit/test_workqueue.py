"""The keyed work queue: dedup, one worker per key, delays, rate limiting, shutdown.

Delays run on a fake clock; real time is used only where a blocked `get` must wake up (tens of milliseconds).
"""

from __future__ import annotations

import threading
import time

import pytest

from controller import workqueue
from controller.workqueue import WorkQueue

NOW = 0.0  # `get(timeout=NOW)`: look once, never wait


def drain(q: WorkQueue, timeout: float = NOW) -> list:
    """Every key immediately available, each marked done."""
    out = []
    while (key := q.get(timeout=timeout)) is not None:
        out.append(key)
        q.done(key)
    return out


def test_key_added_twice_before_a_worker_takes_it_is_processed_once():
    q = WorkQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert (len(q), drain(q)) == (2, ["a", "b"])


def test_keys_come_out_in_the_order_they_were_added():
    q = WorkQueue()
    for key in ("c", "a", "b"):
        q.add(key)
    assert drain(q) == ["c", "a", "b"]


def test_key_being_processed_is_not_handed_to_a_second_worker():
    q = WorkQueue()
    q.add("a")
    assert q.get(timeout=NOW) == "a"
    q.add("a")  # an event while the first worker is busy with it
    assert q.get(timeout=0.02) is None


def test_key_re_added_while_processing_is_processed_after_done():
    q = WorkQueue()
    q.add("a")
    key = q.get(timeout=NOW)
    q.add(key)
    q.add(key)
    q.done(key)
    assert drain(q) == ["a"]


def test_done_without_a_re_add_does_not_requeue():
    q = WorkQueue()
    q.add("a")
    q.done(q.get(timeout=NOW))
    assert q.get(timeout=NOW) is None


def test_other_keys_flow_while_one_is_processing():
    q = WorkQueue()
    q.add("a")
    q.add("b")
    q.get(timeout=NOW)
    q.add("a")
    assert q.get(timeout=NOW) == "b"


def test_concurrent_workers_never_hold_one_key_at_once():
    q = WorkQueue()
    holding: set = set()
    clashes: list = []
    lock = threading.Lock()

    def worker() -> None:
        while (key := q.get()) is not None:
            with lock:
                if key in holding:
                    clashes.append(key)
                holding.add(key)
            time.sleep(0.001)
            with lock:
                holding.discard(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(300):
        q.add(f"k{i % 3}")
    time.sleep(0.05)
    q.shutdown()
    for t in threads:
        t.join(timeout=2)
    assert (clashes, any(t.is_alive() for t in threads)) == ([], False)


class FakeClock:
    """Stands in for the queue's monotonic clock, so delays are stepped, not slept."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(workqueue, "time", fake)
    return fake


def after_delays(clock: FakeClock, adds: list[tuple[str, float]], wait: float, q: WorkQueue | None = None) -> list:
    """Delay each key, let `wait` seconds pass, and return what is then available."""
    q = q or WorkQueue()
    for key, delay in adds:
        q.add_after(key, delay)
    clock.advance(wait)
    return drain(q)


@pytest.mark.parametrize(
    "adds, wait, available",
    [
        ([("a", 10)], 9.9, []),
        ([("a", 10)], 10, ["a"]),
        ([("late", 20), ("early", 5), ("middle", 10)], 30, ["early", "middle", "late"]),
        ([("a", 60), ("a", 5), ("a", 30)], 5, ["a"]),
        ([("a", 0), ("b", -1)], 0, ["a", "b"]),
    ],
    ids=["not-before-due", "once-due", "due-order", "earliest-wins", "no-delay-is-immediate"],
)
def test_add_after(clock, adds, wait, available):
    assert after_delays(clock, adds, wait) == available


def test_add_after_fires_once_for_a_key_delayed_twice(clock):
    q = WorkQueue()
    first = after_delays(clock, [("a", 60), ("a", 5)], 5, q)
    assert (first, after_delays(clock, [], 60, q)) == (["a"], [])


def test_waiting_get_wakes_when_a_delayed_key_is_due():
    q = WorkQueue()
    start = time.monotonic()
    q.add_after("a", 0.03)
    assert (q.get(timeout=1), time.monotonic() - start >= 0.03) == ("a", True)


def test_add_after_of_a_queued_key_does_not_duplicate_it(clock):
    q = WorkQueue()
    q.add("a")
    assert after_delays(clock, [("a", 1)], 1, q) == ["a"]


def test_add_rate_limited_delays_grow_exponentially_to_the_cap():
    q = WorkQueue(base_delay=1.0, max_delay=10.0)
    assert [q.add_rate_limited("a") for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_add_rate_limited_counts_failures_per_key():
    q = WorkQueue(base_delay=1.0, max_delay=10.0)
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert (q.add_rate_limited("b"), q.failures("a"), q.failures("b")) == (1, 2, 1)


def test_forget_resets_the_rate_limit():
    q = WorkQueue(base_delay=1.0, max_delay=10.0)
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    q.forget("a")
    assert (q.failures("a"), q.add_rate_limited("a")) == (0, 1)


def test_add_rate_limited_requeues_the_key_after_its_delay(clock):
    q = WorkQueue(base_delay=2.0)
    q.add_rate_limited("a")
    before = q.get(timeout=NOW)
    clock.advance(2)
    assert (before, q.get(timeout=NOW)) == (None, "a")


def test_shutdown_unblocks_a_waiting_get():
    q = WorkQueue()
    got: list = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.02)
    q.shutdown()
    t.join(timeout=1)
    assert (t.is_alive(), got) == (False, [None])


def test_shutdown_unblocks_a_get_waiting_on_a_delayed_key():
    q = WorkQueue()
    q.add_after("a", 60)
    threading.Timer(0.02, q.shutdown).start()
    start = time.monotonic()
    assert (q.get(timeout=5), time.monotonic() - start < 1) == (None, True)


def test_adds_after_shutdown_are_ignored():
    q = WorkQueue()
    q.shutdown()
    q.add("a")
    q.add_after("b", 0.01)
    assert (len(q), q.get(timeout=NOW)) == (0, None)


def test_get_times_out_on_an_empty_queue():
    start = time.monotonic()
    assert (WorkQueue().get(timeout=0.03), time.monotonic() - start >= 0.03) == (None, True)
