"""Refetched: max_age, min_interval, stale-if-error, and one fetch at a time across threads."""

from __future__ import annotations

import threading
import time

import pytest

from refetched import Refetched

MAX_AGE = 600.0
MIN_INTERVAL = 30.0
JOIN = 5.0  # seconds a test waits for a thread that should finish at once


class Clock:
    """A clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A fetch function: counts its calls, returns ``answer`` (None is a failure), and can be
    held inside a call until ``release`` is set."""

    def __init__(self, answer: object = "v1") -> None:
        self.answer = answer
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Make the next calls wait inside the fetch until ``release`` is set."""
        self.started.clear()
        self.release.clear()

    def __call__(self) -> object:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            assert self.release.wait(JOIN), "the test never released the fetch"
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def source():
    return Source()


@pytest.fixture
def make(clock, source):
    def build(wait: float = JOIN) -> Refetched:
        return Refetched(source, max_age=MAX_AGE, min_interval=MIN_INTERVAL, wait=wait,
                         clock=clock)
    return build


def in_thread(function) -> tuple[threading.Thread, list]:
    """Run ``function`` in a started thread; its result lands in the returned list."""
    results: list = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    return thread, results


def test_get_fetches_on_first_use(make, source):
    assert make().get() == "v1"
    assert source.calls == 1


@pytest.mark.parametrize(("age", "calls"), [
    (0.0, 1),
    (MAX_AGE, 1),
    (MAX_AGE + 0.001, 2),
])
def test_get_refetches_only_a_value_older_than_max_age(make, clock, source, age, calls):
    cached = make()
    cached.get()
    source.answer = "v2"
    clock.now += age
    assert cached.get() == ("v1" if calls == 1 else "v2")
    assert source.calls == calls


@pytest.mark.parametrize(("elapsed", "calls", "value"), [
    (0.0, 1, "v1"),
    (MIN_INTERVAL - 0.001, 1, "v1"),
    (MIN_INTERVAL, 2, "v2"),
])
def test_refetch_is_refused_within_min_interval_once_a_value_exists(
        make, clock, source, elapsed, calls, value):
    cached = make()
    cached.refetch()
    source.answer = "v2"
    clock.now += elapsed
    assert cached.refetch() == value
    assert source.calls == calls


def test_without_a_value_every_refetch_tries(make, source):
    source.answer = None
    cached = make()
    assert [cached.refetch() for _ in range(3)] == [None, None, None]
    assert source.calls == 3


def test_a_failed_fetch_keeps_the_last_good_value(make, clock, source):
    cached = make()
    cached.get()
    source.answer = None
    clock.now += MAX_AGE + 1
    assert cached.get() == "v1"
    assert source.calls == 2


def test_a_failed_fetch_counts_as_a_try_for_min_interval(make, clock, source):
    cached = make()
    cached.get()
    source.answer = None
    clock.now += MAX_AGE + 1
    cached.get()  # fails: the value stays stale
    source.answer = "v2"
    clock.now += MIN_INTERVAL - 0.001
    assert cached.get() == "v1"
    assert source.calls == 2


def test_the_next_try_after_a_failed_fetch_comes_after_min_interval(make, clock, source):
    cached = make()
    cached.get()
    source.answer = None
    clock.now += MAX_AGE + 1
    cached.get()
    source.answer = "v2"
    clock.now += MIN_INTERVAL
    assert cached.get() == "v2"
    assert source.calls == 3


@pytest.mark.parametrize("method", ["get", "refetch", "both"])
def test_one_fetch_at_a_time_serves_every_thread(make, source, method):
    cached = make()
    source.hold()
    start = threading.Barrier(8)

    def ask(index: int) -> object:
        start.wait()
        use_get = method == "get" or (method == "both" and index % 2 == 0)
        return cached.get() if use_get else cached.refetch()

    threads = [in_thread(lambda index=index: ask(index)) for index in range(8)]
    assert source.started.wait(JOIN)
    time.sleep(0.1)  # time for the other seven to find the fetch under way
    source.release.set()
    for thread, _ in threads:
        thread.join(JOIN)
    assert source.calls == 1
    assert source.most_at_once == 1
    assert [results for _, results in threads] == [["v1"]] * 8


def test_a_thread_without_a_value_waits_for_the_fetch_under_way(make, source):
    cached = make()
    source.hold()
    fetching, _ = in_thread(cached.refetch)
    assert source.started.wait(JOIN)
    waiting, results = in_thread(cached.get)
    waiting.join(0.1)
    assert waiting.is_alive()  # still waiting for the other thread's fetch
    source.release.set()
    waiting.join(JOIN)
    fetching.join(JOIN)
    assert results == ["v1"]
    assert source.calls == 1


def test_waiting_for_the_fetch_under_way_is_bounded_by_wait(make, source):
    cached = make(wait=0.05)
    source.hold()
    fetching, _ = in_thread(cached.refetch)
    assert source.started.wait(JOIN)
    waiting, results = in_thread(cached.get)
    waiting.join(JOIN)
    still_fetching = not source.release.is_set()
    source.release.set()
    fetching.join(JOIN)
    assert still_fetching
    assert results == [None]
    assert source.calls == 1


@pytest.mark.parametrize("method", ["get", "refetch"])
def test_a_thread_with_a_value_does_not_wait_for_another_threads_fetch(
        make, clock, source, method):
    cached = make(wait=60)
    cached.get()
    clock.now += MAX_AGE + 1
    source.answer = "v2"
    source.hold()
    fetching, _ = in_thread(cached.refetch)
    assert source.started.wait(JOIN)
    asking, results = in_thread(getattr(cached, method))
    asking.join(JOIN)
    answered_during_fetch = not asking.is_alive()
    source.release.set()
    fetching.join(JOIN)
    assert answered_during_fetch
    assert results == ["v1"]
    assert source.calls == 2


def test_an_exception_from_fetch_propagates(make, source):
    source.answer = RuntimeError("the network broke")
    with pytest.raises(RuntimeError, match="the network broke"):
        make().refetch()


@pytest.mark.parametrize("had_value", [False, True])
def test_an_exception_from_fetch_does_not_leave_it_stuck(make, clock, source, had_value):
    cached = make()
    if had_value:
        cached.get()
    source.answer = RuntimeError("the network broke")
    clock.now += MIN_INTERVAL
    with pytest.raises(RuntimeError):
        cached.refetch()
    source.answer = "v2"
    clock.now += MIN_INTERVAL
    assert cached.refetch() == "v2"
    assert source.calls == (3 if had_value else 2)


# -- may_fetch, the fallback and put ----------------------------------------------------------

class Gate:
    """A may_fetch that says ``open`` and counts how often it was asked."""

    def __init__(self, open: bool = True) -> None:
        self.open = open
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.open


def test_a_closed_gate_means_no_fetch_and_no_try(clock, source):
    gate = Gate(open=False)
    cached = Refetched(source, max_age=MAX_AGE, min_interval=MIN_INTERVAL, wait=JOIN,
                       clock=clock, may_fetch=gate)
    cached.get()
    assert source.calls == 0
    gate.open = True
    assert cached.get() == "v1"  # nothing was tried, so nothing holds the next one back
    assert source.calls == 1


def test_the_gate_is_asked_only_when_a_fetch_would_start(clock, source):
    gate = Gate()
    cached = Refetched(source, max_age=MAX_AGE, min_interval=MIN_INTERVAL, wait=JOIN,
                       clock=clock, may_fetch=gate)
    cached.get()
    for _ in range(5):
        cached.get()
        cached.refetch()  # within min_interval: refused before the gate is asked
    assert gate.asked == 1


def make_with_fallback(clock, source, kept="kept", gate=None) -> Refetched:
    return Refetched(source, max_age=MAX_AGE, min_interval=MIN_INTERVAL, wait=JOIN, clock=clock,
                     fallback=lambda: kept, may_fetch=gate or Gate())


def test_the_fallback_stands_in_while_nothing_was_fetched_and_fetching_fails(clock, source):
    source.answer = None
    cached = make_with_fallback(clock, source)
    assert cached.get() == "kept"
    assert source.calls == 1


def test_the_fallback_stands_in_while_the_gate_is_closed(clock, source):
    cached = make_with_fallback(clock, source, gate=Gate(open=False))
    assert cached.get() == "kept"
    assert source.calls == 0


def test_the_fallback_does_not_count_as_fetched(clock, source):
    source.answer = None
    cached = make_with_fallback(clock, source)
    cached.get()
    source.answer = "fresh"
    clock.now += MIN_INTERVAL - 0.001
    assert cached.get() == "kept"  # one try per min_interval, as with any value in hand
    clock.now += 0.001
    assert cached.get() == "fresh"  # well before max_age: the fallback was never fetched
    assert source.calls == 2


def test_the_fallback_is_not_used_once_something_was_fetched(clock, source):
    cached = make_with_fallback(clock, source)
    cached.get()
    source.answer = None
    clock.now += MAX_AGE + 1
    assert cached.get() == "v1"


@pytest.mark.parametrize(("put", "expected"), [("at-start", "at-start"), (None, "kept")])
def test_put_counts_as_a_try(clock, source, put, expected):
    cached = make_with_fallback(clock, source)
    cached.put(put)
    assert cached.get() == expected
    assert source.calls == 0  # within min_interval of the try made at start
