"""Keeping a signed-in session current: verified locally, re-checked with Supabase, refreshed.

Three kinds of call, chosen to spend as little of Supabase's budget as the promises allow:
- every request: the access token is verified locally (JWKS, cached claims), no call;
- every AUTH_REVALIDATE_SECONDS: GET /auth/v1/user, which Supabase does not rate-limit and which
  refuses a banned, deleted or signed-out session;
- about once per token lifetime: a refresh (POST /auth/v1/token, the rate-limited one), when
  the token is about to expire, when /user shows app_metadata other than Supabase handed over
  with the current tokens (a digest kept in the cookie: a custom access token hook may rewrite
  the token's own app_metadata), or that a verified MFA factor was removed while the token
  still says aal2.

/user also tells how many verified MFA factors the person has; the cookie keeps that number, so
whether a person at aal1 must answer a challenge is known on every request without a call.

When Supabase cannot be reached, the person is served from their still-valid token and calls
pause (supabase_client.Backoff): one retry per pause per process, everyone else served from
their token; only a token that can no longer be used gives a 503. When Supabase answers for one
session only (a refused or rate-limited refresh), that session waits on its own (a jittered
pause kept in its cookie) and nobody else's calls pause. Refreshes of still-valid tokens run a
few at a time, so a crowd due at once (Supabase back after an outage) is spread out.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from flask import current_app, flash, session
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.errors import AuthInvalidJwtError
from supabase_auth.helpers import decode_jwt
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from flask_storage import (
    APP_METADATA_DIGEST,
    MFA_FACTORS,
    app_metadata_digest,
    stored_tokens,
    verified_factors,
)
from supabase_client import extension, get_supabase
from supabase_errors import (
    REFRESH_ENDING,
    SESSION_ENDING,
    SUPABASE_ERRORS,
    Failure,
    classify,
    out_of_reach,
    retry_after,
)
from tokens import InvalidToken, KeysUnavailable, UnknownSigningKey, freeze

log = logging.getLogger(__name__)

REFRESH_MARGIN = 60  # seconds before expiry when a token is refreshed (a quarter of a short life)
CHECKED_AT = "checked_at"  # when /user last confirmed the session, kept with the tokens
# Until when this session makes no call that can wait (its last one was refused or
# rate-limited), kept with the tokens; gone with the next tokens or the next check.
RETRY_AT = "retry_at"
SESSION_PAUSE = 5  # seconds a session waits after such an answer (not a rate limit), at least
SESSION_ENDED = {
    "user_banned": "Your account has been suspended, so you have been signed out.",
    "user_not_found": "Your account no longer exists, so you have been signed out.",
}
SESSION_ENDED_DEFAULT = (
    "Your session has ended (it was signed out or revoked). Please sign in again.")


class SessionEnded(Exception):
    """Supabase says this browser's session is over (signed out, banned or deleted)."""


class SupabaseUnavailable(ServiceUnavailable):
    """503: Supabase could not help just now (unreachable, a pause after that, or a bad
    answer). A view that can show something without Supabase catches it."""


def current_claims(tokens: dict) -> Mapping:
    """The claims of the cookie's access token, after a refresh or a check when one is due.

    Raises InvalidToken for a token that was not issued by the project and SessionEnded when
    Supabase says the session is over; answers 503 (429 when rate-limited) when no valid token
    can be had.
    """
    try:
        claims = extension().tokens.verify(tokens["access_token"])
    except UnknownSigningKey as error:  # a rotated and revoked key, or a forgery
        log.info("refreshing a session whose token cannot be verified: %s", error)
        return _refresh(tokens, valid_claims=None)
    except KeysUnavailable as error:
        unavailable("checking your session", error, Failure.UNAVAILABLE)
    if claims is None:  # an HS256 project without SUPABASE_JWT_SECRET
        claims = _confirmed_by_server(tokens)
    now = time.time()
    if now >= claims["exp"]:
        return _refresh(tokens, valid_claims=None)
    if _waiting(tokens, now):  # this session's last call was refused: it waits on its own
        return claims
    if now >= claims["exp"] - _margin(claims):
        return _refresh(tokens, valid_claims=claims)
    if now - _checked_at(tokens, claims) >= current_app.config["AUTH_REVALIDATE_SECONDS"]:
        return _revalidate(tokens, claims)
    return claims


def trust(access_token: str) -> Mapping:
    """Claims of a token that Supabase itself just handed over; no signature check needed."""
    return extension().tokens.remember_issued(access_token,
                                              decode_jwt(access_token)["payload"])


