"""What every provider stand-in shares: accounts, codes, tokens, consent page, avatars.

Each function takes the provider name (``github``, ``google``, ``gitlab``, …); the
blueprints in ``github.py`` and ``oauth_stand_in.py`` only add their provider's paths and
JSON shapes.
"""

import datetime
import hashlib
import secrets
import sqlite3
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
)

from .db import get_db
from .errors import json_response
from .forms import CONSENT_CSP, check_csrf, strict_headers

DEFAULT_CREATED_AT = 1295981076.0  # when the default octocat accounts were created (2011)
CODE_LIFETIME = 600  # GitHub codes expire after ten minutes; used for every stand-in
TOKEN_CHARS = string.ascii_letters + string.digits
DENIED = "The user has denied your application access."
TOKEN_ERRORS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL for this "
                             "application.",
    "bad_verification_code": "The code passed is incorrect or expired.",
}
GITHUB_DOCS = ("https://docs.github.com/apps/managing-oauth-apps/"
               "troubleshooting-oauth-app-access-token-request-errors/")


@dataclass(frozen=True)
class Spec:
    """How one provider's stand-in names things."""

    title: str
    default_id: int  # the seeded "octocat" account
    first_new_id: int  # accounts created later count up from here
    token_prefix: str


SPECS = {
    "github": Spec("GitHub", 583231, 1_000_000, "gho_"),
    "google": Spec("Google", 104_729_583_231_000_001, 104_729_583_231_100_000, "ya29."),
    "gitlab": Spec("GitLab", 5_832_310, 10_000_000, "glpat-"),
}


def spec(provider: str) -> Spec:
    """The provider's spec; providers without one get a generic stand-in."""
    return SPECS.get(provider) or Spec(provider.replace("_", " ").title(), 583231, 1_000_000, "")


@dataclass(frozen=True)
class OAuthApp:
    """The OAuth app the auth server is registered as at a stand-in."""

    client_id: str
    client_secret: str
    redirect_uri: str


def oauth_app(provider: str) -> OAuthApp:
    """GitHub's app comes from config; the other stand-ins use fixed dev credentials."""
    config = current_app.config
    if provider == "github":
        return OAuthApp(config["GITHUB_CLIENT_ID"], config["GITHUB_CLIENT_SECRET"],
                        config["GITHUB_REDIRECT_URI"])
    return OAuthApp(f"emulator-{provider}-client-id", f"emulator-{provider}-client-secret",
                    config["PUBLIC_URL"] + "/auth/v1/callback")


class StandInError(Exception):
    """A token-endpoint error in GitHub's words (``error`` / ``error_description``)."""

    def __init__(self, error: str) -> None:
        super().__init__(TOKEN_ERRORS[error])
        self.error = error


def utc_time(seconds: float) -> str:
    """RFC 3339 in UTC with whole seconds, as GitHub shows times."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- accounts ------------------------------------------------------------------------------


def default_account(provider: str) -> dict[str, Any]:
    """The account every stand-in starts with."""
    email = "octocat@example.com" if provider == "github" else f"octocat+{provider}@example.com"
    return {"login": "octocat", "name": "The Octocat", "email": email, "verified": True,
            "id": spec(provider).default_id}


def seed_defaults(app: Flask) -> None:
    """Create each served stand-in's default account once (GitHub's dates from 2011)."""
    with app.app_context(), get_db().transaction() as conn:
        for provider in served_providers(app.config):
            if find_account(conn, provider, "octocat") is None:
                save_account(conn, provider, default_account(provider), DEFAULT_CREATED_AT)


def served_providers(config: dict[str, Any]) -> tuple[str, ...]:
    """GitHub's stand-in is always served; the others when enabled."""
    return tuple(dict.fromkeys(("github", *config["PROVIDERS"])))


def find_account(conn: sqlite3.Connection, provider: str, login: str) -> sqlite3.Row | None:
    """Return the provider's account with this login, or None."""
    return conn.execute("SELECT * FROM stand_in_accounts WHERE provider = ? AND login = ?",
                        (provider, login)).fetchone()


def account_by_id(provider: str, account_id: int) -> sqlite3.Row | None:
    """Return the provider's account with this id, or None."""
    return get_db().one("SELECT * FROM stand_in_accounts WHERE provider = ? AND id = ?",
                        (provider, account_id))


def save_account(conn: sqlite3.Connection, provider: str, fields: dict[str, Any],
                 now: float) -> sqlite3.Row:
    """Create or update an account by login; a new one gets the next free id."""
    existing = find_account(conn, provider, fields["login"])
    account_id = fields.get("id") or (existing["id"] if existing else None)
    if account_id is None:
        top = conn.execute("SELECT max(id) FROM stand_in_accounts WHERE provider = ?",
                           (provider,)).fetchone()[0] or 0
        account_id = max(top + 1, spec(provider).first_new_id)
    conn.execute(
        "INSERT INTO stand_in_accounts (provider, id, login, name, email, verified, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, login) DO UPDATE SET"
        " name = excluded.name, email = excluded.email, verified = excluded.verified",
        (provider, account_id, fields["login"], fields.get("name") or "",
         fields.get("email") or "", int(bool(fields.get("verified", True))), now),
    )
    return find_account(conn, provider, fields["login"])


