"""The OAuth flow: /authorize (and link requests), /callback and the PKCE code exchange."""

import base64
import hashlib
import hmac
import re
import sqlite3
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, current_app, redirect

from . import audit, linking, redirects, sessions, users
from .config import KNOWN_PROVIDERS
from .db import get_db
from .errors import ApiError, OAuthError
from .provider import DEFAULT_SCOPES, ProviderError, UserData, get_provider
from .stand_in import oauth_app

RESERVED = {
    "provider", "scopes", "client_id", "client_secret", "redirect_uri", "response_type", "state",
    "code_challenge", "code_challenge_method", "code_verifier",
}
CHALLENGE_CHARS = re.compile(r"[a-zA-Z0-9._~-]+")
ERROR_BY_STATUS = {400: "invalid_request", 401: "unauthorized_client", 403: "access_denied",
                   500: "server_error", 503: "temporarily_unavailable"}
ACCESS_DENIED_CODES = {"signup_disabled", "user_banned", "provider_email_needs_verification"}
UNVERIFIED = "Unverified email with {0}. A confirmation email has been sent to your {0} email"


# --- /authorize ---------------------------------------------------------------------------


def check_provider(name: str) -> None:
    """Only enabled, configured providers may start a flow (400 otherwise)."""
    if name not in KNOWN_PROVIDERS:
        reason = f"Provider {name} could not be found"
    elif name not in current_app.config["PROVIDERS"]:
        reason = "provider is not enabled"
    else:
        return
    raise ApiError(400, "validation_failed", f"Unsupported provider: {reason}")


def check_pkce(challenge: str, method: str) -> str | None:
    """Validate the PKCE pair; return the lower-case method, or None for an implicit flow."""
    if not challenge and not method:
        return None
    if not challenge or not method:
        raise ApiError(400, "validation_failed",
                       "PKCE flow requires code_challenge_method and code_challenge")
    if not 43 <= len(challenge) <= 128:
        raise ApiError(400, "validation_failed",
                       "code challenge has to be between 43 and 128 characters")
    if not CHALLENGE_CHARS.fullmatch(challenge):
        raise ApiError(400, "validation_failed", "code challenge can only contain alphanumeric "
                       "characters, hyphens, periods, underscores and tildes")
    if method.lower() not in {"s256", "plain"}:
        raise ApiError(400, "validation_failed", "Invalid code_challenge_method")
    return method.lower()


def provider_url(name: str, args: dict[str, str], state: str) -> str:
    """Provider authorize URL: fixed OAuth params plus pass-through ones, sorted by key."""
    app = oauth_app(name)
    scopes = DEFAULT_SCOPES.get(name, ["openid", "email", "profile"]) + \
        [s for s in args.get("scopes", "").split(",") if s]
    params = {k: v for k, v in args.items() if k.lower() not in RESERVED}
    params.update(client_id=app.client_id.split(",")[0], redirect_uri=app.redirect_uri,
                  response_type="code", scope=" ".join(scopes), state=state)
    return get_provider(name).authorize_endpoint + "?" + urlencode(sorted(params.items()))


def start(args: dict[str, str], redirect_header: str | None, referer: str | None,
          linking_target_id: str | None = None) -> str:
    """Validate /authorize (or a link request), store the flow state; return the provider URL."""
    config = current_app.config
    provider = args.get("provider", "").lower()
    check_provider(provider)
    referrer = redirects.choose_referrer(
        [redirect_header or args.get("redirect_to"), referer], config["SITE_URL"],
        redirects.allow_list(config["URI_ALLOW_LIST"]))
    method = check_pkce(args.get("code_challenge", ""), args.get("code_challenge_method", ""))
    invite = args.get("invite_token") or None
    if invite and not get_db().one("SELECT 1 FROM users WHERE confirmation_token = ?", (invite,)):
        raise ApiError(404, "user_not_found", "User not found")
    state, now = str(uuid.uuid4()), config["CLOCK"]()
    with get_db().transaction() as conn:
        conn.execute(
            "INSERT INTO flow_states (id, auth_code, code_challenge_method, code_challenge,"
            " provider_type, authentication_method, invite_token, referrer, linking_target_id,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'oauth', ?, ?, ?, ?, ?)",
            (state, str(uuid.uuid4()) if method else None, method,
             args.get("code_challenge") if method else None, provider, invite, referrer,
             linking_target_id, now, now))
    return provider_url(provider, args, state)


# --- /callback ------------------------------------------------------------------------------


