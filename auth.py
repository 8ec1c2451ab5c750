"""Sign-in with Supabase Auth (PKCE), the callback, sign-out, and the current user."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt
from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

import pending_sign_outs
from flask_storage import MFA_FACTORS, PROVIDER_TOKEN, stored_tokens
from pending_sign_outs import Outcome
from sessions import SessionEnded, current_claims, trust, unavailable
from supabase_client import extension, get_supabase
from supabase_errors import (
    SUPABASE_ERRORS,
    Failure,
    classify,
    out_of_reach,
    refused_by_hook,
    retry_after,
)
from tokens import InvalidToken, KeysUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()

VERIFIER_KEY = f"{STORAGE_KEY}-code-verifier"  # where supabase_auth puts the PKCE verifier
FLOWS_KEY = "auth_flows"  # sign-ins under way in this browser, newest last
MAX_FLOWS = 3  # enough for a few tabs signing in at once, small enough for the cookie
FLOW_LIFETIME = 600  # seconds; Supabase itself lets a sign-in take five minutes
SIGN_OUT_SCOPES = ("local", "global", "others")
# When this browser's session last proved who the person is (a sign-in with a provider, a
# passkey, or a two-factor code), with the Supabase session it proved it for. Linking,
# unlinking, a first factor and signing other devices out need it within
# AUTH_RECENT_SIGN_IN_SECONDS. The token's amr cannot tell: linking adds a fresh entry to it.
SIGNED_IN_KEY = "auth_signed_in"
# Sign-out needs only the stored tokens, and must work while Supabase is unreachable.
SKIP_USER_CHECK = frozenset({"static", "pages.healthz", "pages.favicon", "auth.signout"})

PROVIDER_NAMES = {
    "github": "GitHub",
    "gitlab": "GitLab",
    "linkedin_oidc": "LinkedIn",
    "twitter": "X (Twitter)",
    "azure": "Microsoft",
    "workos": "WorkOS",
}

# error_code from Supabase -> (status, what the person is told)
CALLBACK_ERRORS = {
    "user_banned": (403, "This account has been suspended. Contact the site's team if you "
                         "think this is a mistake."),
    "provider_email_needs_verification": (
        403, "Your email address is not verified with the provider yet. Verify it there (or "
             "follow the confirmation email), then sign in again."),
    "signup_disabled": (403, "New accounts cannot be created here right now."),
    "flow_state_not_found": (400, "This sign-in link has already been used or is not valid. "
                                  "Please start again."),
    "flow_state_expired": (400, "This sign-in link expired (they last five minutes). "
                                "Please start again."),
    "bad_code_verifier": (400, "This sign-in link belongs to another browser or another "
                               "sign-in attempt. Please start again here."),
    "bad_oauth_state": (400, "The sign-in attempt expired or was not recognised. "
                             "Please start again."),
    "flow_state_already_used": (400, "This sign-in link has already been used. "
                                     "Please start again."),
    "identity_already_exists": (409, "That account is already linked, to you or to someone "
                                     "else. Sign in with it instead, or link a different one."),
}
ANOTHER_BROWSER = ("This sign-in was started in another browser, or the cookie that ties it to "
                   "this browser was lost. Please start again here.")


class User(UserMixin):
    """The signed-in person, read from the verified access token's claims."""

    def __init__(self, claims: dict) -> None:
        self.claims = claims
        self.metadata = claims.get("user_metadata") or {}
        self.app_metadata = claims.get("app_metadata") or {}

    def get_id(self) -> str:
        return self.claims["sub"]

    @property
    def email(self) -> str:
        return self.claims.get("email") or self.metadata.get("email") or ""

    @property
    def name(self) -> str:
        meta = self.metadata
        return meta.get("full_name") or meta.get("name") or meta.get("user_name") or self.email

    @property
    def avatar_url(self) -> str | None:
        url = self.metadata.get("avatar_url")
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None

    @property
    def role(self) -> str | None:
        """The role in the claim AUTH_ROLE_CLAIM names (app_metadata.role unless a hook's)."""
        from roles import claimed_role  # roles imports two_factor, which imports this module

        return claimed_role(self.claims)


