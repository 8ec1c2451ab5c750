"""GitHub stand-in: OAuth consent, code exchange, revocation and the REST endpoints.

Served under ``/github`` on the paths the real server uses for GitHub Enterprise, so it
also works as ``GOTRUE_EXTERNAL_GITHUB_URL`` for a real Supabase Auth server.
"""

import sqlite3
from typing import Any
from urllib.parse import unquote_plus, urlencode

from flask import Blueprint, Response, current_app, request

from . import stand_in
from .errors import json_response
from .stand_in import GITHUB_DOCS, StandInError, utc_time

PROVIDER = "github"
REST_DOCS = "https://docs.github.com/rest"
REPO_NAMES = ("hello-world", "Spoon-Knife", "linguist", "octo-notes", "dotfiles")
LANGUAGES = ("Python", "HTML", "Ruby", "Go", "Shell")
PROFILES = {  # extra public profile fields of seeded accounts; others get GitHub's blanks
    "octocat": {"company": "@github", "blog": "https://github.blog", "location": "San Francisco",
                "bio": "GitHub's mascot, as a local stand-in.", "twitter_username": None},
}
DAY = 86400

bp = Blueprint("github", __name__, url_prefix="/github")


def api_base() -> str:
    """The stand-in's own REST base, as GitHub Enterprise names it."""
    return current_app.config["PUBLIC_URL"] + "/github/api/v3"


# --- JSON shapes ---------------------------------------------------------------------------


def owner_json(account: sqlite3.Row) -> dict[str, Any]:
    """The short user object GitHub nests in other objects."""
    return {
        "login": account["login"],
        "id": account["id"],
        "node_id": f"U_emulator{account['id']}",
        "avatar_url": stand_in.avatar_url(PROVIDER, account["id"]),
        "gravatar_id": "",
        "url": f"{api_base()}/users/{account['login']}",
        "html_url": f"https://github.com/{account['login']}",
        "type": "User",
        "site_admin": False,
    }


def repos(account: sqlite3.Row) -> list[dict[str, Any]]:
    """The account's repositories: a few public ones (three for octocat) and one private."""
    public = 3 if account["id"] == stand_in.spec(PROVIDER).default_id else 1 + account["id"] % 3
    owner = owner_json(account)
    created = account["created_at"]
    listed = []
    for index in range(public + 1):
        private = index == public
        name = "private-notes" if private else REPO_NAMES[index]
        full_name = f"{account['login']}/{name}"
        updated = created + (index + 1) * 30 * DAY
        listed.append({
            "id": account["id"] * 10 + index,
            "node_id": f"R_emulator{account['id']}_{index}",
            "name": name,
            "full_name": full_name,
            "private": private,
            "owner": owner,
            "html_url": f"https://github.com/{full_name}",
            "description": f"{name.replace('-', ' ').capitalize()} (emulator stand-in repo)",
            "fork": index == 1,
            "url": f"{api_base()}/repos/{full_name}",
            "language": LANGUAGES[index % len(LANGUAGES)],
            "stargazers_count": (account["id"] + index * 7) % 100,
            "watchers_count": (account["id"] + index * 7) % 100,
            "forks_count": (account["id"] + index) % 20,
            "open_issues_count": index,
            "default_branch": "main",
            "visibility": "private" if private else "public",
            "created_at": utc_time(created + index * DAY),
            "updated_at": utc_time(updated),
            "pushed_at": utc_time(updated),
        })
    return listed


def user_json(account: sqlite3.Row) -> dict[str, Any]:
    """GitHub's ``GET /user`` for an account."""
    profile = {"company": None, "blog": "", "location": None, "bio": None,
               "twitter_username": None, **PROFILES.get(account["login"], {})}
    public_repos = sum(1 for repo in repos(account) if not repo["private"])
    return {
        **owner_json(account),
        "name": account["name"] or None,
        "company": profile["company"],
        "blog": profile["blog"],
        "location": profile["location"],
        "email": account["email"] or None,
        "hireable": None,
        "bio": profile["bio"],
        "twitter_username": profile["twitter_username"],
        "public_repos": public_repos,
        "public_gists": account["id"] % 9,
        "followers": account["id"] % 500,
        "following": account["id"] % 11,
        "created_at": utc_time(account["created_at"]),
        "updated_at": utc_time(account["created_at"] + 400 * DAY),
    }


def emails_json(account: sqlite3.Row) -> list[dict[str, Any]]:
    """GitHub's ``GET /user/emails`` for an account with one primary address."""
    if not account["email"]:
        return []
    return [{"email": account["email"], "primary": True, "verified": bool(account["verified"]),
             "visibility": "public"}]


# --- OAuth ---------------------------------------------------------------------------------


