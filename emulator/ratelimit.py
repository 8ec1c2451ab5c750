"""POST /token's rate limit: one token bucket per client key, as the real server keeps them.

The real server (``internal/api/apilimiter``) gives ``/token`` a tollbooth limiter over
golang.org/x/time/rate: ``GOTRUE_RATE_LIMIT_TOKEN_REFRESH`` requests per five minutes, burst 30,
one bucket per key shared by the password, refresh_token, id_token and pkce grants.
"""

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app, request

from .errors import ApiError

BURST = 30  # hard-coded by the real server
WINDOW = 5 * 60  # RATE_LIMIT_TOKEN_REFRESH counts requests per five minutes
MAX_KEYS = 10_000
SBFF_HEADER = "Sb-Forwarded-For"


class TokenBuckets:
    """Token buckets by key that refill ``rate`` tokens a second up to ``burst``; thread-safe.

    A bucket left alone for ``burst / rate`` seconds is full again, exactly like a new one, so
    it is forgotten; beyond ``max_keys`` the least recently used buckets go too.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float],
                 max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self.refill_seconds = burst / rate
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, at)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one token from the key's bucket; False (nothing taken) when it is empty."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            # A clock moved backwards refills nothing, as x/time/rate does.
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            self._forget(now)
        return allowed

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    def _forget(self, now: float) -> None:
        """Drop buckets from the least recently used end while they are full or too many."""
        while self._buckets:
            key, (_tokens, at) = next(iter(self._buckets.items()))
            if now - at < self.refill_seconds and len(self._buckets) <= self.max_keys:
                return
            del self._buckets[key]


def forwarded_address(value: str) -> str | None:
    """The leftmost Sb-Forwarded-For value if it is an IP address (as Go prints it), else None."""
    candidate = value.split(",", 1)[0].strip()
    if "%" in candidate:  # Go's net.ParseIP takes no IPv6 zone
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_key() -> str:
    """The request's bucket key: a valid Sb-Forwarded-For IP, the configured header, the peer.

    Without the configured header (or with an empty first value) the real server does not limit
    the request at all; the emulator, stricter, falls back to the connecting address.
    """
    config = current_app.config
    if config["SB_FORWARDED_FOR"]:
        address = forwarded_address(request.headers.get(SBFF_HEADER, ""))
        if address is not None:
            return address
    if config["RATE_LIMIT_HEADER"]:
        value = request.headers.get(config["RATE_LIMIT_HEADER"], "").split(",", 1)[0].strip()
        if value:
            return value
    return request.remote_addr or ""


def check_token_request() -> None:
    """429 over_request_rate_limit when the caller's /token bucket is empty."""
    if not current_app.extensions["emulator.token_limit"].allow(client_key()):
        raise ApiError(429, "over_request_rate_limit", "Request rate limit reached")


def init_app(app: Flask) -> None:
    """Create the /token limiter from RATE_LIMIT_TOKEN_REFRESH on the app's CLOCK."""
    rate = app.config["RATE_LIMIT_TOKEN_REFRESH"] / WINDOW
    app.extensions["emulator.token_limit"] = TokenBuckets(rate, BURST, app.config["CLOCK"])