def state_error(status_code: str, message: str) -> ApiError:
    """A flow-state problem (answered with a 303 to SITE_URL)."""
    return ApiError(400, status_code, message)


def load_flow(state: str) -> sqlite3.Row:
    """The loadFlowState middleware: find a live, unused flow state or raise ApiError."""
    if not state:
        raise state_error("bad_oauth_callback", "OAuth state parameter missing")
    try:
        state = str(uuid.UUID(state))
    except ValueError as error:
        raise state_error("bad_oauth_state", "OAuth state parameter is invalid") from error
    flow = get_db().one("SELECT * FROM flow_states WHERE id = ?", (state,))
    if flow is None:
        raise state_error("bad_oauth_state", "OAuth state not found or expired")
    config = current_app.config
    if flow["created_at"] + config["FLOW_STATE_EXPIRY"] < config["CLOCK"]():
        raise state_error("bad_oauth_state", "OAuth state has expired")
    if flow["code_challenge"] and flow["user_id"]:
        raise state_error("flow_state_already_used", "State has already been used")
    if flow["linking_target_id"] and not users.load(get_db(), flow["linking_target_id"]):
        raise ApiError(422, "user_not_found", "Linking target user not found")
    return flow


def add_params(target: str, query: dict[str, str] | None = None,
               fragment: str | None = None) -> str:
    """Set query params on a URL (its own ones re-encoded sorted, like Go) and the fragment."""
    parts = urlsplit(target)
    new_query = parts.query
    if query:
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in query]
        pairs += list(query.items())
        new_query = urlencode(sorted(pairs, key=lambda pair: pair[0]))
    return urlunsplit(parts._replace(query=new_query,
                                     fragment=parts.fragment if fragment is None else fragment))


def error_params(error: ApiError | OAuthError) -> dict[str, str]:
    """getErrorQueryString: ``error`` (+ ``error_code``) and ``error_description``."""
    if isinstance(error, OAuthError):
        return {"error": error.error, "error_description": error.description}
    kind = "access_denied" if error.error_code in ACCESS_DENIED_CODES else \
        ERROR_BY_STATUS.get(error.status, "server_error")
    return {"error": kind, "error_code": error.error_code, "error_description": error.message}


def error_redirect(target: str, error: ApiError | OAuthError) -> Response:
    """302 to the target with the error in the query and the fragment (+ ``sb``)."""
    params = error_params(error)
    fragment = urlencode(sorted({**params, "sb": ""}.items()))
    return redirect(add_params(target, params, fragment), 302)


def callback(values: dict[str, str]) -> Response:
    """Handle the provider's redirect back; every outcome is a redirect."""
    config = current_app.config
    try:
        flow = load_flow(values.get("state", ""))
    except ApiError as error:
        return redirect(add_params(config["SITE_URL"], error_params(error)), 303)
    target = flow["referrer"] or config["SITE_URL"]
    try:
        return finish(flow, values, target)
    except (ApiError, OAuthError) as error:
        return error_redirect(target, error)


def fetch_user_data(provider: str, values: dict[str, str]) -> tuple[str, UserData]:
    """Check the provider's answer, exchange the code and read the provider's user."""
    if values.get("error"):
        raise OAuthError(values["error"], values.get("error_description", ""))
    code = values.get("code", "")
    if not code:
        raise ApiError(400, "bad_oauth_callback",
                       "OAuth callback with missing authorization code missing")
    client = get_provider(provider)
    try:
        token = client.exchange(code)
    except ProviderError as error:
        raise ApiError(500, "unexpected_failure",
                       f"Unable to exchange external code: {code[:4]}") from error
    try:
        user_data = client.user_data(token)
    except ProviderError as error:
        raise ApiError(500, "unexpected_failure",
                       "Error getting user profile from external provider") from error
    if not user_data.emails:
        raise ApiError(500, "unexpected_failure",
                       "Error getting user email from external provider")
    return token, user_data


def finish(flow: sqlite3.Row, values: dict[str, str], target: str) -> Response:
    """Sign the provider's user in (or link it) and hand back a code or tokens."""
    provider = flow["provider_type"]
    token, user_data = fetch_user_data(provider, values)
    data = linking.identity_data(*user_data)
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        if flow["linking_target_id"]:
            user = users.load(conn, flow["linking_target_id"])
            unverified = linking.link_to_target(conn, user, provider, data, now)
            code = "email_not_confirmed"
        else:
            user = sign_in_user(conn, provider, data, user_data.emails, now)
            was_confirmed = user["email_confirmed_at"] is not None
            unverified = linking.needs_verification(conn, user, data, now)
            code = "provider_email_needs_verification"
            if not unverified:
                record_sign_in(conn, user, provider, was_confirmed, now)
        if not unverified:
            location = complete(conn, flow, user, token, target, now)
    if unverified:  # the user row is kept (committed) even though sign-in stops here
        raise ApiError(422, code, UNVERIFIED.format(provider))
    return redirect(location, 302)


