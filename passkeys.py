"""Passkeys: sign in with one in one touch, and add, rename and remove them on /account.

Supabase Auth does the WebAuthn work (its ``/passkeys`` API; supabase-py has no methods for it,
so the app calls it over the shared HTTP pool with the project key, and the person's address
in Sb-Forwarded-For as on every call made for them). The app asks for options, hands them to
the browser (static/passkeys.js calls ``navigator.credentials``), and posts what the browser
signed back to Supabase's verify. Which options a browser was given is kept in its cookie (at
most MAX_CEREMONIES, matched by the challenge the browser signed), so the page never holds a
challenge id and each one is sent to Supabase at most once from here.

A passkey sign-in is stored exactly like the PKCE callback's (auth.session_started): the same
cookie, revalidation and two-factor rule. Supabase gives it aal1, because a passkey is a first
factor there, not an MFA factor: a person with a verified authenticator app still enters a
code before any signed-in page.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required
from supabase_auth.constants import (
    API_VERSION_HEADER_NAME,
    API_VERSIONS_2024_01_01_NAME,
    STORAGE_KEY,
)
from supabase_auth.errors import AuthRetryableError
from supabase_auth.helpers import handle_exception, parse_auth_response

import auth
import instance_data
from flask_storage import FlaskSessionStorage, stored_tokens
from sessions import reported, unavailable
from supabase_client import FORWARDED_FOR, client_address, extension
from supabase_errors import SUPABASE_ERRORS, Failure, classify, refused_by_hook, retry_after

log = logging.getLogger(__name__)
bp = Blueprint("passkeys", __name__)

CEREMONIES_KEY = "passkey_ceremonies"  # options given to this browser: kind, id, challenge
MAX_CEREMONIES = 3  # a few tabs at once, small enough for the cookie
CEREMONY_GRACE = 600  # seconds a used-up ceremony is kept past its expiry, to say "expired"
SIGN_IN, REGISTRATION = "signin", "registration"
# Supabase lets one address ask for sign-in options 30 times per five minutes: one more every
# 10 seconds once the burst is spent (GOTRUE_RATE_LIMIT_PASSKEY).
OPTIONS_REFILL_SECONDS = 10
OFFERED_KEY = "passkey_offered"  # the Supabase session the enrolment offer was made for
MAX_CREDENTIAL = 16_384  # characters: an assertion or attestation is well under 2 KB
MAX_NAME_BYTES = 120  # Supabase's limit for a passkey's name
UUID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
DISMISSED = "passkeys.dismissed"  # app.extensions key of the shared database
SCHEMA = """
    CREATE TABLE IF NOT EXISTS passkey_offer_dismissed (
        user_id TEXT PRIMARY KEY,
        dismissed_at REAL NOT NULL
    );
