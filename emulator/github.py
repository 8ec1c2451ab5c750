"""GitHub stand-in: OAuth consent, code exchange and the REST endpoints GoTrue reads.

Served under ``/github`` on the paths the real server uses for GitHub Enterprise, so it
also works as ``GOTRUE_EXTERNAL_GITHUB_URL`` for a real Supabase Auth server.
"""

import secrets
import sqlite3
import string
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

from flask import Blueprint, Response, current_app, redirect, render_template, request

from .db import get_db
from .errors import json_response
from .forms import check_csrf

bp = Blueprint("github", __name__, url_prefix="/github")

CODE_LIFETIME = 600  # GitHub codes expire after ten minutes
TOKEN_CHARS = string.ascii_letters + string.digits
DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
TOKEN_ERRORS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL for this "
                             "application.",
    "bad_verification_code": "The code passed is incorrect or expired.",
}
DENIED = "The user has denied your application access."


class GitHubError(Exception):
    """A token-endpoint error in GitHub's words (``error`` / ``error_description``)."""

    def __init__(self, error: str) -> None:
        super().__init__(TOKEN_ERRORS[error])
        self.error = error


# --- accounts, codes and tokens (also called in-process by the auth server) -------------


def find_account(conn: sqlite3.Connection, login: str) -> sqlite3.Row | None:
    """Return the stand-in account with this login, or None."""
    return conn.execute("SELECT * FROM github_accounts WHERE login = ?", (login,)).fetchone()


def save_account(conn: sqlite3.Connection, fields: dict[str, Any], now: float) -> sqlite3.Row:
    """Create or update an account by login; a new one gets the next free id."""
    existing = find_account(conn, fields["login"])
    account_id = fields.get("id") or (existing["id"] if existing else None)
    if account_id is None:
        top = conn.execute("SELECT max(id) FROM github_accounts").fetchone()[0] or 0
        account_id = max(top + 1, 1_000_000)
    conn.execute(
        "INSERT INTO github_accounts (id, login, name, email, verified, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (login) DO UPDATE SET"
        " name = excluded.name, email = excluded.email, verified = excluded.verified",
        (account_id, fields["login"], fields.get("name") or "", fields.get("email") or "",
         int(bool(fields.get("verified", True))), now),
    )
    return find_account(conn, fields["login"])


def issue_code(account_id: int, client_id: str, redirect_uri: str, scope: str) -> str:
    """Store a single-use code bound to the client and redirect_uri."""
    code = secrets.token_hex(10)
    with get_db().transaction() as conn:
        conn.execute(
            "INSERT INTO github_codes (code, account_id, client_id, redirect_uri, scope,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (code, account_id, client_id, redirect_uri, scope, current_app.config["CLOCK"]()),
        )
    return code


