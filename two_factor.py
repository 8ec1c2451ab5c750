"""Two-factor authentication (TOTP) and assurance levels: the challenge after signing in,
authenticator apps under /account/two-factor, and ``@aal2_required``.

Signing in with GitHub gives an aal1 session even to a person with a verified factor; a code
from their authenticator app raises it to aal2 (supabase-py's ``auth.mfa`` makes every call).
Each request knows both levels without asking Supabase: the current one from the verified
token's ``aal`` claim, the next one from the number of verified factors the cookie keeps (from
every token response, re-read at each revalidation: see sessions.py). A verified factor the app
cannot challenge (flask_storage.CHALLENGEABLE_FACTORS) keeps its owner at the challenge.

Wrong codes are counted per Supabase session (the token's ``session_id``) in the instance
folder's shared database, where every worker sees them and no replayed cookie can take them
back; the fifth signs that session out at Supabase.

The TOTP secret and its QR code are shown on the page that answers the enrolment; to show them
again after a mistyped code, that page carries them sealed (encrypted and authenticated under
SECRET_KEY, for ENROLMENT_LIFETIME seconds). The app keeps them nowhere and never logs them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps

from cryptography.fernet import InvalidToken, MultiFernet
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

import auth
import instance_data
import pending_sign_outs
from flask_storage import CHALLENGEABLE_FACTORS, MFA_FACTORS, sealer, stored_tokens
from sessions import SESSION_ENDED, SESSION_ENDED_DEFAULT, refresh_now, supabase_call, trust
from supabase_client import extension, get_supabase
from supabase_errors import SUPABASE_ERRORS, retry_after

log = logging.getLogger(__name__)
bp = Blueprint("two_factor", __name__)

CHALLENGE_KEY = "mfa_challenge"  # the challenge under way: factor, challenge id, expiry, name
MAX_TRIES = 5  # wrong codes per Supabase session; the fifth signs it out
WRONG_CODES = "two_factor.wrong_codes"  # app.extensions key of the WrongCodes count
# Challenge and verify at hosted defaults (GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY, 15 a
# minute per address): one more try every 4 s; Supabase's 429 says nothing itself.
MFA_REFILL_SECONDS = 4
EXPIRY_MARGIN = 30  # seconds: a challenge this close to its end is replaced before it is shown
CODE = re.compile(r"[0-9]{6}")
UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
DEFAULT_NAME = "Authenticator app"
MAX_NAME = 60
QR_PREFIX = "data:image/svg+xml;utf-8,"  # what supabase-py puts before the server's SVG
ENROLMENT_LIFETIME = 600  # seconds a set-up page can show its QR code and key again
MAX_SEALED = 64_000  # characters: far more than a sealed QR code and key take
# How a verified factor the app cannot challenge is named to its owner.
FACTOR_KINDS = {"phone": "a phone number (codes by text message)",
                "webauthn": "a security key or passkey"}
# Reachable at aal1 whatever the person's factors: the way in, the way out, static files.
OPEN = frozenset({"static", "pages.healthz", "pages.favicon", "auth.signout",
                  "auth.signin_page", "auth.signin", "auth.callback",
                  "passkeys.signin_options", "passkeys.signin"})
CHALLENGE_VIEWS = frozenset({"two_factor.challenge", "two_factor.verify"})
SETUP_VIEWS = frozenset({"two_factor.setup", "two_factor.enroll", "two_factor.confirm"})
# Answers from Supabase that these views explain themselves.
REFUSALS = frozenset({
    "mfa_verification_failed", "mfa_challenge_expired", "mfa_ip_address_mismatch",
    "mfa_factor_not_found", "mfa_factor_name_conflict", "too_many_enrolled_mfa_factors",
    "insufficient_aal", "over_request_rate_limit", "mfa_totp_enroll_not_enabled",
    "mfa_totp_verify_not_enabled",
})
TURNED_OFF = ("Two-factor authentication is turned off in this site's Supabase project. "
              "Please tell the site's team.")


def init_app(app: Flask) -> None:
    """The pages, and the level check before every view (after auth's, which loads the user)."""
    app.register_blueprint(bp)
    app.before_request(require_level)
    app.add_template_global(own_name)


class WrongCodes:
    """Wrong two-factor codes per Supabase session, in the instance folder's shared database.

    A try is taken before the code goes to Supabase and given back when Supabase did not judge
    it, so parallel requests cannot test more than MAX_TRIES codes. A count lasts ``lifetime``
    seconds after the last wrong code (a session cookie's lifetime), then it is dropped.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS mfa_wrong_codes (
            session_key TEXT PRIMARY KEY,
            wrong INTEGER NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS mfa_wrong_codes_expiry ON mfa_wrong_codes (expires_at);
    """

    def __init__(self, database: instance_data.SharedDatabase, lifetime: float) -> None:
        self.database = database
        self.lifetime = lifetime

    def count(self, key: str) -> int:
        """Wrong codes (and tries under way) counted for this session."""
        row = self.database.connect().execute(
            "SELECT wrong FROM mfa_wrong_codes WHERE session_key = ? AND expires_at > ?",
            (key, time.time())).fetchone()
        return row[0] if row else 0

    def take(self, key: str) -> int:
        """Count one more try for this session; the count with it."""
        now = time.time()
        connection = self.database.connect()
        connection.execute("DELETE FROM mfa_wrong_codes WHERE expires_at <= ?", (now,))
        rows = connection.execute(
            "INSERT INTO mfa_wrong_codes (session_key, wrong, expires_at) VALUES (?, 1, ?) "
            "ON CONFLICT (session_key) DO UPDATE SET expires_at = excluded.expires_at, "
            "wrong = CASE WHEN expires_at <= ? THEN 1 ELSE wrong + 1 END RETURNING wrong",
            (key, now + self.lifetime, now)).fetchall()
        return rows[0][0]

    def give_back(self, key: str) -> None:
        """Uncount a try that Supabase did not judge (expired, unreachable, rate-limited)."""
        self.database.connect().execute(
            "UPDATE mfa_wrong_codes SET wrong = wrong - 1 WHERE session_key = ? AND wrong > 0",
            (key,))

    def forget(self, key: str) -> None:
        """A right code: the session is at aal2, nothing more to count."""
        self.database.connect().execute("DELETE FROM mfa_wrong_codes WHERE session_key = ?",
                                        (key,))


def wrong_codes() -> WrongCodes:
    """This app's count of wrong codes (the instance folder is created on first use only)."""
    counts = current_app.extensions.get(WRONG_CODES)
    if counts is None:
        app = current_app._get_current_object()
        counts = app.extensions.setdefault(WRONG_CODES, WrongCodes(
            instance_data.shared_database(app, WrongCodes.SCHEMA),
            app.permanent_session_lifetime.total_seconds()))
    return counts


def own_name(name: str | None) -> str | None:
    """A factor's name as the person gave it; None for none or the default, which sentences
    call "your authenticator app"."""
    return name if name and name != DEFAULT_NAME else None


def levels() -> tuple[str, str]:
    """The signed-in person's current and next assurance level ("aal1" or "aal2")."""
    user = g.get("auth_user")
    current = "aal2" if user is not None and user.claims.get("aal") == "aal2" else "aal1"
    tokens = stored_tokens()
    return current, "aal2" if tokens and tokens.get(MFA_FACTORS) else current


def require_level():
    """Before every view: aal1 with a verified factor goes to the challenge first; with
    AUTH_REQUIRE_MFA, a person without one goes to set one up."""
    endpoint = request.endpoint
    if g.get("auth_user") is None or endpoint is None or endpoint in OPEN:
        return None
    if endpoint == "pages.index" and (request.args.get("code")
                                      or request.args.get("error_description")):
        return None  # a sign-in finishing on the home page (see app.index)
    current, next_level = levels()
    if current == "aal2":
        return None
    if next_level == "aal2":
        return None if endpoint in CHALLENGE_VIEWS else _to_challenge()
    if current_app.config["AUTH_REQUIRE_MFA"] and endpoint not in SETUP_VIEWS | CHALLENGE_VIEWS:
        flash("This site asks everyone to use two-factor authentication. Set up an "
              "authenticator app to continue.", "info")
        return redirect(url_for("two_factor.setup", next=_wanted()))
    return None


def aal2_required(view: Callable) -> Callable:
    """Allow a view only at aal2: a person at aal1 answers the challenge (or, without a factor,
    sets one up) and comes back."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        current, next_level = levels()
        if current == "aal2":
            return view(*args, **kwargs)
        if next_level == "aal2":
            return _to_challenge()
        flash("This page needs two-factor authentication. Set up an authenticator app first; "
              "you will come back here.", "info")
        return redirect(url_for("two_factor.setup", next=_wanted()))

    return wrapped


def _to_challenge():
    return redirect(url_for("two_factor.challenge", next=_wanted()))


def _wanted() -> str | None:
    """Where to go once the level is reached: the page asked for (a GET), else home."""
    return auth.safe_next(auth.current_path()) if request.method in ("GET", "HEAD") else None


def _next() -> str:
    return auth.safe_next(request.values.get("next")) or url_for("pages.index")


# --- the challenge ---------------------------------------------------------------------------


@bp.get("/two-factor")
@login_required
def challenge():
    """Ask for a code from the person's authenticator app (after signing in with GitHub)."""
    if levels() != ("aal1", "aal2"):
        return redirect(_next())
    if _wrong_so_far() >= MAX_TRIES:  # a copy of a cookie from before the fifth wrong code
        return _too_many_tries()
    with _refusals_answered():
        factors, others = _verified_factors()
        if not factors:
            if others:
                return _cannot_challenge(others)
            _forget_factors()  # removed meanwhile (the dashboard): nothing to answer
            return redirect(_next())
        state = _challenge_for(factors, request.args.get("factor"))
    choices = [factor for factor in factors if factor.id != state["factor"]]
    return _challenge_page(state, others=choices)


@bp.post("/two-factor")
@login_required
def verify():
    """Check the code; a right one raises the session to aal2 and goes on to the page."""
    if levels() != ("aal1", "aal2"):
        return redirect(_next())  # e.g. the code was entered in another tab already
    state = _stored_challenge()
    wanted = _form_factor()
    code = _code(request.form.get("code"))
    if code is None:
        if state is None:
            return redirect(url_for("two_factor.challenge", next=_next()))
        return _challenge_page(state, "Enter the six digits your authenticator app shows, "
                                      "for example 123456.", status=400)
    if state is None or (wanted is not None and state["factor"] != wanted):
        # Another tab's sign-in replaced this browser's challenge: check against a new one.
        with _refusals_answered():
            factors, _ = _verified_factors()
            if not factors:
                return redirect(url_for("two_factor.challenge", next=_next()))
            state = _challenge_for(factors, wanted)
    return _check(state, code)


def _check(state: dict, code: str):
    """Send the code to Supabase, counting it first where no cookie can take it back."""
    key = _session_key()
    try:
        tries = wrong_codes().take(key)
    except sqlite3.Error as error:
        log.error("cannot count wrong two-factor codes in %s: %s", wrong_codes().database.path,
                  error)
        abort(503, description="We could not check your code just now. Please try again in a "
                               "moment.")
    if tries > MAX_TRIES:
        return _too_many_tries()
    previous = stored_tokens()["access_token"]
    judged = None  # "right" or "wrong" once Supabase has said which
    try:
        with supabase_call("checking your code", REFUSALS):
            get_supabase().auth.mfa.verify(
                {"factor_id": state["factor"], "challenge_id": state["id"], "code": code})
        judged = "right"
    except SUPABASE_ERRORS as error:
        if getattr(error, "code", None) == "mfa_verification_failed":
            judged = "wrong"
        return _answer_refusal(error, state, tries)
    finally:
        _settle(key, judged)
    _raised(previous)
    auth.mark_signed_in()  # a right code proves the person as much as a sign-in does
    flash(f"Signed in as {current_user.name}.", "success")
    return redirect(_next())


def _settle(key: str, judged: str | None) -> None:
    try:
        if judged == "right":
            wrong_codes().forget(key)
        elif judged is None:
            wrong_codes().give_back(key)
    except sqlite3.Error as error:  # a count too high by one errs on the safe side
        log.error("cannot update the count of wrong two-factor codes: %s", error)


def _session_key() -> str:
    """What wrong codes are counted by: the Supabase session (the token's session_id)."""
    claims = current_user.claims
    return claims.get("session_id") or f"user:{claims['sub']}"


def _wrong_so_far() -> int:
    """Wrong codes counted for this session (0 when the count cannot be read: the check
    itself refuses then)."""
    try:
        return wrong_codes().count(_session_key())
    except sqlite3.Error as error:
        log.error("cannot read the count of wrong two-factor codes: %s", error)
        return 0


def _form_factor() -> str | None:
    """The factor the submitted form was showing, when it names one as a UUID."""
    value = request.form.get("factor") or ""
    return str(uuid.UUID(value)) if UUID.fullmatch(value) else None


def _cannot_challenge(others: list):
    """Verified factors only of types the app cannot ask for: say so, and let nobody past."""
    kinds = sorted({FACTOR_KINDS.get(f.factor_type, "another kind of second step")
                    for f in others})
    log.info("a person's only verified factors are of types the app cannot challenge: %s",
             sorted({f.factor_type for f in others}))
    return render_template("two_factor_unsupported.html", kinds=kinds), 403


def _challenge_for(factors: list, chosen: str | None) -> dict:
    """The challenge under way if it is still good for the factor wanted, else a new one. The
    factor: the one chosen if it is this person's, else the one under way, else the oldest."""
    state = _stored_challenge()
    by_id = {factor.id: factor for factor in factors}
    if chosen not in by_id:
        chosen = state["factor"] if state and state["factor"] in by_id else factors[0].id
    if state and state["factor"] == chosen and state["expires"] - EXPIRY_MARGIN > time.time():
        return state
    return _new_challenge(by_id[chosen], len(factors))


def _new_challenge(factor, choices: int) -> dict:
    with supabase_call("starting the code check", REFUSALS):
        response = get_supabase().auth.mfa.challenge({"factor_id": factor.id})
    state = {"factor": factor.id, "id": response.id, "expires": int(response.expires_at),
             "name": (factor.friendly_name or "")[:MAX_NAME], "choices": choices}
    session[CHALLENGE_KEY] = state
    return state


def _stored_challenge() -> dict | None:
    state = session.get(CHALLENGE_KEY)
    if not isinstance(state, dict) or not all(isinstance(state.get(key), str)
                                              for key in ("factor", "id", "name")):
        return None
    if not isinstance(state.get("expires"), int) or not isinstance(state.get("choices"), int):
        return None
    return state


def _verified_factors() -> tuple[list, list]:
    """The person's verified factors, oldest first (GET /user, through auth.mfa): those the app
    can challenge, and the others."""
    with supabase_call("loading your authenticator apps", REFUSALS):
        listed = get_supabase().auth.mfa.list_factors().all
    verified = [factor for factor in listed if factor.status == "verified"]
    return ([f for f in verified if f.factor_type in CHALLENGEABLE_FACTORS],
            [f for f in verified if f.factor_type not in CHALLENGEABLE_FACTORS])


def _forget_factors() -> None:
    tokens = stored_tokens()
    if tokens is not None and tokens.pop(MFA_FACTORS, None) is not None:
        session.modified = True


def _code(value: str | None) -> str | None:
    """Six ASCII digits, spaces allowed between them; None for anything else."""
    code = "".join((value or "").split())
    return code if CODE.fullmatch(code) else None


def _challenge_page(state: dict, message: str | None = None, *, status: int = 200,
                    others: list | None = None, headers: dict | None = None):
    tries = _wrong_so_far()
    page = render_template("two_factor_challenge.html", name=state["name"], message=message,
                           next=_next(), others=others or [], choices=state["choices"],
                           factor=state["factor"],
                           tries_left=max(MAX_TRIES - tries, 1) if tries else None)
    return page, status, headers or {}


def _raised(previous: str) -> None:
    """The session is aal2 now (supabase_auth stored its new tokens): the challenge is done."""
    session.pop(CHALLENGE_KEY, None)
    extension().tokens.forget(previous)
    trust(stored_tokens()["access_token"])


@contextmanager
def _refusals_answered(state: dict | None = None) -> Iterator[None]:
    """Supabase's refusals (and an ended session) become the page that explains them; trouble
    reaching Supabase is already a 503 (supabase_call)."""
    try:
        yield
    except SUPABASE_ERRORS as error:
        abort(make_response(_answer_refusal(error, state)))


def _answer_refusal(error: Exception, state: dict | None, tries: int = MAX_TRIES):
    code = getattr(error, "code", None)
    log.info("two-factor check refused: %s", code)
    if code in SESSION_ENDED or code not in REFUSALS:
        return _session_over(code)
    if code == "over_request_rate_limit":
        wait = retry_after(error, refill_seconds=MFA_REFILL_SECONDS)
        message = (f"Too many tries in a short time. Wait {wait} seconds, then enter the code "
                   "your app shows.")
        return _challenge_page(state, message, status=429, headers={"Retry-After": str(wait)}) \
            if state else _error_page(429, message)
    if code in ("mfa_totp_verify_not_enabled", "mfa_totp_enroll_not_enabled"):
        log.error("TOTP is turned off in the Supabase project (Authentication > Multi-Factor): "
                  "people with an authenticator app cannot reach aal2")
        return _error_page(503, TURNED_OFF)
    if state is None or code in ("mfa_factor_not_found", "insufficient_aal"):
        session.pop(CHALLENGE_KEY, None)
        flash("Your authenticator apps changed. Enter a code from the one now set up.", "info")
        return redirect(url_for("two_factor.challenge", next=_next()))
    if code == "mfa_verification_failed":
        return _wrong_code(state, tries)
    fresh = _new_challenge_for(state)
    if code == "mfa_challenge_expired":
        message = ("That took too long: a code check lasts five minutes. Enter the code your "
                   "app shows now.")
    else:  # mfa_ip_address_mismatch: the challenge was answered already
        message = ("That code was already used. Wait for your app to show a new code, then "
                   "enter it.")
    return _challenge_page(fresh, message, status=401)


def _new_challenge_for(state: dict) -> dict:
    try:
        with supabase_call("starting the code check", REFUSALS):
            response = get_supabase().auth.mfa.challenge({"factor_id": state["factor"]})
    except SUPABASE_ERRORS:
        session.pop(CHALLENGE_KEY, None)  # the next page starts one
        return state
    fresh = {**state, "id": response.id, "expires": int(response.expires_at)}
    session[CHALLENGE_KEY] = fresh
    return fresh


def _wrong_code(state: dict, tries: int):
    if tries >= MAX_TRIES:
        return _too_many_tries()
    left = MAX_TRIES - tries
    message = (f"That code is not right. You can try {left} more "
               f"{'time' if left == 1 else 'times'}. Codes change every 30 seconds: enter the "
               "one your app shows now.")
    return _challenge_page(state, message, status=401)


def _too_many_tries():
    """Sign out, here and at Supabase: replaying an older cookie finds the session gone (and,
    should Supabase not have heard, the count still at MAX_TRIES)."""
    tokens = stored_tokens()
    if tokens is not None:
        pending_sign_outs.sign_out(tokens)  # at Supabase now, or as soon as it answers again
        extension().tokens.forget(tokens["access_token"])
    session.clear()
    flash(f"That was the {MAX_TRIES}th wrong code, so you have been signed out. Sign in again "
          "to try once more. If your app's codes are never accepted, check that your phone "
          "sets its clock automatically.", "warning")
    return redirect(url_for("pages.index"))


def _session_over(code: str | None):
    session.clear()
    flash(SESSION_ENDED.get(code, SESSION_ENDED_DEFAULT), "warning")
    return redirect(url_for("auth.signin_page"))


def _error_page(status: int, message: str):
    return render_template("error.html", status=status, message=message, retry=None), status


# --- setting up and removing authenticator apps ----------------------------------------------


@bp.get("/account/two-factor")
@login_required
def setup():
    """Explain two-factor authentication and offer to set up an authenticator app."""
    return render_template("two_factor_setup.html", next=auth.safe_next(request.args.get("next")))


@bp.post("/account/two-factor")
@login_required
def enroll():
    """Start setting up an authenticator app: its QR code and secret, shown this once."""
    name = " ".join((request.form.get("name") or "").split())[:MAX_NAME] or DEFAULT_NAME
    next_path = auth.safe_next(request.form.get("next"))
    with _refusals_answered():
        factors = _all_factors()
        if not any(f.status == "verified" for f in factors) and not auth.signed_in_recently():
            # The first factor: in a stale session's hands, it would lock the owner out.
            return auth.ask_to_sign_in_again(url_for("two_factor.setup", next=next_path),
                                             "set up two-factor authentication")
        if any(f.friendly_name == name and f.status == "verified" for f in factors):
            return _setup_page(_name_taken(name), 400, next_path, name)
        for abandoned in (f for f in factors if f.status != "verified"):
            with supabase_call("setting up two-factor authentication", REFUSALS):
                get_supabase().auth.mfa.unenroll({"factor_id": abandoned.id})
        try:
            with supabase_call("setting up two-factor authentication", REFUSALS):
                response = get_supabase().auth.mfa.enroll(
                    {"factor_type": "totp", "friendly_name": name})
        except SUPABASE_ERRORS as error:
            if getattr(error, "code", None) == "too_many_enrolled_mfa_factors":
                return _setup_page("You have as many authenticator apps as this site allows. "
                                   "Remove one you no longer use first.", 400, next_path, name)
            if getattr(error, "code", None) == "mfa_factor_name_conflict":
                return _setup_page(_name_taken(name), 400, next_path, name)
            raise
    shown = {"factor": response.id, "name": name, "secret": response.totp.secret,
             "uri": response.totp.uri, "qr": _svg(response.totp.qr_code)}
    return _enrol_page(shown, next_path)


def _name_taken(name: str) -> str:
    if own_name(name) is None:
        return ("You already have an authenticator app without a name of its own. Give this "
                "one a name, to tell them apart.")
    return f"You already have an authenticator app called “{name}”. Give this one another name."


def _enrol_page(shown: dict, next_path: str | None, message: str | None = None,
                status: int = 200):
    """The set-up page with the QR code and key (again, after a mistyped code)."""
    return render_template("two_factor_enroll.html", factor_id=shown["factor"],
                           name=shown["name"], qr=_qr_image(shown["qr"]),
                           secret=_grouped(shown["secret"]), uri=shown["uri"],
                           sealed=_seal(shown), message=message, next=next_path), status


@bp.post("/account/two-factor/<factor_id>/confirm")
@login_required
def confirm(factor_id: str):
    """Finish setting up: a right code verifies the app, and this session is at aal2."""
    factor_id = _factor_id(factor_id)
    next_path = auth.safe_next(request.form.get("next"))
    code = _code(request.form.get("code"))
    if code is None:
        return _confirm_page(factor_id, "Enter the six digits your authenticator app shows, "
                                        "for example 123456.", 400, next_path)
    previous = stored_tokens()["access_token"]
    try:
        with supabase_call("checking your code", REFUSALS):
            response = get_supabase().auth.mfa.challenge_and_verify(
                {"factor_id": factor_id, "code": code})
    except SUPABASE_ERRORS as error:
        return _confirm_refused(error, factor_id, next_path)
    _raised(previous)
    name = own_name(next((f.friendly_name for f in response.user.factors or ()
                          if f.id == factor_id), None))
    app = f"“{name}”" if name else "your authenticator app"
    flash(f"Two-factor authentication is on: after signing in with GitHub you will enter a code "
          f"from {app}. Any other device signed in to your account was signed out: sign in "
          "there again, with a code.", "success")
    return redirect(next_path or url_for("account.index"))


def _confirm_refused(error: Exception, factor_id: str, next_path: str | None):
    code = getattr(error, "code", None)
    log.info("confirming an authenticator app refused: %s", code)
    if code == "mfa_verification_failed":
        return _confirm_page(factor_id, "That code is not right. Check that your phone sets its "
                                        "clock automatically, then enter the code it shows now.",
                             401, next_path)
    if code in ("mfa_factor_not_found", "mfa_challenge_expired", "mfa_ip_address_mismatch"):
        return _setup_page("That set-up has expired or was removed. Please start again.", 404,
                           next_path)
    return _answer_refusal(error, None)


@bp.get("/account/two-factor/<factor_id>/remove")
@login_required
def confirm_remove(factor_id: str):
    """Ask before removing an authenticator app."""
    factor_id = _factor_id(factor_id)
    with _refusals_answered():
        factors = [f for f in _all_factors() if f.status == "verified"]
    factor = next((f for f in factors if f.id == factor_id), None)
    if factor is None:
        abort(404, description="That authenticator app was not found; it may have been "
                               "removed already.")
    return render_template("two_factor_remove.html", factor=factor, last_one=len(factors) == 1)


@bp.post("/account/two-factor/<factor_id>/remove")
@login_required
def remove(factor_id: str):
    """Remove an authenticator app (Supabase asks for aal2, which the level check ensures)."""
    factor_id = _factor_id(factor_id)
    with _refusals_answered():
        try:
            with supabase_call("removing the authenticator app", REFUSALS):
                get_supabase().auth.mfa.unenroll({"factor_id": factor_id})
        except SUPABASE_ERRORS as error:
            if getattr(error, "code", None) == "mfa_factor_not_found":
                abort(404, description="That authenticator app was not found; it may have been "
                                       "removed already.")
            raise
    refresh_now(current_user.claims)  # Supabase may have lowered this session to aal1
    tokens = stored_tokens()
    if tokens is not None:
        off = "" if tokens.get(MFA_FACTORS) else " Two-factor authentication is off."
        flash(f"The authenticator app was removed.{off}", "success")
    return redirect(url_for("account.index"))


def _all_factors() -> list:
    """All the person's factors, verified or not (GET /user, through auth.mfa)."""
    with supabase_call("loading your authenticator apps", REFUSALS):
        return list(get_supabase().auth.mfa.list_factors().all)


def _factor_id(value: str) -> str:
    """A factor id from the URL: a UUID, or 404 (it becomes part of the API's path)."""
    if not UUID.fullmatch(value):
        abort(404, description="That authenticator app was not found; it may have been removed "
                               "already.")
    return str(uuid.UUID(value))


def _setup_page(message: str, status: int, next_path: str | None, name: str = ""):
    return render_template("two_factor_setup.html", message=message, next=next_path,
                           name=name), status


def _confirm_page(factor_id: str, message: str, status: int, next_path: str | None):
    """The set-up page after a mistyped code: with the QR code and key when the form carried
    them sealed for this factor and person, else only the code box."""
    shown = _unseal(request.form.get("enrolment"), factor_id)
    if shown is not None:
        return _enrol_page(shown, next_path, message, status)
    return render_template("two_factor_enroll.html", factor_id=factor_id, name=None, qr=None,
                           secret=None, uri=None, sealed=None, message=message,
                           next=next_path), status


def _seal(shown: dict) -> str:
    """The set-up's QR code and key, encrypted and authenticated for this person's browser."""
    data = json.dumps({**shown, "sub": current_user.get_id()}).encode()
    return _enrolment_fernet().encrypt(zlib.compress(data)).decode("ascii")


def _unseal(sealed: str | None, factor_id: str) -> dict | None:
    """What ``_seal`` sealed, if it is this factor's and this person's and still fresh."""
    if not sealed or len(sealed) > MAX_SEALED:
        return None
    try:
        data = json.loads(zlib.decompress(
            _enrolment_fernet().decrypt(sealed.encode("ascii"), ttl=ENROLMENT_LIFETIME)))
    except (InvalidToken, UnicodeEncodeError, zlib.error, ValueError):
        return None
    fields = ("factor", "name", "secret", "uri", "qr", "sub")
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
        return None
    if data["factor"] != factor_id or data["sub"] != current_user.get_id():
        return None
    return data


def _enrolment_fernet() -> MultiFernet:
    return sealer("two_factor.enrolment")


def _svg(qr_code: str) -> str:
    """The QR code's SVG, without the data: URI prefix supabase-py puts before it."""
    return qr_code[len(QR_PREFIX):] if qr_code.startswith(QR_PREFIX) else qr_code


def _qr_image(svg: str) -> str:
    """The QR code as a base64 data: URI (re-encoded so that no character of the SVG can end
    the URI early)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[start:start + 4] for start in range(0, len(secret), 4))
