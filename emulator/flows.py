"""The OAuth flow: /authorize, /callback and the PKCE code exchange (§1-§3)."""

import base64
import hashlib
import hmac
import re
import sqlite3
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, current_app, redirect

from . import linking, redirects, sessions, users
from .db import get_db
from .errors import ApiError, OAuthError
from .provider import ProviderError, get_github

KNOWN_PROVIDERS = {
    "apple", "azure", "bitbucket", "discord", "facebook", "figma", "fly", "github", "gitlab",
    "google", "kakao", "keycloak", "linkedin", "linkedin_oidc", "notion", "snapchat", "spotify",
    "slack", "slack_oidc", "twitch", "twitter", "workos", "zoom",
}
RESERVED = {
    "provider", "scopes", "client_id", "client_secret", "redirect_uri", "response_type", "state",
    "code_challenge", "code_challenge_method", "code_verifier",
}
CHALLENGE_CHARS = re.compile(r"[a-zA-Z0-9._~-]+")
ERROR_BY_STATUS = {400: "invalid_request", 401: "unauthorized_client", 403: "access_denied",
                   500: "server_error", 503: "temporarily_unavailable"}
ACCESS_DENIED_CODES = {"signup_disabled", "user_banned", "provider_email_needs_verification"}
NEEDS_VERIFICATION = ApiError(422, "provider_email_needs_verification",
                              "Unverified email with github. A confirmation email has been sent "
                              "to your github email")


# --- /authorize ---------------------------------------------------------------------------


def check_provider(name: str) -> None:
    """Only enabled, configured providers may start a flow (400 otherwise)."""
    enabled = {p.strip() for p in current_app.config["PROVIDERS"].split(",")}
    if name not in KNOWN_PROVIDERS:
        reason = f"Provider {name} could not be found"
    elif name != "github" or name not in enabled:
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


def provider_url(args: dict[str, str], state: str) -> str:
    """GitHub authorize URL: fixed OAuth params plus pass-through ones, sorted by key."""
    config = current_app.config
    scopes = ["user:email"] + [s for s in args.get("scopes", "").split(",") if s]
    params = {k: v for k, v in args.items() if k.lower() not in RESERVED}
    params.update(client_id=config["GITHUB_CLIENT_ID"].split(",")[0],
                  redirect_uri=config["GITHUB_REDIRECT_URI"], response_type="code",
                  scope=" ".join(scopes), state=state)
    return config["GITHUB_URL"] + "/login/oauth/authorize?" + urlencode(sorted(params.items()))


def start(args: dict[str, str], redirect_header: str | None, referer: str | None) -> Response:
    """Validate /authorize, store the flow state and send the browser to GitHub."""
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
            " provider_type, authentication_method, invite_token, referrer, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, 'oauth', ?, ?, ?, ?)",
            (state, str(uuid.uuid4()) if method else None, method,
             args.get("code_challenge") if method else None, provider, invite, referrer,
             now, now))
    return redirect(provider_url(args, state), 302)


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


def error_redirect(target: str, error: ApiError | OAuthError) -> Response:
    """302 to the target with the error in the query and the fragment (+ ``sb``)."""
    if isinstance(error, OAuthError):
        params = {"error": error.error, "error_description": error.description}
    else:
        kind = "access_denied" if error.error_code in ACCESS_DENIED_CODES else \
            ERROR_BY_STATUS.get(error.status, "server_error")
        params = {"error": kind, "error_code": error.error_code,
                  "error_description": error.message}
    fragment = urlencode(sorted({**params, "sb": ""}.items()))
    return redirect(add_params(target, params, fragment), 302)


def callback(values: dict[str, str]) -> Response:
    """Handle the provider's redirect back; every outcome is a redirect."""
    config = current_app.config
    try:
        flow = load_flow(values.get("state", ""))
    except ApiError as error:
        query = {"error": "invalid_request", "error_code": error.error_code,
                 "error_description": error.message}
        return redirect(add_params(config["SITE_URL"], query), 303)
    target = flow["referrer"] or config["SITE_URL"]
    try:
        return finish(flow, values, target)
    except (ApiError, OAuthError) as error:
        return error_redirect(target, error)


def fetch_profile(values: dict[str, str]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Check the provider's answer, exchange the code and read the GitHub profile."""
    if values.get("error"):
        raise OAuthError(values["error"], values.get("error_description", ""))
    code = values.get("code", "")
    if not code:
        raise ApiError(400, "bad_oauth_callback",
                       "OAuth callback with missing authorization code missing")
    github = get_github()
    try:
        token = github.exchange(code)
    except ProviderError as error:
        raise ApiError(500, "unexpected_failure",
                       f"Unable to exchange external code: {code[:4]}") from error
    try:
        profile, emails = github.profile(token)
    except ProviderError as error:
        raise ApiError(500, "unexpected_failure",
                       "Error getting user profile from external provider") from error
    if not isinstance(profile, dict) or not isinstance(emails, list) or \
            not all(isinstance(e, dict) for e in emails):
        raise ApiError(500, "unexpected_failure",
                       "Error getting user profile from external provider")
    if not any(e.get("email") for e in emails):
        raise ApiError(500, "unexpected_failure",
                       "Error getting user email from external provider")
    return token, profile, emails


def finish(flow: sqlite3.Row, values: dict[str, str], target: str) -> Response:
    """Sign the GitHub user in and hand back a code (PKCE) or tokens (implicit)."""
    token, profile, emails = fetch_profile(values)
    config = current_app.config
    api_host = get_github_api_host(config)
    data = linking.identity_data(profile, emails, api_host)
    now = config["CLOCK"]()
    with get_db().transaction() as conn:
        user = linking.find_or_create(conn, data, emails, now)
        if users.is_banned(user, now):
            raise ApiError(403, "user_banned", "User is banned")
        unverified = linking.needs_verification(conn, user, data, now)
        if not unverified:
            location = complete(conn, flow, user, token, target, now)
    if unverified:  # the user row is kept (committed) even though sign-in stops here
        raise NEEDS_VERIFICATION
    return redirect(location, 302)


def get_github_api_host(config: dict[str, Any]) -> str:
    """The ``iss`` GoTrue records for GitHub identities."""
    base = config["GITHUB_URL"]
    return base if base.endswith("api.github.com") else base + "/api/v3"


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
    body = sessions.token_response(conn, user, session, refresh_token, now)
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
        session, refresh_token = sessions.create_session(conn, user, "oauth", now)
        conn.execute("DELETE FROM flow_states WHERE id = ?", (flow["id"],))
        return sessions.token_response(conn, user, session, refresh_token, now,
                                       provider_token=flow["provider_access_token"],
                                       provider_refresh_token=flow["provider_refresh_token"])