def _revalidate(tokens: dict, claims: Mapping) -> Mapping:
    """Ask GET /user whether the session still stands; refresh when app_metadata changed."""
    if not extension().backoff.ready():
        return claims
    try:
        user = get_supabase().auth.get_user(tokens["access_token"]).user
    except SUPABASE_ERRORS as error:
        if getattr(error, "code", None) == "bad_jwt":  # e.g. its signing key was revoked
            extension().backoff.release()
            return _refresh(tokens, valid_claims=None)
        _not_answered(error, "checking your session", tokens, server_errors=True)
        return claims
    extension().backoff.succeeded()
    if _app_metadata_changed(tokens, claims, user.app_metadata):
        log.info("app_metadata changed in Supabase: refreshing so the token carries it")
        return _refresh(tokens, valid_claims=claims)
    factors = verified_factors(user.factors)
    if claims.get("aal") == "aal2" and factors < max(tokens.get(MFA_FACTORS, 0), 1):
        # Removed in the dashboard or by the admin API: the session may be aal1 now.
        log.info("a verified MFA factor was removed: refreshing so the token says the level")
        return _refresh(tokens, valid_claims=claims)
    _mark_checked(tokens, factors)
    return claims


def _app_metadata_changed(tokens: dict, claims: Mapping, app_metadata) -> bool:
    """Whether /user's app_metadata differs from what came with the current tokens.

    A cookie written before the digest was kept is compared with the token once; the refresh
    that follows a difference stores the digest.
    """
    seen = tokens.get(APP_METADATA_DIGEST)
    if not isinstance(seen, str):
        return freeze(app_metadata or {}) != claims.get("app_metadata", {})
    return app_metadata_digest(app_metadata) != seen


def fresh_user(doing: str):
    """The user as Supabase has it now, for a view (``GET /user``).

    A token Supabase calls invalid (its signing key was revoked since load_user checked it)
    is refreshed and asked about once more. Raises SessionEnded when the session is over;
    answers 503 when Supabase cannot answer.
    """
    try:
        return _user_now(doing)
    except SUPABASE_ERRORS as error:  # only the answers that end a session get here
        if getattr(error, "code", None) != "bad_jwt":
            raise _ended(error, doing) from error
    _refresh(stored_tokens(), valid_claims=None)  # onto a key Supabase still accepts
    try:
        return _user_now(doing)
    except SUPABASE_ERRORS as error:
        raise _ended(error, doing) from error


def _user_now(doing: str):
    with supabase_call(doing, server_errors=True):
        return get_supabase().auth.get_user(stored_tokens()["access_token"]).user


def refresh_now(claims: Mapping) -> None:
    """Refresh at once after a change Supabase made to this session (a factor removed here);
    while Supabase is away the person keeps the current token, as on any refresh."""
    tokens = stored_tokens()
    if tokens is None:
        return
    try:
        _refresh(tokens, valid_claims=claims)
    except SessionEnded as ended:
        session.pop(STORAGE_KEY, None)
        flash(str(ended), "warning")


def _refresh(tokens: dict, valid_claims: Mapping | None) -> Mapping:
    """Trade the refresh token for new tokens (FlaskSessionStorage stores them).

    With ``valid_claims`` the current token still works, so the refresh can wait: it happens
    only when one of the few places for such refreshes is free and calls are not paused, and a
    failure leaves the person on that token. Without, a failure that does not end the session
    is a 503 (a 429 when rate-limited).
    """
    if valid_claims is None:
        if not extension().backoff.ready():
            _paused("refreshing your session")
        return _refresh_now(tokens, valid_claims)
    spare = extension().spare_refreshes
    if not spare.acquire(blocking=False):
        return valid_claims  # enough refreshes under way; this one comes on a later page
    try:
        if not extension().backoff.ready():
            return valid_claims
        return _refresh_now(tokens, valid_claims)
    finally:
        spare.release()


def _refresh_now(tokens: dict, valid_claims: Mapping | None) -> Mapping:
    try:
        response = get_supabase().auth.refresh_session(tokens["refresh_token"])
    except SUPABASE_ERRORS as error:
        failure = _not_answered(error, "refreshing your session",
                                tokens if valid_claims is not None else None,
                                ending=REFRESH_ENDING)
        if valid_claims is not None:
            return valid_claims
        unavailable("refreshing your session", error, failure)
    extension().backoff.succeeded()
    # Without this, every refresh would hold the old token's claims in memory for an hour.
    extension().tokens.forget(tokens["access_token"])
    return trust(response.session.access_token)


def _confirmed_by_server(tokens: dict) -> Mapping:
    """Claims of a token only Supabase can verify (HS256 without the secret), checked there."""
    try:
        claims = decode_jwt(tokens["access_token"])["payload"]
    except AuthInvalidJwtError as error:
        raise InvalidToken(error.message) from error
    if not all(isinstance(claims.get(name), int) for name in ("exp", "iat")):
        raise InvalidToken("the token has no exp or iat")
    if time.time() >= claims["exp"] - _margin(claims):
        return freeze(claims)  # the refresh that follows asks the server anyway
    if not extension().backoff.ready():
        _paused("checking your session")
    try:
        user = get_supabase().auth.get_user(tokens["access_token"]).user
    except SUPABASE_ERRORS as error:
        # Unverified, the token cannot vouch for the person while Supabase is away.
        unavailable("checking your session",
                    error, _not_answered(error, "checking a token", None, server_errors=True))
    extension().backoff.succeeded()
    _mark_checked(tokens, verified_factors(user.factors))
    return extension().tokens.remember(tokens["access_token"], claims)