def redeem_code(client_id: str, client_secret: str, code: str,
                redirect_uri: str | None) -> dict[str, str]:
    """Exchange a code for an access token exactly once, or raise GitHubError."""
    config = current_app.config
    if (client_id, client_secret) != (config["GITHUB_CLIENT_ID"], config["GITHUB_CLIENT_SECRET"]):
        raise GitHubError("incorrect_client_credentials")
    now = config["CLOCK"]()
    with get_db().transaction() as conn:
        row = conn.execute("DELETE FROM github_codes WHERE code = ? RETURNING *",
                           (code,)).fetchone()
        if row is None or row["client_id"] != client_id or now > row["created_at"] + CODE_LIFETIME:
            raise GitHubError("bad_verification_code")
        if redirect_uri and redirect_uri != row["redirect_uri"]:
            raise GitHubError("redirect_uri_mismatch")
        token = "gho_" + "".join(secrets.choice(TOKEN_CHARS) for _ in range(36))
        conn.execute(
            "INSERT INTO github_tokens (token, account_id, client_id, scope, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (token, row["account_id"], client_id, row["scope"], now))
    return {"access_token": token, "token_type": "bearer",
            "scope": ",".join(row["scope"].split())}


def account_for_token(token: str) -> sqlite3.Row | None:
    """Return the account an access token belongs to, or None."""
    return get_db().one(
        "SELECT a.* FROM github_tokens t JOIN github_accounts a ON a.id = t.account_id"
        " WHERE t.token = ?", (token,))


def user_json(account: sqlite3.Row) -> dict[str, Any]:
    """The subset of GitHub's ``GET /user`` the auth server and apps read."""
    return {
        "login": account["login"],
        "id": account["id"],
        "node_id": f"U_emulator{account['id']}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{account['id']}?v=4",
        "html_url": f"https://github.com/{account['login']}",
        "type": "User",
        "site_admin": False,
        "name": account["name"] or None,
        "email": account["email"] or None,
    }


def emails_json(account: sqlite3.Row) -> list[dict[str, Any]]:
    """GitHub's ``GET /user/emails`` for an account with one primary address."""
    if not account["email"]:
        return []
    return [{"email": account["email"], "primary": True, "verified": bool(account["verified"]),
             "visibility": "public"}]


def repos_json(account: sqlite3.Row) -> list[dict[str, Any]]:
    """A single public repository, enough for apps that list repos."""
    owner = {"login": account["login"], "id": account["id"]}
    name = "hello-world"
    return [{"id": account["id"] * 10, "name": name, "full_name": f"{account['login']}/{name}",
             "private": False, "owner": owner,
             "html_url": f"https://github.com/{account['login']}/{name}"}]


# --- OAuth pages -------------------------------------------------------------------------


def redirect_uri_allowed(uri: str, registered: str) -> bool:
    """GitHub's rule: same scheme, host and port; path inside the registered callback path."""
    given, known = urlsplit(uri), urlsplit(registered)
    same_origin = (given.scheme, given.netloc) == (known.scheme, known.netloc)
    return same_origin and given.path.startswith(known.path)


def back_to_client(redirect_uri: str, **params: str) -> Response:
    """Redirect to the client's redirect_uri with params (in the order given)."""
    joiner = "&" if "?" in redirect_uri else "?"
    return redirect(redirect_uri + joiner + urlencode(params), 302)


def authorize_request() -> tuple[dict[str, str], Response | None]:
    """Read and check client_id / redirect_uri; return the params or an early response."""
    config = current_app.config
    values = request.values
    params = {"client_id": values.get("client_id", ""), "state": values.get("state", ""),
              "scope": values.get("scope", ""),
              "redirect_uri": values.get("redirect_uri") or config["GITHUB_REDIRECT_URI"]}
    if params["client_id"] != config["GITHUB_CLIENT_ID"]:
        return params, Response("Not Found: unknown OAuth application (client_id).\n", 404,
                                mimetype="text/plain")
    if not redirect_uri_allowed(params["redirect_uri"], config["GITHUB_REDIRECT_URI"]):
        return params, back_to_client(
            config["GITHUB_REDIRECT_URI"], error="redirect_uri_mismatch",
            error_description=TOKEN_ERRORS["redirect_uri_mismatch"],
            error_uri=DOCS + "#redirect-uri-mismatch", state=params["state"])
    return params, None


def approve(account_id: int, params: dict[str, str]) -> Response:
    """Issue a code for the account and send the browser back to the client."""
    code = issue_code(account_id, params["client_id"], params["redirect_uri"], params["scope"])
    return back_to_client(params["redirect_uri"], code=code, state=params["state"])


@bp.get("/login/oauth/authorize")
def authorize() -> Response | str:
    """Consent page, or an immediate approval when GITHUB_AUTO_LOGIN is set."""
    params, early = authorize_request()
    if early is not None:
        return early
    login = current_app.config["GITHUB_AUTO_LOGIN"]
    if login:
        fields = {"login": login, "name": login, "email": f"{login}@example.com"}
        with get_db().transaction() as conn:
            account = find_account(conn, login) or save_account(
                conn, fields, current_app.config["CLOCK"]())
        return approve(account["id"], params)
    accounts = get_db().all("SELECT * FROM github_accounts ORDER BY created_at, id")
    return render_template("github_consent.html", params=params, accounts=accounts,
                           app_name=current_app.config["GITHUB_APP_NAME"])


@bp.post("/login/oauth/authorize")
def consent() -> Response:
    """Handle Authorize / Cancel from the consent page."""
    check_csrf()
    params, early = authorize_request()
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
            account = save_account(conn, fields, current_app.config["CLOCK"]())
        else:
            account = find_account(conn, form.get("login", ""))
    if account is None:
        return Response("Unknown account; go back and pick one.\n", 400, mimetype="text/plain")
    return approve(account["id"], params)


# --- token endpoint and REST API ---------------------------------------------------------


def client_credentials() -> tuple[str, str]:
    """Client id and secret from HTTP Basic (URL-encoded, as x/oauth2 sends) or the body."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return unquote_plus(auth.username or ""), unquote_plus(auth.password or "")
    return request.values.get("client_id", ""), request.values.get("client_secret", "")


def token_reply(body: dict[str, str]) -> Response:
    """JSON by default; form-encoded when the client asks for it in Accept."""
    accept = request.accept_mimetypes
    if accept["application/x-www-form-urlencoded"] > accept["application/json"]:
        return Response(urlencode(body), mimetype="application/x-www-form-urlencoded")
    return json_response(body)


@bp.post("/login/oauth/access_token")
def access_token() -> Response:
    """Exchange a code; errors are 200 with ``error`` as GitHub answers them."""
    client_id, client_secret = client_credentials()
    try:
        body = redeem_code(client_id, client_secret, request.values.get("code", ""),
                           request.values.get("redirect_uri"))
    except GitHubError as error:
        body = {"error": error.error, "error_description": str(error),
                "error_uri": DOCS + "#" + error.error.replace("_", "-")}
    return token_reply(body)


def bearer_account() -> sqlite3.Row | Response:
    """The account behind ``Authorization: Bearer|token <t>``, or GitHub's 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in {"bearer", "token"} or not token.strip():
        message = "Requires authentication"
    else:
        account = account_for_token(token.strip())
        if account is not None:
            return account
        message = "Bad credentials"
    return json_response({"message": message, "documentation_url": "https://docs.github.com/rest",
                          "status": "401"}, 401)


def api_view(render):
    """Wrap a renderer of account JSON as an authenticated API view."""
    def view() -> Response:
        account = bearer_account()
        if isinstance(account, Response):
            return account
        return json_response(render(account))
    view.__doc__ = render.__doc__
    return view


bp.add_url_rule("/api/v3/user", "user", api_view(user_json))
bp.add_url_rule("/api/v3/user/emails", "emails", api_view(emails_json))
bp.add_url_rule("/api/v3/user/repos", "repos", api_view(repos_json))


@bp.post("/_accounts")
def seed_account() -> Response:
    """Emulator-only: create or update a stand-in account from JSON."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("login"), str) or not data["login"]:
        return json_response({"message": "JSON body with a non-empty 'login' is required"}, 422)
    with get_db().transaction() as conn:
        created = find_account(conn, data["login"]) is None
        account = save_account(conn, data, current_app.config["CLOCK"]())
    body = {**user_json(account), "verified": bool(account["verified"])}
    return json_response(body, 201 if created else 200)