"""
DISABLED = ("Passkeys are turned off for this site right now. Please sign in another way, "
            "such as with GitHub.")
# Refusals of a passkey sign-in: error code -> (status, what the person is told).
SIGN_IN_REFUSALS = {
    "webauthn_verification_failed": (
        401, "This passkey is not registered with this site, or it was removed from your "
             "account. Sign in with GitHub instead; on your account page you can add a new "
             "passkey (and delete the old one from your device or password manager)."),
    "validation_failed": (
        401, "This passkey is not registered with this site, or it was removed from your "
             "account. Sign in with GitHub instead, then add a new passkey on your account "
             "page."),
    "webauthn_challenge_expired": (
        400, "The passkey request expired (it lasts five minutes). Please try again."),
    "webauthn_challenge_not_found": (
        400, "This passkey request was already used. Please try again."),
    "user_banned": (403, "This account has been suspended. Contact the site's team if you "
                         "think this is a mistake."),
    "email_not_confirmed": (403, "Your email address is not confirmed yet. Follow the "
                                 "confirmation email, then sign in again."),
    "phone_not_confirmed": (403, "Your phone number is not confirmed yet. Confirm it, then sign "
                                 "in again."),
    "passkey_disabled": (404, DISABLED),
}
# Refusals while adding, renaming or removing one: error code -> what the person is told.
MANAGE_REFUSALS = {
    "too_many_passkeys": "You have as many passkeys as this site allows. Remove one you no "
                         "longer use, then add the new one.",
    "webauthn_credential_exists": "This passkey is already on your account.",
    "webauthn_verification_failed": "Your device's answer could not be verified, so no passkey "
                                    "was added. Please try again.",
    "webauthn_challenge_expired": "Adding the passkey took too long (the request lasts five "
                                  "minutes). Please try again.",
    "webauthn_challenge_not_found": "This passkey request was already used. Please try again.",
    "insufficient_aal": "Enter a code from your authenticator app first, then try again.",
    "validation_failed": "That passkey was not found; it may have been removed already.",
    "passkey_disabled": "Passkeys are turned off for this site right now.",
    "no_authorization": "Your session cannot manage passkeys. Please sign in again.",
}

# Asking for registration options, validation_failed is Supabase refusing an SSO account.
OPTIONS_REFUSALS = {
    **MANAGE_REFUSALS,
    "validation_failed": "Accounts that sign in through your organisation's single sign-on "
                         "cannot add passkeys here.",
}


class Unanswered(Exception):
    """Supabase gave no usable answer (down, rate-limited, or a 5xx); the message says so, and
    ``retry`` how many seconds to wait when Supabase said."""

    def __init__(self, status: int, message: str, retry: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry = retry


def init_app(app: Flask) -> None:
    """The pages, and ``passkeys_enabled()`` / ``passkey_offer()`` for the templates."""
    app.register_blueprint(bp)
    app.add_template_global(enabled, "passkeys_enabled")
    app.add_template_global(offer, "passkey_offer")
    app.add_template_global(passkeys_section)


def enabled() -> bool:
    """PASSKEYS_ENABLED, or else what the project's /settings says (on while it is unknown:
    Supabase then answers for itself)."""
    setting = current_app.config["PASSKEYS_ENABLED"]
    if setting is not None:
        return bool(setting)
    return extension().settings.passkeys_enabled() is not False


@bp.before_request
def require_enabled() -> None:
    """Every passkey page is a 404 while passkeys are off."""
    if not enabled():
        abort(404, description=DISABLED)


# --- calling Supabase ------------------------------------------------------------------------


def call(method: str, path: str, body: dict | None = None, *, as_person: bool = False):
    """One call to Supabase Auth's passkey API, for the person at this browser; raises what
    supabase_auth raises for a refused or failed call."""
    shared = extension()
    if not shared.backoff.ready():  # Supabase was out of reach moments ago: no call, no wait
        raise AuthRetryableError("calls to Supabase are paused", 0)
    headers = {"apikey": shared.key, API_VERSION_HEADER_NAME: API_VERSIONS_2024_01_01_NAME}
    address = client_address()
    if address is not None:
        headers[FORWARDED_FOR] = address
    if as_person:
        headers["Authorization"] = f"Bearer {stored_tokens()['access_token']}"
    with reported():  # the back-off learns whether Supabase answered
        try:
            response = shared.http.request(method, f"{shared.url}/auth/v1/{path}",
                                           headers=headers, json=body)
            response.raise_for_status()
        except (httpx.HTTPStatusError, httpx.RequestError) as error:
            raise handle_exception(error) from error
    return response


def _unanswered(error: Exception, failure: Failure, doing: str) -> Unanswered:
    log.warning("Supabase did not answer while %s: %s: %s", doing, type(error).__name__,
                str(error)[:200])
    if failure is Failure.RATE_LIMITED:
        wait = retry_after(error, OPTIONS_REFILL_SECONDS)
        return Unanswered(429, f"Too many passkey requests came from your network. Please try "
                               f"again in {wait} seconds.", wait)
    return Unanswered(503, f"We could not reach the sign-in service while {doing}. Please try "
                           "again in a moment.")


def _options(kind: str, path: str, doing: str, expected: frozenset[str]) -> dict:
    """Ask Supabase for options, remember the ceremony in the cookie; the options for the
    browser (nothing else: the challenge id stays here)."""
    try:
        answer = call("POST", path, {}, as_person=kind == REGISTRATION).json()
        options, challenge_id = answer["options"], answer["challenge_id"]
        challenge, expires_at = options["challenge"], int(answer["expires_at"])
    except SUPABASE_ERRORS as error:
        failure = classify(error, expected)
        if failure in (Failure.REFUSED, Failure.ENDED):
            raise
        raise _unanswered(error, failure, doing) from error
    except (ValueError, KeyError, TypeError) as error:
        raise _unanswered(error, Failure.UNAVAILABLE, doing) from error
    ceremonies = [c for c in _ceremonies() if c["id"] != challenge_id]
    ceremonies.append({"kind": kind, "id": challenge_id, "challenge": challenge,
                       "expires_at": expires_at})
    session[CEREMONIES_KEY] = ceremonies[-MAX_CEREMONIES:]
    return options


def _ceremonies() -> list[dict]:
    """The ceremonies this browser was given options for and has not used, newest last."""
    kept = session.get(CEREMONIES_KEY)
    oldest = time.time() - CEREMONY_GRACE
    if not isinstance(kept, list):
        return []
    return [c for c in kept if isinstance(c, dict) and c.get("kind") in (SIGN_IN, REGISTRATION)
            and all(isinstance(c.get(name), str) for name in ("id", "challenge"))
            and isinstance(c.get("expires_at"), int) and c["expires_at"] > oldest]


def _take_ceremony(kind: str, credential: dict) -> dict | None:
    """The ceremony whose challenge the browser signed, removed from the cookie (one use)."""
    signed = _signed_challenge(credential)
    ceremonies = _ceremonies()
    found = next((c for c in ceremonies if c["kind"] == kind and c["challenge"] == signed), None)
    rest = [c for c in ceremonies if c is not found]
    if rest:
        session[CEREMONIES_KEY] = rest
    else:
        session.pop(CEREMONIES_KEY, None)
    return found


def _signed_challenge(credential: dict) -> str | None:
    """The challenge in the credential's clientDataJSON (base64url JSON), or None."""
    response = credential.get("response")
    raw = response.get("clientDataJSON") if isinstance(response, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        client_data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    challenge = client_data.get("challenge") if isinstance(client_data, dict) else None
    return challenge.rstrip("=") if isinstance(challenge, str) else None


def _posted_credential() -> dict | None:
    """The credential the browser posted (PublicKeyCredential.toJSON()), or None."""
    raw = request.form.get("credential", "")
    if not raw or len(raw) > MAX_CREDENTIAL:
        return None
    try:
        credential = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(credential, dict) or credential.get("type") != "public-key" or \
            not isinstance(credential.get("id"), str) or \
            not isinstance(credential.get("response"), dict):
        return None
    return credential


def _json_failure(status: int, message: str, retry: int | None = None, **extra: str):
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    return {"message": message, **extra}, status, headers


# --- signing in ------------------------------------------------------------------------------


@bp.post("/passkeys/signin/options")
def signin_options():
    """Options for ``navigator.credentials.get()`` (JSON, for static/passkeys.js)."""
    try:
        options = _options(SIGN_IN, "passkeys/authentication/options",
                           "starting a passkey sign-in", frozenset({"passkey_disabled"}))
    except Unanswered as error:
        return _json_failure(error.status, error.message, error.retry)
    except SUPABASE_ERRORS as error:  # passkey_disabled, or an answer that ends a session
        status, message = SIGN_IN_REFUSALS.get(error.code, (
            503, "The sign-in service refused to start a passkey sign-in. Please try again in "
                 "a moment, or sign in another way."))
        return _json_failure(status, message)
    return {"options": options}


@bp.post("/passkeys/signin")
def signin():
    """Send what the browser signed to Supabase; signed in as after the GitHub callback."""
    next_path = auth.safe_next(request.form.get("next")) or url_for("pages.index")
    credential = _posted_credential()
    if credential is None:
        return _sign_in_failed(400, "Your browser's passkey answer could not be read. Please "
                                    "try again.")
    ceremony = _take_ceremony(SIGN_IN, credential)
    if ceremony is None:
        return _sign_in_failed(400, "This passkey request was already used, or it was started "
                                    "in another browser. Please try again.")
    previous = stored_tokens()
    try:
        response = call("POST", "passkeys/authentication/verify",
                        {"challenge_id": ceremony["id"], "credential": credential})
        result = parse_auth_response(response)
    except SUPABASE_ERRORS as error:
        return _sign_in_refused(error)
    if result.session is None:
        unavailable("signing you in with a passkey", RuntimeError("no session in the answer"),
                    Failure.UNAVAILABLE)
    FlaskSessionStorage().set_item(STORAGE_KEY, result.session.model_dump_json())
    log.info("signed in with a passkey")
    return auth.session_started(previous, next_path)


def _sign_in_refused(error: Exception):
    if refused_by_hook(error):
        log.info("passkey sign-in refused by the project's custom access token hook")
        return _sign_in_failed(403, auth.hook_refusal(error))
    failure = classify(error, expected=frozenset(SIGN_IN_REFUSALS))
    if failure is not Failure.REFUSED:
        unavailable("signing you in with a passkey", error, failure)  # 429 or 503
    log.info("passkey sign-in refused: %s", error.code)
    status, message = SIGN_IN_REFUSALS[error.code]
    return _sign_in_failed(status, message)


def _sign_in_failed(status: int, message: str):
    return render_template("signin_failed.html", message=message), status


# --- the person's passkeys -------------------------------------------------------------------


def own_passkeys() -> list[dict]:
    """The signed-in person's passkeys (GET /passkeys), oldest first; raises like ``call``."""
    listed = call("GET", "passkeys", as_person=True).json()
    if not isinstance(listed, list):
        raise ValueError("GET /passkeys did not answer a list")
    return [_listed(item) for item in listed if isinstance(item, dict)
            and isinstance(item.get("id"), str)]


def _listed(item: dict) -> dict:
    return {"id": item["id"], "name": item.get("friendly_name") or "Passkey",
            "created_at": _when(item.get("created_at")),
            "last_used_at": _when(item.get("last_used_at"))}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def passkeys_section() -> dict:
    """What /account shows about passkeys: the list, or why there is none."""
    if not enabled():
        return {"state": "off"}
    try:
        return {"state": "ok", "passkeys": own_passkeys()}
    except (*SUPABASE_ERRORS, ValueError) as error:
        log.warning("could not list passkeys: %s: %s", type(error).__name__, str(error)[:200])
        return {"state": "unavailable"}


@bp.post("/account/passkeys/options")
@login_required
def registration_options():
    """Options for ``navigator.credentials.create()`` (JSON, for static/passkeys.js)."""
    if not auth.signed_in_recently():
        minutes = max(current_app.config["AUTH_RECENT_SIGN_IN_SECONDS"] // 60, 1)
        return _json_failure(
            403, f"For your security, adding a passkey needs a sign-in from the last "
                 f"{minutes} minutes.", href=url_for("passkeys.sign_in_again"),
            link="Sign in again")
    try:
        options = _options(REGISTRATION, "passkeys/registration/options", "adding a passkey",
                           frozenset(OPTIONS_REFUSALS))
    except Unanswered as error:
        return _json_failure(error.status, error.message, error.retry)
    except SUPABASE_ERRORS as error:
        if classify(error, frozenset(OPTIONS_REFUSALS)) is Failure.ENDED:
            session.pop(STORAGE_KEY, None)
            return _json_failure(401, "Your session has ended. Please sign in again.",
                                 href=url_for("auth.signin_page"), link="Sign in")
        log.info("passkey registration options refused: %s", error.code)
        return _json_failure(404 if error.code == "passkey_disabled" else 400,
                             OPTIONS_REFUSALS[error.code])
    return {"options": options}


@bp.get("/account/passkeys/sign-in-again")
@login_required
def sign_in_again():
    """Sign in again before adding a passkey; back to /account."""
    return auth.ask_to_sign_in_again(url_for("account.index"), "add a passkey")


@bp.post("/account/passkeys")
@login_required
def add():
    """Send the new passkey the browser made to Supabase; back to /account."""
    if not auth.signed_in_recently():
        return auth.ask_to_sign_in_again(url_for("account.index"), "add a passkey")
    credential = _posted_credential()
    ceremony = _take_ceremony(REGISTRATION, credential) if credential is not None else None
    if ceremony is None:
        return _back_to_account(
            "Your browser's passkey answer could not be read, or this request was already "
            "used. Please try adding the passkey again.")
    try:
        with _managing("saving your passkey"):
            added = call("POST", "passkeys/registration/verify",
                         {"challenge_id": ceremony["id"], "credential": credential},
                         as_person=True).json()
    except SUPABASE_ERRORS as error:
        return _back_to_account(MANAGE_REFUSALS[error.code])
    name = added.get("friendly_name") if isinstance(added, dict) else None
    session.pop(OFFERED_KEY, None)
    flash(f"Passkey added{f' ({name})' if isinstance(name, str) else ''}. Next time, sign in "
          "with it in one touch.", "success")
    return redirect(url_for("account.index") + "#passkeys-title")


@bp.get("/account/passkeys/<passkey_id>/rename")
@login_required
def rename_page(passkey_id: str):
    """A form to give a passkey a name the person recognises."""
    return render_template("passkey_rename.html", passkey=_own_passkey(passkey_id))


@bp.post("/account/passkeys/<passkey_id>/rename")
@login_required
def rename(passkey_id: str):
    """Rename a passkey (only the name changes, so no recent sign-in is needed)."""
    passkey_id = _passkey_id(passkey_id)
    name = " ".join((request.form.get("name") or "").split())
    problem = ("Enter a name." if not name else
               "That name is too long (at most 120 characters)."
               if len(name.encode()) > MAX_NAME_BYTES else None)
    if problem:
        passkey = _own_passkey(passkey_id)
        return render_template("passkey_rename.html", passkey=passkey, message=problem,
                               name=name), 400
    try:
        with _managing("renaming your passkey"):
            call("PATCH", f"passkeys/{passkey_id}", {"friendly_name": name}, as_person=True)
    except SUPABASE_ERRORS as error:
        return _back_to_account(MANAGE_REFUSALS[error.code])
    flash(f"Passkey renamed to “{name}”.", "success")
    return redirect(url_for("account.index") + "#passkeys-title")


@bp.get("/account/passkeys/<passkey_id>/remove")
@login_required
def confirm_remove(passkey_id: str):
    """Ask before removing a passkey."""
    return render_template("passkey_remove.html", passkey=_own_passkey(passkey_id))


@bp.post("/account/passkeys/<passkey_id>/remove")
@login_required
def remove(passkey_id: str):
    """Remove a passkey after a recent sign-in; it can no longer sign anyone in."""
    passkey_id = _passkey_id(passkey_id)
    if not auth.signed_in_recently():
        return auth.ask_to_sign_in_again(
            url_for("passkeys.confirm_remove", passkey_id=passkey_id), "remove a passkey")
    try:
        with _managing("removing your passkey"):
            call("DELETE", f"passkeys/{passkey_id}", as_person=True)
    except SUPABASE_ERRORS as error:
        return _back_to_account(MANAGE_REFUSALS[error.code])
    flash("Passkey removed: it can no longer sign you in. You can also delete it from your "
          "device or password manager.", "success")
    return redirect(url_for("account.index") + "#passkeys-title")


def _passkey_id(value: str) -> str:
    if not UUID.fullmatch(value):
        abort(404, description="That passkey was not found; it may have been removed already.")
    return value


def _own_passkey(passkey_id: str) -> dict:
    passkey_id = _passkey_id(passkey_id)
    try:
        with _managing("loading your passkeys"):
            passkeys = own_passkeys()
    except SUPABASE_ERRORS as error:
        abort(_back_to_account(MANAGE_REFUSALS[error.code]))
    except ValueError as error:
        unavailable("loading your passkeys", error, Failure.UNAVAILABLE)
    found = next((p for p in passkeys if p["id"] == passkey_id), None)
    if found is None:
        abort(404, description="That passkey was not found; it may have been removed already.")
    return found


@contextmanager
def _managing(doing: str) -> Iterator[None]:
    """For management views: refusals in MANAGE_REFUSALS are re-raised for the view; an ended
    session signs the person out; anything else is a page that says Supabase did not answer."""
    try:
        yield
    except SUPABASE_ERRORS as error:
        failure = classify(error, frozenset(MANAGE_REFUSALS))
        if failure is Failure.REFUSED:
            raise
        if failure is Failure.ENDED:
            session.pop(STORAGE_KEY, None)
            flash("Your session has ended. Please sign in again.", "warning")
            abort(redirect(url_for("auth.signin_page", next=url_for("account.index"))))
        if failure is Failure.UNAVAILABLE and _answered_with_error(error):
            # e.g. the real server's 500 for a passkey it already has (v2.196)
            log.warning("Supabase failed while %s: %s", doing, str(error)[:200])
            abort(502, description=f"The sign-in service had a problem while {doing}. Reload "
                                   "your account page to see what changed, then try again in "
                                   "a moment.")
        unavailable(doing, error, failure)


def _answered_with_error(error: Exception) -> bool:
    """Supabase answered 5xx (it was reached, but failed), rather than not at all."""
    answer = error if isinstance(error, httpx.HTTPStatusError) else error.__cause__
    return isinstance(answer, httpx.HTTPStatusError) and answer.response.status_code >= 500


def _back_to_account(message: str):
    flash(message, "warning")
    return redirect(url_for("account.index") + "#passkeys-title")


# --- offering a passkey after a sign-in with GitHub ------------------------------------------


def offer() -> bool:
    """Whether to offer a passkey on this page: once per sign-in with a provider, to a person
    with none who has not said no (remembered in the instance folder's shared database)."""
    if not current_user.is_authenticated or not enabled():
        return False
    tokens = stored_tokens()
    claims = current_user.claims
    session_id = claims.get("session_id")
    record = session.get(auth.SIGNED_IN_KEY)
    if tokens is None or not isinstance(record, dict) or record.get("session") != session_id \
            or session.get(OFFERED_KEY) == session_id:
        return False  # no sign-in recorded for this session, or offered already
    if any(isinstance(entry, Mapping) and entry.get("method") == "passkey"
           for entry in claims.get("amr") or ()):
        return False
    wanted = False
    if not _dismissed(current_user.get_id()):
        try:
            wanted = not own_passkeys()
        except (*SUPABASE_ERRORS, ValueError):
            return False  # not worth an error, nor a cookie write: asked on a later page
    session[OFFERED_KEY] = session_id  # decided once per sign-in, whatever the answer
    return wanted


@bp.post("/account/passkeys/offer/dismiss")
@login_required
def dismiss_offer():
    """No thanks: the offer is not made again to this person (on any device)."""
    database = _dismissals().connect()
    database.execute("INSERT INTO passkey_offer_dismissed (user_id, dismissed_at) VALUES (?, ?) "
                     "ON CONFLICT (user_id) DO UPDATE SET dismissed_at = excluded.dismissed_at",
                     (current_user.get_id(), time.time()))
    flash("We will not ask again. You can add a passkey on your account page any time.", "info")
    return redirect(auth.safe_next(request.form.get("next")) or url_for("pages.index"))


def _dismissed(user_id: str) -> bool:
    row = _dismissals().connect().execute(
        "SELECT 1 FROM passkey_offer_dismissed WHERE user_id = ?", (user_id,)).fetchone()
    return row is not None


def _dismissals() -> instance_data.SharedDatabase:
    database = current_app.extensions.get(DISMISSED)
    if database is None:
        app = current_app._get_current_object()
        database = app.extensions.setdefault(DISMISSED, instance_data.shared_database(app, SCHEMA))
    return database