def seed_from_request(provider: str, render: Callable[[sqlite3.Row], dict]) -> Response:
    """Emulator-only ``POST /<provider>/_accounts``: create or update an account from JSON."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("login"), str) or not data["login"]:
        return json_response({"message": "JSON body with a non-empty 'login' is required"}, 422)
    with get_db().transaction() as conn:
        created = find_account(conn, provider, data["login"]) is None
        account = save_account(conn, provider, data, current_app.config["CLOCK"]())
    body = {**render(account), "verified": bool(account["verified"])}
    return json_response(body, 201 if created else 200)


# --- codes and tokens (also called in-process by the auth server) -------------------------


def issue_code(provider: str, account_id: int, client_id: str, redirect_uri: str,
               scope: str) -> str:
    """Store a single-use code bound to the client and redirect_uri."""
    code = secrets.token_hex(10)
    with get_db().transaction() as conn:
        conn.execute(
            "INSERT INTO stand_in_codes (code, provider, account_id, client_id, redirect_uri,"
            " scope, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (code, provider, account_id, client_id, redirect_uri, scope,
             current_app.config["CLOCK"]()),
        )
    return code


def redeem_code(provider: str, client_id: str, client_secret: str, code: str,
                redirect_uri: str | None) -> dict[str, str]:
    """Exchange a code for an access token exactly once, or raise StandInError."""
    app = oauth_app(provider)
    if (client_id, client_secret) != (app.client_id, app.client_secret):
        raise StandInError("incorrect_client_credentials")
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        row = conn.execute("DELETE FROM stand_in_codes WHERE code = ? AND provider = ?"
                           " RETURNING *", (code, provider)).fetchone()
        if row is None or row["client_id"] != client_id or now > row["created_at"] + CODE_LIFETIME:
            raise StandInError("bad_verification_code")
        if redirect_uri and redirect_uri != row["redirect_uri"]:
            raise StandInError("redirect_uri_mismatch")
        token = spec(provider).token_prefix + "".join(
            secrets.choice(TOKEN_CHARS) for _ in range(36))
        conn.execute(
            "INSERT INTO stand_in_tokens (token, provider, account_id, client_id, scope,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (token, provider, row["account_id"], client_id, row["scope"], now))
    return {"access_token": token, "token_type": "bearer", "scope": row["scope"]}


def account_for_token(provider: str, token: str) -> sqlite3.Row | None:
    """Return the account an unrevoked access token belongs to, or None."""
    return get_db().one(
        "SELECT a.* FROM stand_in_tokens t JOIN stand_in_accounts a"
        " ON a.provider = t.provider AND a.id = t.account_id"
        " WHERE t.provider = ? AND t.token = ?", (provider, token))


def revoke_token(provider: str, client_id: str, token: str) -> bool:
    """Revoke one token of a client; False if there was no such token."""
    with get_db().transaction() as conn:
        deleted = conn.execute("DELETE FROM stand_in_tokens WHERE provider = ? AND client_id = ?"
                               " AND token = ?", (provider, client_id, token))
    return deleted.rowcount == 1


def revoke_account_tokens(conn: sqlite3.Connection, provider: str, account_id: int) -> int:
    """Revoke every token of one account; return how many there were."""
    return conn.execute("DELETE FROM stand_in_tokens WHERE provider = ? AND account_id = ?",
                        (provider, account_id)).rowcount


def bearer_account(provider: str,
                   unauthorized: Callable[[str], Response]) -> sqlite3.Row | Response:
    """The account behind ``Authorization: Bearer|token <t>``, or the provider's 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in {"bearer", "token"} or not token.strip():
        return unauthorized("Requires authentication")
    account = account_for_token(provider, token.strip())
    return account if account is not None else unauthorized("Bad credentials")


# --- consent page --------------------------------------------------------------------------


def redirect_uri_allowed(uri: str, registered: str) -> bool:
    """GitHub's rule: same scheme, host and port; path inside the registered callback path."""
    given, known = urlsplit(uri), urlsplit(registered)
    same_origin = (given.scheme, given.netloc) == (known.scheme, known.netloc)
    return same_origin and given.path.startswith(known.path)


def back_to_client(redirect_uri: str, **params: str) -> Response:
    """Redirect to the client's redirect_uri with params (in the order given)."""
    joiner = "&" if "?" in redirect_uri else "?"
    return redirect(redirect_uri + joiner + urlencode(params), 302)