def sign_in_user(conn: sqlite3.Connection, provider: str, data: dict[str, Any],
                 emails: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """Find, link or create the user; a banned user stops here."""
    user = linking.find_or_create(conn, provider, data, emails, now)
    if users.is_banned(user, now):
        raise ApiError(403, "user_banned", "User is banned")
    return user


def record_sign_in(conn: sqlite3.Connection, user: dict[str, Any], provider: str,
                   was_confirmed: bool, now: float) -> None:
    """user_signedup when this sign-in confirmed the user, else login (external.go)."""
    confirmed_now = not was_confirmed and user["email_confirmed_at"] is not None
    action = audit.USER_SIGNED_UP if confirmed_now else audit.LOGIN
    audit.record(conn, user, action, now, {"provider": provider})


def complete(conn: sqlite3.Connection, flow: sqlite3.Row, user: dict[str, Any], token: str,
             target: str, now: float) -> str:
    """Store the user on a PKCE flow (code redirect) or issue tokens (implicit redirect)."""
    if flow["code_challenge"]:
        claimed = conn.execute(
            "UPDATE flow_states SET user_id = ?, provider_access_token = ?,"
            " auth_code_issued_at = ?, updated_at = ? WHERE id = ? AND user_id IS NULL",
            (user["id"], token, now, now, flow["id"]))
        if claimed.rowcount != 1:
            raise ApiError(400, "flow_state_already_used", "State has already been used")
        return add_params(target, {"code": flow["auth_code"]})
    conn.execute("DELETE FROM flow_states WHERE id = ?", (flow["id"],))
    session, refresh_token = sessions.create_session(conn, user, "oauth", now)
    try:
        body = sessions.token_response(conn, user, session, refresh_token, now)
    except ApiError as error:  # the access token hook failed
        # The real server meets it wrapped inside its callback's transaction: the redirect
        # carries the error's text ("<status>: <message>") as a server_error, with no code.
        raise OAuthError("server_error", f"{error.status}: {error.message}") from error
    fragment = {"access_token": body["access_token"], "expires_at": str(body["expires_at"]),
                "expires_in": str(body["expires_in"]), "provider_token": token,
                "refresh_token": refresh_token, "sb": "", "token_type": "bearer"}
    return add_params(target, None, urlencode(sorted(fragment.items())))


# --- POST /token?grant_type=pkce -------------------------------------------------------------


def verifier_matches(flow: sqlite3.Row, verifier: str) -> bool:
    """Compare the verifier with the stored challenge in constant time."""
    if flow["code_challenge_method"] == "s256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(verifier.encode(), (flow["code_challenge"] or "").encode())


def exchange(auth_code: str, verifier: str) -> dict[str, Any]:
    """Trade an auth code + verifier for a session; the code works once."""
    if not auth_code or not verifier:
        raise ApiError(400, "validation_failed",
                       "invalid request: both auth code and code verifier should be non-empty")
    config = current_app.config
    now = config["CLOCK"]()
    with get_db().transaction() as conn:
        flow = conn.execute("SELECT * FROM flow_states WHERE auth_code = ? AND user_id IS NOT NULL",
                            (auth_code,)).fetchone()
        if flow is None:
            raise ApiError(404, "flow_state_not_found",
                           "invalid flow state, no valid flow state found")
        if flow["created_at"] + config["FLOW_STATE_EXPIRY"] < now:
            raise ApiError(422, "flow_state_expired", "invalid flow state, flow state has expired")
        if not verifier_matches(flow, verifier):
            raise ApiError(400, "bad_code_verifier",
                           "code challenge does not match previously saved code verifier")
        user = users.load(conn, flow["user_id"])
        if user is None:
            raise ApiError(404, "user_not_found", "User not found")
        audit.record(conn, user, audit.LOGIN, now, {"provider_type": flow["provider_type"]})
        session, refresh_token = sessions.create_session(conn, user, "oauth", now)
        conn.execute("DELETE FROM flow_states WHERE id = ?", (flow["id"],))
        return sessions.token_response(conn, user, session, refresh_token, now,
                                       provider_token=flow["provider_access_token"],
                                       provider_refresh_token=flow["provider_refresh_token"])