def _not_answered(error: Exception, doing: str, waiting: dict | None, *,
                  ending: frozenset[str] = SESSION_ENDING, server_errors: bool = False) -> Failure:
    """Sign out on an answer that ends the session; otherwise log and say why, pausing
    everyone's calls only when Supabase could not be reached, else the ``waiting`` session's
    alone (None: the person gets an error page, nothing waits)."""
    failure = classify(error, ending=ending)
    backoff = extension().backoff
    if failure is Failure.ENDED:
        backoff.release()
        raise _ended(error, doing) from error
    if out_of_reach(error, server_errors=server_errors):
        backoff.failed()
    else:
        backoff.release()
        if waiting is not None:
            _wait_before_retrying(waiting, failure, error)
    if failure is not Failure.MISCONFIGURED:  # that one was logged with what to fix
        log.warning("Supabase did not answer while %s (%s: %s); serving from the access token "
                    "while it is valid", doing, type(error).__name__, str(error)[:200])
    return failure


@contextmanager
def reported(server_errors: bool = False) -> Iterator[None]:
    """Tell the back-off what came of a call it allowed."""
    backoff = extension().backoff
    try:
        yield
    except SUPABASE_ERRORS as error:
        if out_of_reach(error, server_errors=server_errors):
            backoff.failed()
        else:
            backoff.release()
        raise
    except BaseException:
        backoff.release()  # the view gave up before learning anything
        raise
    backoff.succeeded()


def _wait_before_retrying(tokens: dict, failure: Failure, error: Exception) -> None:
    """This session waits a while before its next call that can wait; jittered, so that a
    crowd refused at once does not come back at once."""
    least = retry_after(error) if failure is Failure.RATE_LIMITED else SESSION_PAUSE
    tokens[RETRY_AT] = math.ceil(time.time() + least * random.uniform(1, 2))  # noqa: S311
    session.modified = True


def _waiting(tokens: dict, now: float) -> bool:
    retry_at = tokens.get(RETRY_AT)
    return isinstance(retry_at, int) and now < retry_at


def _ended(error: Exception, doing: str) -> SessionEnded:
    log.info("Supabase ended the session while %s: %s", doing, error.code)
    return SessionEnded(SESSION_ENDED.get(error.code, SESSION_ENDED_DEFAULT))


def unavailable(doing: str, error: Exception, failure: Failure) -> None:
    """Answer 503 (429 when Supabase's rate limit refused), saying whether the person is still
    signed in, and when to retry."""
    log.warning("Supabase unavailable while %s: %s: %s", doing, type(error).__name__,
                str(error)[:200])
    if failure is Failure.RATE_LIMITED:
        wait = retry_after(error)
        raise TooManyRequests(
            f"The sign-in service is busy: too many requests reached it from your network "
            f"while {doing}. {_still_signed_in()} try again in {wait} seconds.",
            retry_after=wait)
    raise SupabaseUnavailable(
        f"We could not reach the sign-in service while {doing}. {_still_signed_in()} try "
        f"again in a moment.", retry_after=_pause_left())


def _paused(doing: str) -> None:
    """503 without a call: Supabase could not be reached just now and calls are paused."""
    raise SupabaseUnavailable(
        f"We could not reach the sign-in service while {doing}. {_still_signed_in()} try "
        f"again in a moment.", retry_after=_pause_left() or 1)


def _still_signed_in() -> str:
    # At the callback nobody is signed in yet; telling them they are would mislead.
    return "You are still signed in; please" if stored_tokens() is not None else "Please"


def _pause_left() -> int | None:
    """Whole seconds until the back-off's pause ends, or None when there is none."""
    return math.ceil(extension().backoff.remaining()) or None


@contextmanager
def supabase_call(doing: str, expected: frozenset[str] = frozenset(), *,
                  server_errors: bool = False) -> Iterator[None]:
    """For views: 503 when Supabase cannot help (429 when rate-limited), at once while calls
    are paused; answers that end the session or that the view ``expected`` (error codes) are
    re-raised for it to handle."""
    if not extension().backoff.ready():
        _paused(doing)
    try:
        with reported(server_errors):
            yield
    except SUPABASE_ERRORS as error:
        failure = classify(error, expected)
        if failure in (Failure.ENDED, Failure.REFUSED):
            raise
        unavailable(doing, error, failure)


def _mark_checked(tokens: dict, factors: int) -> None:
    tokens[CHECKED_AT] = int(time.time())
    tokens.pop(RETRY_AT, None)
    if factors:
        tokens[MFA_FACTORS] = factors
    else:
        tokens.pop(MFA_FACTORS, None)
    session.modified = True  # a nested change: Flask would not notice it


def _checked_at(tokens: dict, claims: Mapping) -> float:
    """A token fresh from Supabase counts as a check at its issue time."""
    checked = tokens.get(CHECKED_AT)
    return max(checked if isinstance(checked, int) else 0, claims["iat"])


def _margin(claims: Mapping) -> float:
    return min(REFRESH_MARGIN, (claims["exp"] - claims["iat"]) / 4)
