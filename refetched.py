"""A value fetched over the network and kept between fetches (the JWKS, the project's settings)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _always() -> bool:
    return True


def _nothing() -> None:
    return None


class Refetched(Generic[T]):
    """Keeps the last good answer of ``fetch``, which returns None when it could not get one.

    At most one fetch runs at a time and, once a value is in hand, none starts within
    ``min_interval`` seconds of the previous one, so a burst of requests (say, tokens naming an
    unknown key) cannot turn into a burst of calls. When a fetch fails,
    the last good value stays in use (stale-if-error). No lock is held while waiting on the
    network: a thread that finds a fetch under way uses the value it has, and waits for that
    fetch only when it has none at all.

    ``may_fetch`` is asked just before a fetch would start (False: none starts, and none was
    tried). ``fallback`` gives a value kept elsewhere (a copy on disk) while nothing was ever
    fetched and fetching fails; it is never counted as fetched, so fetching goes on.
    """

    def __init__(self, fetch: Callable[[], T | None], *, max_age: float, min_interval: float,
                 wait: float, clock: Callable[[], float] = time.monotonic,
                 may_fetch: Callable[[], bool] = _always,
                 fallback: Callable[[], T | None] = _nothing) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._min_interval = min_interval
        self._wait = wait
        self._clock = clock
        self._may_fetch = may_fetch
        self._fallback = fallback
        self._value: T | None = None
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._under_way: threading.Event | None = None
        self._lock = threading.Lock()

    def get(self) -> T | None:
        """The value, refetched first when it is older than ``max_age``; None if never fetched."""
        if self._clock() - self._fetched_at > self._max_age:
            return self.refetch()
        return self._value

    def refetch(self) -> T | None:
        """Fetch now, unless a fetch is under way or was tried within ``min_interval``."""
        with self._lock:
            under_way = self._under_way
            # With nothing to fall back on, every request may try (one at a time).
            allowed = self._value is None or self._clock() - self._tried_at >= self._min_interval
            if under_way is None and allowed:
                self._under_way = done = threading.Event()
            else:
                done = None
        if done is None:
            if under_way is not None and self._value is None:
                under_way.wait(self._wait)
            return self._value
        try:
            if self._may_fetch():
                self._tried_at = self._clock()
                self._keep(self._fetch())
            elif self._value is None:
                self._value = self._fallback()
        finally:
            with self._lock:
                self._under_way = None
            done.set()
        return self._value

    def put(self, value: T | None) -> None:
        """The outcome of a fetch made by the caller (None: it failed), e.g. at start."""
        with self._lock:
            self._tried_at = self._clock()
            self._keep(value)

    def _keep(self, value: T | None) -> None:
        if value is not None:
            self._value, self._fetched_at = value, self._clock()
        elif self._value is None:
            self._value = self._fallback()