def init_app(app: Flask) -> None:
    """Wire Flask-Login to the user that ``load_user`` verified for this request."""
    login_manager.init_app(app)
    # The tokens are the binding between browser and account; Flask-Login's IP/user-agent hash
    # would only rewrite the cookie on every request.
    login_manager.session_protection = None
    login_manager.request_loader(_request_user)
    login_manager.unauthorized_handler(_ask_to_sign_in)
    app.register_blueprint(bp)


@bp.before_app_request
def load_user() -> None:
    """Verify the cookie's access token; re-check or refresh it with Supabase when due."""
    g.auth_user = None
    if request.endpoint in SKIP_USER_CHECK:
        return
    _forget_unreadable_cookie()
    tokens = stored_tokens()
    if tokens is None:
        session.pop(STORAGE_KEY, None)
        return
    try:
        claims = current_claims(tokens)
    except InvalidToken as error:
        log.info("discarding a session cookie whose token failed verification: %s", error)
        session.pop(STORAGE_KEY, None)
        return
    except SessionEnded as ended:
        session.pop(STORAGE_KEY, None)
        flash(str(ended), "warning")
        return
    g.auth_user = User(claims)  # Flask-Login's request_loader hands it to current_user


def _request_user(_request) -> User | None:
    """The user load_user verified. Where it did not look (a request refused before it ran,
    such as a stale CSRF token; sign-out's own pages), the cookie's user as far as the token
    alone tells, so that the page's header still says who is signed in."""
    user = g.get("auth_user")
    if user is not None or ("auth_user" in g and request.endpoint not in SKIP_USER_CHECK):
        return user
    tokens = stored_tokens()
    if tokens is None:
        return None
    try:
        claims = extension().tokens.verify(tokens["access_token"])
    except (InvalidToken, KeysUnavailable):
        return None
    return User(claims) if claims is not None else None


def _forget_unreadable_cookie() -> None:
    # A cookie Flask could not verify (tampered, another app's key, truncated) reads as an
    # empty session; marking it modified makes Flask send a deleting Set-Cookie.
    name = current_app.config["SESSION_COOKIE_NAME"]
    if request.cookies.get(name) and not session:
        session.modified = True


def _ask_to_sign_in():
    flash("Please sign in to open that page.", "info")
    return redirect(url_for("auth.signin_page", next=current_path()))


def current_path() -> str:
    """The request's path with its query, as the browser asked for it."""
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


