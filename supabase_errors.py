"""What a failed call to Supabase means for the person: one rule, used wherever the app calls it."""

from __future__ import annotations

import enum
import logging
import threading

import httpx
import pydantic
from supabase_auth.errors import AuthError

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
