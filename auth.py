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
from werkzeug.exceptions import TooManyRequests

import pending_sign_outs
from flask_storage import PROVIDER_TOKEN, stored_tokens
from pending_sign_outs import Outcome
from sessions import SessionEnded, current_claims, trust, unavailable
from supabase_client import extension, get_supabase
from supabase_errors import SUPABASE_ERRORS, Failure, classify, out_of_reach, retry_after
from tokens import InvalidToken

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()

VERIFIER_KEY = f"{STORAGE_KEY}-code-verifier"  # where supabase_auth puts the PKCE verifier
FLOWS_KEY = "auth_flows"  # sign-ins under way in this browser, newest last
MAX_FLOWS = 3  # enough for a few tabs signing in at once, small enough for the cookie
FLOW_LIFETIME = 600  # seconds; Supabase itself lets a sign-in take five minutes
SIGN_OUT_SCOPES = ("local", "global", "others")
RECENT_SIGN_IN = 600  # seconds since sign-in within which unlinking or signing out everywhere works
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
        """Set by the team in app_metadata (people cannot write it themselves)."""
        return self.app_metadata.get("role")


def init_app(app: Flask) -> None:
    """Wire Flask-Login to the user that ``load_user`` verified for this request."""
    login_manager.init_app(app)
    # The tokens are the binding between browser and account; Flask-Login's IP/user-agent hash
    # would only rewrite the cookie on every request.
    login_manager.session_protection = None
    login_manager.request_loader(lambda _request: g.get("auth_user"))
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
    """The configured providers with their display names, in config order."""
    return [{"id": provider, "name": provider_name(provider)}
            for provider in current_app.config["AUTH_PROVIDERS"]]


@bp.get("/signin")
def signin_page():
    """The sign-in page: one button per provider, keeping where the person wanted to go."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("pages.index"))
    return render_template("signin.html", next=safe_next(request.args.get("next")),
                           providers=enabled_providers())


@bp.get("/signin/<provider>")
def signin(provider: str):
    """Start the PKCE flow: renew the session, keep the verifier, go to Supabase."""
    require_provider(provider)
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
        return _sign_in_failed(
            400, "This sign-in was started in another browser, or the cookie that ties it to "
                 "this browser was lost. Please start again here.")
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


def _exchange_failed(error: Exception, flow: dict):
    failure = classify(error, expected=frozenset(CALLBACK_ERRORS))
    if failure is Failure.RATE_LIMITED:
        # Supabase checks its limit before the code, so the same link works once it refills.
        log.warning("code exchange rate-limited by Supabase (429)")
        wait = retry_after(error)
        raise TooManyRequests(f"Too many sign-ins right now. Please try again in {wait} seconds.",
                              retry_after=wait)
    if failure in (Failure.UNAVAILABLE, Failure.MISCONFIGURED):
        unavailable("finishing your sign-in", error, failure)
    _drop_flow(flow)  # its code is used up or refused: nothing of it is needed any more
    if current_user.is_authenticated:
        return redirect(url_for("pages.index"))
    status, message = CALLBACK_ERRORS.get(
        error.code, (400, "Sign-in could not be completed. Please start again."))
    log.info("code exchange refused: %s", error.code)
    return _sign_in_failed(status, message)


def _signed_in(new_session, flow: dict, previous: dict | None):
    tokens = session[STORAGE_KEY]  # written by FlaskSessionStorage during the exchange
    if flow.get("provider", "github") != "github":
        # The app only calls GitHub's API: keep the GitHub token the session already had.
        _keep_provider_token(tokens, previous)
    other_flows = [other for other in _pending_flows() if other["id"] != flow["id"]]
    session.clear()
    session[STORAGE_KEY] = tokens
    _store_flows(other_flows)
    session.permanent = True
    user = User(trust(new_session.access_token))
    if flow.get("intent") == "link":
        flash(f"{provider_name(flow['provider'])} is now linked to your account.", "success")
    else:
        flash(f"Signed in as {user.name}.", "success")
    return redirect(flow["next"])


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
    if scope == "global" and not signed_in_recently(decode_jwt(tokens["access_token"])["payload"]):
        return ask_to_sign_in_again(url_for("account.confirm_sign_out_everywhere"),
                                    "sign out everywhere")
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


def signed_in_recently(claims: Mapping) -> bool:
    """Whether the person signed in within RECENT_SIGN_IN seconds (the token's amr times)."""
    oldest = time.time() - RECENT_SIGN_IN
    return any(isinstance(entry, Mapping) and isinstance(entry.get("timestamp"), int)
               and entry["timestamp"] >= oldest for entry in claims.get("amr") or ())


def ask_to_sign_in_again(then: str, action: str):
    """Send the person through their provider again before ``action``; back to ``then``.

    A page with links, not a redirect: the request was a form POST, and Chrome applies the
    CSP's form-action to every redirect after one, the provider's site included.
    """
    tokens = stored_tokens()
    claims = decode_jwt(tokens["access_token"])["payload"] if tokens else {}
    theirs = set((claims.get("app_metadata") or {}).get("providers") or ())
    providers = [p for p in enabled_providers() if p["id"] in theirs] or enabled_providers()
    return render_template("sign_in_again.html", providers=providers, next=then,
                           action=action)
