"""Supabase Auth API under /auth/v1: authorize, callback, token, user, logout and metadata."""

import json
import re
import uuid
from typing import Any

from flask import Blueprint, Response, current_app, redirect, request

from . import flows, linking, ratelimit, sessions, users
from .db import get_db
from .errors import ApiError, json_response
from .tokens import TokenError

bp = Blueprint("auth_api", __name__, url_prefix="/auth/v1")

BEARER = re.compile(r"(?i)bearer (\S+)\Z")
HEALTH = {"version": "v2.196.0-emulator", "name": "GoTrue",
          "description": "GoTrue is a user registration and authentication API"}
EXTERNAL_NAMES = (
    "anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook", "snapchat", "figma",
    "fly", "github", "gitlab", "google", "keycloak", "kakao", "linkedin", "linkedin_oidc",
    "notion", "spotify", "slack", "slack_oidc", "workos", "twitch", "twitter", "email", "phone",
    "zoom",
)
GO_TYPES = {str: "string", bool: "bool", dict: "map[string]interface {}"}
# The grants the real server rate-limits together (web3 has its own limiter); the emulator
# implements pkce and refresh_token, the others count and then get unsupported_grant_type.
LIMITED_GRANTS = {"password", "refresh_token", "id_token", "pkce"}
JSON_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array",
              dict: "object", type(None): "null"}


# --- request helpers ----------------------------------------------------------------------


def bad_json(detail: str) -> ApiError:
    """The real server's answer to a body it cannot decode."""
    return ApiError(400, "bad_json", f"Could not parse request body as JSON: {detail}")


def read_json(fields: dict[str, type]) -> dict[str, Any]:
    """Decode the JSON body like Go's json.Unmarshal into a struct with these fields."""
    raw = request.get_data(cache=True)
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        raise bad_json("EOF")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        if error.pos >= len(text.rstrip()):
            raise bad_json("unexpected end of JSON input") from error
        raise bad_json(f"invalid character {text[error.pos]!r} looking for beginning of value") \
            from error
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_json(f"json: cannot unmarshal {JSON_TYPES[type(body)]} into Go value")
    for name, kind in fields.items():
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise bad_json(f"json: cannot unmarshal {JSON_TYPES[type(value)]} into Go struct "
                           f"field .{name} of type {GO_TYPES[kind]}")
    return body


def bearer_claims() -> dict[str, Any]:
    """Verify the Authorization bearer token (401 / 403 as requireAuthentication does)."""
    match = BEARER.match(request.headers.get("Authorization", ""))
    if match is None:
        raise ApiError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    try:
        return current_app.extensions["emulator.tokens"].verify(match.group(1))
    except TokenError as error:
        raise ApiError(403, "bad_jwt",
                       f"invalid JWT: unable to parse or verify signature, {error}") from error


