"""The stand-in for every other enabled provider (Google, GitLab, …), one blueprint each.

Registered once per provider under ``/<provider>``. The consent page and accounts are the
shared ones from ``stand_in.py``; the token endpoint answers JSON and ``/userinfo`` returns
the provider's own user shape (Google's userinfo / ID-token claims, GitLab's ``/user``,
plain OpenID Connect claims otherwise). These are not the providers' real wire protocols:
only the auth server inside this emulator talks to them.
"""

import sqlite3
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from . import stand_in
from .errors import json_response
from .stand_in import StandInError

TOKEN_LIFETIME = 3599
OAUTH_ERRORS = {"incorrect_client_credentials": ("invalid_client", 401),
                "bad_verification_code": ("invalid_grant", 400),
                "redirect_uri_mismatch": ("invalid_grant", 400)}

bp = Blueprint("oauth_stand_in", __name__)


def provider() -> str:
    """This request's provider: the name the blueprint was registered under."""
    return request.blueprint


def issuer(name: str) -> str:
    """The stand-in's base URL, used as the ``iss`` of its users."""
    return f"{current_app.config['PUBLIC_URL']}/{name}"


def google_json(account: sqlite3.Row) -> dict[str, Any]:
    """Google's userinfo / ID-token claims for an account."""
    first, _, last = (account["name"] or "").partition(" ")
    return {"iss": issuer("google"), "sub": str(account["id"]), "id": str(account["id"]),
            "email": account["email"], "email_verified": bool(account["verified"]),
            "verified_email": bool(account["verified"]), "name": account["name"],
            "given_name": first, "family_name": last,
            "picture": stand_in.avatar_url("google", account["id"]), "locale": "en"}


def gitlab_json(account: sqlite3.Row) -> dict[str, Any]:
    """GitLab's ``GET /api/v4/user`` for an account."""
    created = stand_in.utc_time(account["created_at"]).replace("Z", ".000Z")
    return {"id": account["id"], "username": account["login"], "name": account["name"],
            "state": "active", "avatar_url": stand_in.avatar_url("gitlab", account["id"]),
            "web_url": f"https://gitlab.com/{account['login']}", "created_at": created,
            "email": account["email"], "confirmed_at": created if account["verified"] else None}


def oidc_json(name: str, account: sqlite3.Row) -> dict[str, Any]:
    """Standard OpenID Connect claims, for providers without a shape of their own."""
    return {"iss": issuer(name), "sub": str(account["id"]), "name": account["name"],
            "preferred_username": account["login"], "email": account["email"],
            "email_verified": bool(account["verified"]),
            "picture": stand_in.avatar_url(name, account["id"])}


def profile_json(name: str, account: sqlite3.Row) -> dict[str, Any]:
    """The provider's user document for an account."""
    if name == "google":
        return google_json(account)
    if name == "gitlab":
        return gitlab_json(account)
    return oidc_json(name, account)


@bp.get("/oauth/authorize")
def authorize() -> Response | str:
    """Consent page (or auto-login)."""
    return stand_in.show_consent(provider())


@bp.post("/oauth/authorize")
def consent() -> Response:
    """Authorize / Cancel."""
    return stand_in.handle_consent(provider())


@bp.post("/oauth/token")
def token() -> Response:
    """Exchange a code (client credentials by Basic or in the body); JSON either way."""
    auth = request.authorization
    client_id, secret = (auth.username or "", auth.password or "") if auth and \
        auth.type == "basic" else (request.values.get("client_id", ""),
                                   request.values.get("client_secret", ""))
    try:
        body = stand_in.redeem_code(provider(), client_id, secret, request.values.get("code", ""),
                                    request.values.get("redirect_uri"))
    except StandInError as error:
        kind, status = OAUTH_ERRORS[error.error]
        return json_response({"error": kind, "error_description": str(error)}, status)
    return json_response({**body, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME})


@bp.get("/userinfo")
def userinfo() -> Response:
    """The token's user in the provider's shape; 401 for a missing or unknown token."""
    account = stand_in.bearer_account(
        provider(), lambda message: json_response(
            {"error": "invalid_token", "error_description": message}, 401))
    if isinstance(account, Response):
        return account
    return json_response(profile_json(provider(), account))


@bp.get("/avatars/<int:account_id>.svg")
def avatar(account_id: int) -> Response:
    """A generated avatar."""
    return stand_in.avatar_response(provider(), account_id)


@bp.post("/_accounts")
def seed_account() -> Response:
    """Emulator-only: create or update an account from JSON."""
    name = provider()
    return stand_in.seed_from_request(name, lambda account: profile_json(name, account))


def init_app(app: Flask) -> None:
    """Serve a stand-in under ``/<provider>`` for each enabled provider except GitHub."""
    for name in app.config["PROVIDERS"]:
        if name != "github":
            app.register_blueprint(bp, name=name, url_prefix=f"/{name}")