@bp.get("/login/oauth/authorize")
def authorize() -> Response | str:
    """Consent page, or an immediate approval when GITHUB_AUTO_LOGIN is set."""
    return stand_in.show_consent(PROVIDER)


@bp.post("/login/oauth/authorize")
def consent() -> Response:
    """Handle Authorize / Cancel from the consent page."""
    return stand_in.handle_consent(PROVIDER)


def client_credentials() -> tuple[str, str]:
    """Client id and secret from HTTP Basic (URL-encoded, as x/oauth2 sends) or the body."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return unquote_plus(auth.username or ""), unquote_plus(auth.password or "")
    return request.values.get("client_id", ""), request.values.get("client_secret", "")


def token_reply(body: dict[str, str]) -> Response:
    """Form-encoded like GitHub, unless the client's Accept asks for JSON."""
    if any(kind == "application/json" and quality > 0
           for kind, quality in request.accept_mimetypes):
        return json_response(body)
    return Response(urlencode(body), mimetype="application/x-www-form-urlencoded")


@bp.post("/login/oauth/access_token")
def access_token() -> Response:
    """Exchange a code; errors are 200 with ``error`` as GitHub answers them."""
    client_id, client_secret = client_credentials()
    try:
        body = stand_in.redeem_code(PROVIDER, client_id, client_secret,
                                    request.values.get("code", ""),
                                    request.values.get("redirect_uri"))
        body["scope"] = ",".join(body["scope"].split())
    except StandInError as error:
        body = {"error": error.error, "error_description": str(error),
                "error_uri": GITHUB_DOCS + "#" + error.error.replace("_", "-")}
    return token_reply(body)


def rest_error(status: int, message: str) -> Response:
    """GitHub's REST error body."""
    return json_response({"message": message, "documentation_url": REST_DOCS,
                          "status": str(status)}, status)


@bp.delete("/applications/<client_id>/token")
def revoke(client_id: str) -> Response:
    """Revoke one access token of this OAuth app (HTTP Basic client_id:client_secret); 204."""
    app = stand_in.oauth_app(PROVIDER)
    auth = request.authorization
    if auth is None or auth.type != "basic" or \
            (auth.username, auth.password) != (app.client_id, app.client_secret) or \
            client_id != app.client_id:
        return rest_error(404, "Not Found")
    body = request.get_json(silent=True)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return rest_error(422, "Invalid request.\n\n\"access_token\" wasn't supplied.")
    if not stand_in.revoke_token(PROVIDER, client_id, token):
        return rest_error(404, "Not Found")
    return Response(status=204)


# --- REST API ------------------------------------------------------------------------------


def authenticated() -> sqlite3.Row | Response:
    """The token's account, or GitHub's 401 for a missing, unknown or revoked token."""
    return stand_in.bearer_account(PROVIDER, lambda message: rest_error(401, message))


@bp.get("/api/v3/user")
def user() -> Response:
    """The authenticated user."""
    account = authenticated()
    return account if isinstance(account, Response) else json_response(user_json(account))


@bp.get("/api/v3/user/emails")
def emails() -> Response:
    """The authenticated user's email addresses."""
    account = authenticated()
    return account if isinstance(account, Response) else json_response(emails_json(account))


def page_args() -> tuple[int, int]:
    """``per_page`` (default 30, at most 100) and ``page`` (from 1), like GitHub."""
    def number(name: str, default: int) -> int:
        try:
            return max(int(request.args.get(name, default)), 1)
        except ValueError:
            return default
    return min(number("per_page", 30), 100), number("page", 1)


@bp.get("/api/v3/user/repos")
def user_repos() -> Response:
    """The authenticated user's repositories, sorted by full name, paginated."""
    account = authenticated()
    if isinstance(account, Response):
        return account
    visibility = request.args.get("visibility", "all")
    listed = [repo for repo in repos(account)
              if visibility == "all" or repo["visibility"] == visibility]
    listed.sort(key=lambda repo: repo["full_name"].lower())
    per_page, page = page_args()
    last = max((len(listed) + per_page - 1) // per_page, 1)
    links = []
    if page < last:
        for rel, number in (("next", page + 1), ("last", last)):
            query = urlencode({**request.args, "per_page": per_page, "page": number})
            links.append(f'<{api_base()}/user/repos?{query}>; rel="{rel}"')
    headers = {"Link": ", ".join(links)} if links else None
    return json_response(listed[(page - 1) * per_page: page * per_page], headers=headers)


@bp.get("/avatars/<int:account_id>.svg")
def avatar(account_id: int) -> Response:
    """A generated avatar, so pages render offline."""
    return stand_in.avatar_response(PROVIDER, account_id)


@bp.post("/_accounts")
def seed_account() -> Response:
    """Emulator-only: create or update a stand-in account from JSON."""
    return stand_in.seed_from_request(PROVIDER, user_json)