def current_user() -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the user and check the session behind a bearer token; return (claims, user)."""
    claims = bearer_claims()
    sub = claims.get("sub")
    if not sub:
        raise ApiError(403, "bad_jwt", "invalid claim: missing sub claim")
    try:
        uuid.UUID(str(sub))
    except ValueError as error:
        raise ApiError(400, "bad_jwt", "invalid claim: sub claim must be a UUID") from error
    user = users.load(get_db(), str(sub))
    if user is None:
        raise ApiError(403, "user_not_found", "User from sub claim in JWT does not exist")
    session_id = claims.get("session_id")
    if session_id and not get_db().one("SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
        raise ApiError(403, "session_not_found",
                       "Session from session_id claim in JWT does not exist")
    if users.is_banned(user, current_app.config["CLOCK"]()):
        raise ApiError(403, "user_banned", "User is banned")
    request_aud = request.headers.get("X-JWT-AUD") or claims.get("aud")
    if request_aud != claims.get("aud"):
        raise ApiError(400, "validation_failed", "Token audience doesn't match request audience")
    return claims, user


# --- views --------------------------------------------------------------------------------


@bp.get("/authorize")
def authorize() -> Response:
    """Start an OAuth flow: 302 to the provider."""
    args = {key: request.args.get(key, "") for key in request.args}
    return redirect(flows.start(args, request.headers.get("redirect_to"),
                                request.headers.get("Referer")), 302)


@bp.route("/callback", methods=["GET", "POST"])
def callback() -> Response:
    """Provider redirect back: 302 with a code (or error) to the app, or 303 to SITE_URL."""
    values = {key: request.values.get(key, "") for key in request.values}
    return flows.callback(values)


@bp.post("/token")
def token() -> Response:
    """Exchange an auth code (pkce) or rotate a refresh token (refresh_token)."""
    request.get_data(cache=True)  # keep the body for JSON even if form parsing runs
    grant_type = request.values.get("grant_type", "")
    if grant_type not in LIMITED_GRANTS:
        raise ApiError(400, "invalid_credentials", "unsupported_grant_type")
    ratelimit.check_token_request()  # before the grant runs: a refused code stays usable
    if grant_type == "pkce":
        body = read_json({"auth_code": str, "code_verifier": str})
        return json_response(flows.exchange(body.get("auth_code") or "",
                                            body.get("code_verifier") or ""))
    if grant_type == "refresh_token":
        body = read_json({"refresh_token": str})
        return json_response(sessions.refresh(body.get("refresh_token") or ""))
    raise ApiError(400, "invalid_credentials", "unsupported_grant_type")


@bp.get("/user")
def user() -> Response:
    """The signed-in user, fresh from the database."""
    _, current = current_user()
    return json_response(users.full_json(get_db(), current))


def require_manual_linking() -> None:
    """requireManualLinkingEnabled: 404 unless MANUAL_LINKING is on."""
    if not current_app.config["MANUAL_LINKING"]:
        raise ApiError(404, "manual_linking_disabled", "Manual linking is disabled")


@bp.get("/user/identities/authorize")
def link_identity() -> Response:
    """Start linking a provider to the signed-in user: 302, or JSON ``{url}`` on request."""
    _, current = current_user()
    require_manual_linking()
    args = {key: request.args.get(key, "") for key in request.args}
    url = flows.start(args, request.headers.get("redirect_to"), request.headers.get("Referer"),
                      linking_target_id=current["id"])
    if request.args.get("skip_http_redirect") == "true":
        return json_response({"url": url})
    return redirect(url, 302)


@bp.delete("/user/identities/<identity_id>")
def unlink_identity(identity_id: str) -> Response:
    """Remove one of the signed-in user's identities; 200 ``{}``."""
    claims, current = current_user()
    require_manual_linking()
    try:
        identity_id = str(uuid.UUID(identity_id))
    except ValueError as error:
        raise ApiError(404, "validation_failed", "identity_id must be an UUID") from error
    if (request.headers.get("X-JWT-AUD") or claims.get("aud")) != claims.get("aud"):
        raise ApiError(403, "unexpected_audience",
                       "Token audience doesn't match request audience")
    linking.unlink(current, identity_id)
    return json_response({})


@bp.post("/logout")
def logout() -> Response:
    """Delete sessions for scope global (default), local or others; 204."""
    scope = request.args.get("scope", "") or "global"
    claims, current = current_user()
    if scope not in {"global", "local", "others"}:
        raise ApiError(400, "validation_failed", f'Unsupported logout scope "{scope}"')
    sessions.logout(current["id"], claims.get("session_id"), scope)
    return Response(status=204)


@bp.get("/settings")
def settings() -> Response:
    """Public settings: enabled providers and signup flags."""
    config = current_app.config
    external = {name: name == "email" or name in config["PROVIDERS"] for name in EXTERNAL_NAMES}
    return json_response({
        "external": external, "disable_signup": config["DISABLE_SIGNUP"],
        "mailer_autoconfirm": config["MAILER_AUTOCONFIRM"], "phone_autoconfirm": False,
        "sms_provider": "", "saml_enabled": False, "saml_private_key_next_configured": False,
        "passkeys_enabled": config["PASSKEY_ENABLED"],
    })


@bp.get("/health")
def health() -> Response:
    """Liveness and version."""
    return json_response(HEALTH)


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Public signing keys (empty with HS256)."""
    keys = current_app.extensions["emulator.tokens"].jwks
    return json_response(keys, headers={"Cache-Control": "public, max-age=600"})


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID discovery document for the issuer."""
    issuer = current_app.extensions["emulator.tokens"].issuer
    alg = current_app.config["JWT_ALG"]
    return json_response({
        "issuer": issuer,
        "authorization_endpoint": issuer + "/oauth/authorize",
        "token_endpoint": issuer + "/oauth/token",
        "jwks_uri": issuer + "/.well-known/jwks.json",
        "userinfo_endpoint": issuer + "/oauth/userinfo",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
    })