def authorize_request(provider: str) -> tuple[dict[str, str], Response | None]:
    """Read and check client_id / redirect_uri; return the params or an early response."""
    app = oauth_app(provider)
    values = request.values
    params = {"client_id": values.get("client_id", ""), "state": values.get("state", ""),
              "scope": values.get("scope", ""),
              "redirect_uri": values.get("redirect_uri") or app.redirect_uri}
    if params["client_id"] != app.client_id:
        return params, Response("Not Found: unknown OAuth application (client_id).\n", 404,
                                mimetype="text/plain")
    if not redirect_uri_allowed(params["redirect_uri"], app.redirect_uri):
        return params, back_to_client(
            app.redirect_uri, error="redirect_uri_mismatch",
            error_description=TOKEN_ERRORS["redirect_uri_mismatch"],
            error_uri=GITHUB_DOCS + "#redirect-uri-mismatch", state=params["state"])
    return params, None


def approve(provider: str, account_id: int, params: dict[str, str]) -> Response:
    """Issue a code for the account and send the browser back to the client."""
    code = issue_code(provider, account_id, params["client_id"], params["redirect_uri"],
                      params["scope"])
    return back_to_client(params["redirect_uri"], code=code, state=params["state"])


def auto_login(provider: str) -> str | None:
    """GITHUB_AUTO_LOGIN for GitHub, else AUTO_LOGIN (which also covers GitHub)."""
    config = current_app.config
    return (config["GITHUB_AUTO_LOGIN"] if provider == "github" else None) or config["AUTO_LOGIN"]


def show_consent(provider: str) -> Response:
    """Consent page (never framed: strict headers), or an immediate approval (auto-login)."""
    return strict_headers(make_response(consent_or_approval(provider)), CONSENT_CSP)


def consent_or_approval(provider: str) -> Response | str:
    """The consent page, or the redirect back when auto-login is configured."""
    params, early = authorize_request(provider)
    if early is not None:
        return early
    login = auto_login(provider)
    if login:
        fields = {"login": login, "name": login, "email": f"{login}@example.com"}
        with get_db().transaction() as conn:
            account = find_account(conn, provider, login) or save_account(
                conn, provider, fields, current_app.config["CLOCK"]())
        return approve(provider, account["id"], params)
    accounts = get_db().all("SELECT * FROM stand_in_accounts WHERE provider = ?"
                            " ORDER BY created_at, id", (provider,))
    return render_template("consent.html", params=params, accounts=accounts,
                           provider_title=spec(provider).title,
                           app_name=current_app.config["GITHUB_APP_NAME"])


def handle_consent(provider: str) -> Response:
    """Authorize / Cancel from the consent page (answered with the same strict headers)."""
    return strict_headers(consent_answer(provider), CONSENT_CSP)


def consent_answer(provider: str) -> Response:
    """The redirect back to the client for Authorize / Cancel (or a 400 for a bad pick)."""
    check_csrf()
    params, early = authorize_request(provider)
    if early is not None:
        return early
    if request.form.get("action") == "cancel":
        return back_to_client(params["redirect_uri"], error="access_denied",
                              error_description=DENIED, state=params["state"])
    form = request.form
    with get_db().transaction() as conn:
        if form.get("new_login", "").strip():
            fields = {"login": form["new_login"].strip(), "name": form.get("new_name", ""),
                      "email": form.get("new_email", "").strip(),
                      "verified": bool(form.get("new_verified"))}
            account = save_account(conn, provider, fields, current_app.config["CLOCK"]())
        else:
            account = find_account(conn, provider, form.get("login", ""))
    if account is None:
        return Response("Unknown account; go back and pick one.\n", 400, mimetype="text/plain")
    return approve(provider, account["id"], params)


# --- avatars -------------------------------------------------------------------------------


def avatar_url(provider: str, account_id: int) -> str:
    """Where the stand-in serves this account's generated avatar."""
    return f"{current_app.config['PUBLIC_URL']}/{provider}/avatars/{account_id}.svg"


def avatar_svg(account: sqlite3.Row) -> str:
    """A 64x64 square in colours derived from the id, with the login's first letter."""
    digest = hashlib.sha256(str(account["id"]).encode()).digest()
    hue, lightness = digest[0] * 360 // 256, 35 + digest[1] % 20
    letter = (account["login"][:1] or "?").upper()
    letter = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}.get(letter, letter)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" fill="hsl({hue},55%,{lightness}%)"/>'
        '<text x="32" y="43" font-family="system-ui,sans-serif" font-size="30"'
        f' text-anchor="middle" fill="#fff">{letter}</text></svg>'
    )


def avatar_response(provider: str, account_id: int) -> Response:
    """``GET /<provider>/avatars/<id>.svg``: the SVG, or a plain 404."""
    account = account_by_id(provider, account_id)
    if account is None:
        return Response("Not Found\n", 404, mimetype="text/plain")
    return Response(avatar_svg(account), mimetype="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=3600"})


def init_app(app: Flask) -> None:
    """Seed the default accounts of the stand-ins this app serves."""
    seed_defaults(app)