def safe_next(target: str | None) -> str | None:
    """The target if it is a same-site relative path, else None."""
    if not target or len(target) > 2048 or not target.isascii():
        return None
    if any(ord(char) < 0x21 or char in '\\"<>`' or ord(char) == 0x7F for char in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def provider_name(provider: str) -> str:
    """How a provider id is shown to people: "github" -> "GitHub"."""
    return PROVIDER_NAMES.get(provider, provider.replace("_", " ").title())


def enabled_providers() -> list[dict]:
    """The configured providers with their display names, in config order, leaving out those
    the Supabase project says are disabled (its last answer counts while it is away)."""
    settings = extension().settings
    return [{"id": provider, "name": provider_name(provider)}
            for provider in current_app.config["AUTH_PROVIDERS"]
            if settings.provider_enabled(provider) is not False]


@bp.get("/signin")
def signin_page():
    """The sign-in page: one button per provider, keeping where the person wanted to go."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("pages.index"))
    require_reachable_supabase()
    return render_template("signin.html", next=safe_next(request.args.get("next")),
                           providers=enabled_providers())


@bp.get("/signin/<provider>")
def signin(provider: str):
    """Start the PKCE flow: renew the session, keep the verifier, go to Supabase."""
    require_provider(provider)
    require_reachable_supabase()
    # The current session (if any) stays until the new one exists: a cross-site link to this
    # page must not sign anyone out. The callback renews the whole cookie.
    flow_id = new_flow_id()
    response = get_supabase().auth.sign_in_with_oauth(
        {"provider": provider, "options": oauth_options(provider, flow_id)})
    next_path = safe_next(request.args.get("next")) or url_for("pages.index")
    remember_flow(flow_id, provider, next_path, intent="signin")
    return redirect(response.url, code=303)


def require_provider(provider: str) -> None:
    """404 unless the app offers this provider and the Supabase project has it enabled."""
    if provider not in current_app.config["AUTH_PROVIDERS"]:
        abort(404, description=f"Signing in with {provider!r} is not available here.")
    if extension().settings.provider_enabled(provider) is False:
        log.warning("provider %s is offered (AUTH_PROVIDERS) but disabled in the Supabase "
                    "project: enable it under Authentication > Sign In / Providers", provider)
        abort(404, description=f"Signing in with {provider_name(provider)} is not enabled for "
                               "this site yet. Please use another way to sign in.")


def require_reachable_supabase() -> None:
    """503 with *Try again* while Supabase cannot be reached: sending the browser there would
    only end on its "cannot connect" page."""
    if not extension().settings.reachable():
        log.warning("sign-in not started: Supabase did not answer (or the back-off is under way)")
        raise ServiceUnavailable("We could not reach the sign-in service, so signing in cannot "
                                 "start right now. Please try again in a moment.")


def new_flow_id() -> str:
    """Names one sign-in under way, so that its callback finds its own PKCE verifier."""
    return secrets.token_urlsafe(8)


def oauth_options(provider: str, flow_id: str) -> dict:
    """redirect_to (always SITE_URL's /callback, never the Host header) and configured scopes."""
    callback_path = url_for("auth.callback", flow=flow_id)
    options = {"redirect_to": current_app.config["SITE_URL"] + callback_path}
    scopes = current_app.config["AUTH_SCOPES"].get(provider)
    if scopes:
        options["scopes"] = scopes
    return options


@contextmanager
def verifier_dropped_on_failure() -> Iterator[None]:
    """A PKCE verifier supabase_auth stored for a call that then failed never stays behind."""
    try:
        yield
    except BaseException:
        session.pop(VERIFIER_KEY, None)
        raise


def remember_flow(flow_id: str, provider: str, next_path: str, *, intent: str) -> None:
    """Keep the verifier supabase_auth just stored with this flow, among the last few."""
    flow = {"id": flow_id, "verifier": session.pop(VERIFIER_KEY), "next": next_path,
            "provider": provider, "intent": intent, "started": int(time.time())}
    session[FLOWS_KEY] = [*_pending_flows(), flow][-MAX_FLOWS:]


@bp.route("/callback", methods=["GET"])
def callback():
    """Supabase sends the browser back here with ``code`` (or ``error``)."""
    return finish_sign_in(request.args)


def finish_sign_in(args: Mapping[str, str]):
    """Exchange the code for a session (one call to Supabase), or explain what went wrong."""
    if args.get("error") or args.get("error_description"):
        return _provider_error(args)
    code = args.get("code", "")
    if not code or len(code) > 256:
        return _sign_in_failed(400, "The sign-in link is incomplete. Please start again.")
    _store_flows(_pending_flows())  # forget the ones past FLOW_LIFETIME
    flow = _flow(args.get("flow"))
    if flow is None:
        if current_user.is_authenticated:  # a second hit on a callback that already worked
            return redirect(url_for("pages.index"))
        return _unknown_flow(code)
    previous = stored_tokens()
    try:
        result = get_supabase().auth.exchange_code_for_session(
            {"auth_code": code, "code_verifier": flow["verifier"], "redirect_to": ""})
    except SUPABASE_ERRORS as error:
        return _exchange_failed(error, flow)
    return _signed_in(result.session, flow, previous)


def _flow(flow_id: str | None) -> dict | None:
    """The sign-in this callback finishes; without an id (Supabase fell back to SITE_URL,
    dropping the query), the newest one."""
    flows = _pending_flows()
    if flow_id is None:
        return flows[-1] if flows else None
    return next((flow for flow in flows if flow["id"] == flow_id), None)


def _unknown_flow(code: str):
    """A callback for no sign-in of this browser. Only Supabase knows why: the link was used
    already (say, opened again after signing out), expired, or started in another browser,
    whose verifier it does not match. One exchange with a random verifier tells which."""
    try:
        get_supabase().auth.exchange_code_for_session(
            {"auth_code": code, "code_verifier": secrets.token_urlsafe(48), "redirect_to": ""})
    except SUPABASE_ERRORS as error:
        return _exchange_failed(error, None, {"bad_code_verifier": (400, ANOTHER_BROWSER)})
    # A random verifier cannot match a code's challenge; should it ever, keep no session.
    session.pop(STORAGE_KEY, None)
    return _sign_in_failed(400, ANOTHER_BROWSER)


def hook_refusal(error: Exception) -> str:
    """What a person is told when the project's access token hook turned them away (its own
    reason, which Supabase passes on, is shown: the team wrote it for them)."""
    reason = (getattr(error, "message", "") or "")[:300].rstrip(". ")
    return ("This site's sign-in rules do not let this account in" + (f": {reason}." if reason
            else ".") + " Contact the site's team if you think this is a mistake.")


def _exchange_failed(error: Exception, flow: dict | None,
                     messages: Mapping[str, tuple[int, str]] | None = None):
    if refused_by_hook(error):
        if flow is not None:
            _drop_flow(flow)
        log.info("code exchange refused by the project's custom access token hook")
        return _sign_in_failed(403, hook_refusal(error))
    failure = classify(error, expected=frozenset(CALLBACK_ERRORS))
    if failure is Failure.RATE_LIMITED:
        # Supabase checks its limit before the code, so the same link works once it refills.
        log.warning("code exchange rate-limited by Supabase (429)")
        wait = retry_after(error)
        raise TooManyRequests(f"Too many sign-ins right now. Please try again in {wait} seconds.",
                              retry_after=wait)
    if failure in (Failure.UNAVAILABLE, Failure.MISCONFIGURED):
        unavailable("finishing your sign-in", error, failure)
    if flow is not None:
        _drop_flow(flow)  # its code is used up or refused: nothing of it is needed any more
    if current_user.is_authenticated:
        return redirect(url_for("pages.index"))
    status, message = {**CALLBACK_ERRORS, **(messages or {})}.get(
        error.code, (400, "Sign-in could not be completed. Please start again."))
    log.info("code exchange refused: %s", error.code)
    return _sign_in_failed(status, message)


def _signed_in(new_session, flow: dict, previous: dict | None):
    tokens = session[STORAGE_KEY]  # written by FlaskSessionStorage during the exchange
    if flow.get("provider", "github") != "github":
        # The app only calls GitHub's API: keep the GitHub token the session already had.
        _keep_provider_token(tokens, previous)
    other_flows = [other for other in _pending_flows() if other["id"] != flow["id"]]
    kept = _renew_cookie(tokens, previous, other_flows)
    user = User(trust(new_session.access_token))
    if flow.get("intent") == "link":
        record = kept.get(SIGNED_IN_KEY)
        if isinstance(record, dict) and record.get("session") == _session_id(previous):
            # Linking proves nothing new: the new session inherits the old one's sign-in time.
            session[SIGNED_IN_KEY] = {**record, "session": _session_id(tokens)}
        flash(f"{provider_name(flow['provider'])} is now linked to your account.", "success")
        return redirect(flow["next"])
    return _welcome(user, tokens, flow["next"])


def session_started(previous: dict | None, next_path: str):
    """After a sign-in that stored new tokens without a PKCE flow (with a passkey): the same
    cookie renewal, record of the sign-in and two-factor rule as after the callback."""
    tokens = session[STORAGE_KEY]
    _renew_cookie(tokens, previous, _pending_flows())
    return _welcome(User(trust(tokens["access_token"])), tokens, next_path)


def _renew_cookie(tokens: dict, previous: dict | None, flows: list[dict]) -> dict:
    """A new cookie holding the new session; what it kept of the old (see below)."""
    kept = _kept_for_the_same_person(previous, tokens)
    session.clear()
    session[STORAGE_KEY] = tokens
    session.update(kept)
    _store_flows(flows)
    session.permanent = True
    return kept


def _welcome(user: User, tokens: dict, next_path: str):
    session.pop(SIGNED_IN_KEY, None)
    mark_signed_in()
    if not tokens.get(MFA_FACTORS):  # with a factor, the code comes first (two_factor.py)
        flash(f"Signed in as {user.name}.", "success")
    return redirect(next_path)


def _kept_for_the_same_person(previous: dict | None, tokens: dict) -> dict:
    """What a new session of the person already signed in here keeps from the old: the CSRF
    token (forms open in other tabs still work) and the record of their last sign-in. A
    session of anyone else, or none, keeps nothing (no planted token survives a sign-in)."""
    if previous is None or _subject(previous) != _subject(tokens):
        return {}
    names = (current_app.config["WTF_CSRF_FIELD_NAME"], SIGNED_IN_KEY)
    return {name: session[name] for name in names if name in session}


def _keep_provider_token(tokens: dict, previous: dict | None) -> None:
    tokens.pop(PROVIDER_TOKEN, None)
    # Only the same person's: another tab may have signed in as someone else meanwhile.
    if previous and PROVIDER_TOKEN in previous and _subject(previous) == _subject(tokens):
        tokens[PROVIDER_TOKEN] = previous[PROVIDER_TOKEN]


def _subject(tokens: dict) -> str | None:
    return decode_jwt(tokens["access_token"])["payload"].get("sub")


def _provider_error(args: Mapping[str, str]):
    code = args.get("error_code", "")
    if code in CALLBACK_ERRORS:
        status, message = CALLBACK_ERRORS[code]
    elif args.get("error") == "access_denied":
        status, message = 401, "Sign-in was cancelled. You can try again whenever you like."
    else:
        status, message = 502, "The sign-in provider reported a problem. Please try again."
    log.info("sign-in failed at the provider: error=%s error_code=%s",
             args.get("error", "")[:64], code[:64])
    return _sign_in_failed(status, message)


def _sign_in_failed(status: int, message: str):
    return render_template("signin_failed.html", message=message), status


def _pending_flows() -> list[dict]:
    """This browser's sign-ins under way and younger than FLOW_LIFETIME, newest last."""
    flows = session.get(FLOWS_KEY)
    if not isinstance(flows, list):
        return []
    oldest = time.time() - FLOW_LIFETIME
    return [flow for flow in flows if isinstance(flow, dict)
            and all(isinstance(flow.get(name), str) for name in ("id", "verifier", "next"))
            and isinstance(flow.get("started"), int) and flow["started"] > oldest][-MAX_FLOWS:]


def _drop_flow(flow: dict) -> None:
    _store_flows([other for other in _pending_flows() if other["id"] != flow["id"]])


def _store_flows(flows: list[dict]) -> None:
    if flows:
        if session.get(FLOWS_KEY) != flows:
            session[FLOWS_KEY] = flows
    else:
        session.pop(FLOWS_KEY, None)


# What a person is told after signing out here, by what became of it at Supabase.
SIGNED_OUT_HERE = {
    Outcome.DONE: ("You have been signed out.", "success"),
    Outcome.PENDING: (
        "You are signed out here. We could not reach the sign-in service to end the session "
        "there too, so a copy of it saved elsewhere (another browser profile, a backup of "
        "this one) still works until we do. That will happen automatically as soon as the "
        "service answers.", "warning"),
    Outcome.NOT_KEPT: (
        "You are signed out here. We could not reach the sign-in service to end the session "
        "there too, nor keep the request for later, so a copy of it saved elsewhere still "
        "works. Once the service is back, sign in and choose Sign out everywhere if that "
        "matters to you.", "warning"),
}


@bp.post("/signout")
def signout():
    """Sign out here (local), everywhere (global) or on other devices (others)."""
    scope = request.form.get("scope", "local")
    if scope not in SIGN_OUT_SCOPES:
        abort(400, description="Unknown sign-out option.")
    tokens = stored_tokens()
    if tokens is None:
        session.clear()
        flash("You have been signed out.", "success")
        return redirect(url_for("pages.index"))
    if scope == "local":
        return _sign_out_here(tokens)
    if scope == "global" and not signed_in_recently():
        return ask_to_sign_in_again(url_for("account.confirm_sign_out_everywhere"),
                                    "sign out everywhere")
    if scope == "others" and not signed_in_recently():
        return ask_to_sign_in_again(url_for("account.index"), "sign out your other devices")
    return _sign_out_elsewhere(tokens, scope)


def _sign_out_here(tokens: dict):
    """Always signed out here; at Supabase now, or as soon as it answers again."""
    outcome = pending_sign_outs.sign_out(tokens)
    _forget_session(tokens)
    flash(*SIGNED_OUT_HERE[outcome])
    return redirect(url_for("pages.index"))


def _sign_out_elsewhere(tokens: dict, scope: str):
    """Everywhere or on the other devices: only Supabase can, so nothing changes without it."""
    backoff = extension().backoff
    reached = backoff.ready()
    if reached:
        try:
            get_supabase().auth.sign_out({"scope": scope})
        except SUPABASE_ERRORS as error:
            # An ended session is as signed out as it gets; anything else did not reach it.
            reached = classify(error) is Failure.ENDED
            if out_of_reach(error):
                backoff.failed()
            else:
                backoff.release()
            if not reached:
                log.warning("sign-out (%s) did not reach Supabase: %s", scope,
                            type(error).__name__)
        else:
            backoff.succeeded()
    if not reached:
        where = "everywhere" if scope == "global" else "of your other devices"
        flash(f"Nothing changed: signing out {where} needs the sign-in service, which could "
              "not be reached. You are still signed in everywhere; please try again in a "
              "moment.", "warning")
        return redirect(url_for("account.index"))
    if scope == "others":
        flash("Signed out of your other devices. This one stays signed in.", "success")
        return redirect(url_for("account.index"))
    _forget_session(tokens)
    flash("You have been signed out everywhere: every browser and device that was signed in "
          "to your account, this one included.", "success")
    return redirect(url_for("pages.index"))


def _forget_session(tokens: dict) -> None:
    extension().tokens.forget(tokens["access_token"])
    session.clear()


def mark_signed_in() -> None:
    """Record that the person just proved who they are, for the session now in the cookie
    (after a sign-in with a provider or a passkey, or a right two-factor code)."""
    tokens = stored_tokens()
    if tokens is not None:
        session[SIGNED_IN_KEY] = {"session": _session_id(tokens), "at": int(time.time())}


def signed_in_recently() -> bool:
    """Whether this session proved who the person is within AUTH_RECENT_SIGN_IN_SECONDS, by
    the app's own record (see SIGNED_IN_KEY)."""
    tokens = stored_tokens()
    record = session.get(SIGNED_IN_KEY)
    if tokens is None or not isinstance(record, dict) or not isinstance(record.get("at"), int):
        return False
    if record.get("session") != _session_id(tokens):  # recorded for another session
        return False
    return time.time() - record["at"] <= current_app.config["AUTH_RECENT_SIGN_IN_SECONDS"]


def _session_id(tokens: Mapping) -> str | None:
    return decode_jwt(tokens["access_token"])["payload"].get("session_id")


def ask_to_sign_in_again(then: str, action: str):
    """Send the person through their provider again before ``action``; back to ``then``.

    A page with links, not a redirect: the request was a form POST, and Chrome applies the
    CSP's form-action to every redirect after one, the provider's site included.
    """
    tokens = stored_tokens()
    claims = decode_jwt(tokens["access_token"])["payload"] if tokens else {}
    theirs = set((claims.get("app_metadata") or {}).get("providers") or ())
    providers = [p for p in enabled_providers() if p["id"] in theirs] or enabled_providers()
    minutes = max(current_app.config["AUTH_RECENT_SIGN_IN_SECONDS"] // 60, 1)
    return render_template("sign_in_again.html", providers=providers, next=then,
                           action=action, minutes=minutes)
