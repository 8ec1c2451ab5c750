"""What a failed call to Supabase means for the person: one rule, used wherever the app calls it."""

from __future__ import annotations

import enum
import logging
import math
import threading
import time

import httpx
import pydantic
from supabase_auth.errors import AuthError
from werkzeug.http import parse_date

from tokens import KeysUnavailable

log = logging.getLogger(__name__)

# Everything a call through supabase_auth (or the app's own JWKS fetch) can raise.
SUPABASE_ERRORS = (AuthError, KeysUnavailable, httpx.HTTPError, pydantic.ValidationError)

# The answers that mean this browser's session is over. Nothing else signs a person out.
SESSION_ENDING = frozenset({
    "refresh_token_not_found",
    "refresh_token_already_used",
    "session_not_found",
    "session_expired",
    "user_banned",
    "user_not_found",
    "bad_jwt",  # the server itself calls the access token invalid
})
# A refresh sends nothing but the refresh token, so a validation error there ("Refresh token is
# not valid") is the server calling that token invalid, not a sign of a misconfigured app.
REFRESH_ENDING = SESSION_ENDING | {"validation_failed"}
# Statuses that say "not now" rather than "never": a retry may succeed.
PASSING_STATUSES = frozenset({408, 409, 429})
# What a gateway answers when it cannot reach Auth behind it (supabase_auth's own list).
GATEWAY_STATUSES = frozenset({502, 503, 504, 520, 521, 522, 523, 524, 530})
# POST /token's bucket at hosted defaults (GOTRUE_RATE_LIMIT_TOKEN_REFRESH, 150 per five
# minutes per address) gains one call every 2 s. The real server's 429 carries no Retry-After
# (tollbooth's LimitByKeys sets no header), so this is how long one more call takes to come.
TOKEN_REFILL_SECONDS = 2
LONGEST_RETRY_AFTER = 300  # a Retry-After beyond the limiter's five-minute window is not believed


class Failure(enum.Enum):
    """What a failed call means, and so what the app does about it."""

    ENDED = "the session is over: sign the person out"
    REFUSED = "an answer the caller expects (e.g. an expired sign-in link): show its page"
    RATE_LIMITED = "Supabase's rate limit: keep the session, try later"
    UNAVAILABLE = "no usable answer (network, timeout, 5xx, garbage): keep the session"
    MISCONFIGURED = "any other 4xx: the app's key or URL is wrong; keep the session"


def classify(error: Exception, expected: frozenset[str] = frozenset(),
             ending: frozenset[str] = SESSION_ENDING) -> Failure:
    """Sort a failed call: ``expected`` names the error codes the calling view handles itself,
    ``ending`` those that end the session (the caller may know more, see REFRESH_ENDING)."""
    status = _status(error)
    code = getattr(error, "code", None)
    if code in expected:
        return Failure.REFUSED
    if code in ending and status is not None and 400 <= status < 500:
        return Failure.ENDED
    if status == 429:
        return Failure.RATE_LIMITED
    if status is None or status < 300 or status >= 500 or status in PASSING_STATUSES:
        return Failure.UNAVAILABLE
    # A redirect (SUPABASE_URL is not the project's API) or any other 4xx: the app's settings.
    _log_misconfigured(status, code, error)
    return Failure.MISCONFIGURED


def out_of_reach(error: Exception, *, server_errors: bool = False) -> bool:
    """Whether a failed call means Supabase cannot be reached by anyone just now: no answer at
    all (network error, timeout), a gateway that cannot reach it, or, with ``server_errors``,
    any 5xx (for calls whose outcome no single session decides, such as GET /user).

    Only these pause everyone's calls; a refused or rate-limited session says nothing about
    anybody else's.
    """
    if isinstance(error, httpx.TransportError) or isinstance(error.__cause__,
                                                             httpx.TransportError):
        return True
    status = _status(error)
    return status is not None and (status in GATEWAY_STATUSES or (server_errors and status >= 500))


def retry_after(error: Exception, refill_seconds: float = TOKEN_REFILL_SECONDS) -> int:
    """Seconds until a rate-limited caller may try again: what Supabase's answer says
    (Retry-After, or RateLimit-Reset) when it says so, else the time its limiter takes to let
    one more call through (``refill_seconds``)."""
    answer = error if isinstance(error, httpx.HTTPStatusError) else error.__cause__
    said = _said_wait(answer.response.headers) if isinstance(answer,
                                                             httpx.HTTPStatusError) else None
    seconds = refill_seconds if said is None else said
    return max(1, min(LONGEST_RETRY_AFTER, math.ceil(seconds)))


def _said_wait(headers: httpx.Headers) -> float | None:
    """Seconds from Retry-After (seconds or an HTTP date) or RateLimit-Reset (seconds)."""
    for name in ("Retry-After", "RateLimit-Reset"):
        value = headers.get(name, "").strip()
        if value.isdigit():
            return float(value)
        when = parse_date(value) if name == "Retry-After" and value else None
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    return None


def _status(error: Exception) -> int | None:
    """The HTTP status behind an error, or None when no answer came (or none could be read)."""
    answer = error if isinstance(error, httpx.HTTPStatusError) else error.__cause__
    # supabase_auth raises its errors "from" httpx's, whatever the body was (JSON, HTML, none).
    return answer.response.status_code if isinstance(answer, httpx.HTTPStatusError) else None


_reported: set[tuple[int, str | None]] = set()
_reported_lock = threading.Lock()


def _log_misconfigured(status: int, code: str | None, error: Exception) -> None:
    # Once per process and kind of answer: every signed-in request would otherwise log it.
    with _reported_lock:
        if (status, code) in _reported:
            return
        _reported.add((status, code))
    log.error(
        "Supabase refused the app's request with %s %s (%s). People stay signed in while their "
        "tokens are valid, but nothing can be refreshed: check SUPABASE_KEY (the project's "
        "anon or publishable key) and SUPABASE_URL (https://<ref>.supabase.co).",
        status, code or "no error code", str(error)[:200])
