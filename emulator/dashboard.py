"""The dashboard under /dashboard: find people, see one whole, act on them, read the audit log.

Every change goes through the code the admin API runs (``admin_api.update`` / ``delete``) or
the code the Auth API runs (``sessions.logout``), as the service role, so it writes the same
audit entries. Destructive actions ask first on a page of their own; there is no script.
"""

import json
import math
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from . import admin_api, audit, mfa, passkeys, sessions, stand_in, users
from .db import get_db
from .errors import ApiError
from .forms import check_csrf, strict_headers

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

PER_PAGE = 50
# Ban choices as Go durations (the admin API has no "d" unit; "forever" is Supabase's 100 years).
BAN_DURATIONS = {"1h": ("1 hour", "1h"), "24h": ("24 hours", "24h"),
                 "7d": ("7 days", "168h"), "forever": ("forever", "876000h")}
SORTS = {"created": "created_at", "last_sign_in": "last_sign_in_at"}
NAV = (("dashboard.index", "Users"), ("dashboard.audit_log", "Audit log"),
       ("key_dashboard.index", "Signing keys"))


bp.after_request(strict_headers)


@bp.errorhandler(400)
@bp.errorhandler(404)
def error_page(error: HTTPException) -> tuple[str, int]:
    """A dashboard page that says what went wrong (a stale form, an unknown user)."""
    heading = "Not found" if error.code == 404 else "That did not work"
    return render_template("dashboard_error.html", heading=heading,
                           message=error.description), error.code


@bp.app_template_filter("when")
def when(value: float | None) -> str:
    """Unix seconds as a short UTC time for people (the exact time goes in <time datetime>)."""
    if value is None:
        return "—"
    return users.timestamp(value)[:19].replace("T", " ") + " UTC"


@bp.app_context_processor
def page_helpers() -> dict[str, Any]:
    """Names every dashboard template uses."""
    views = current_app.view_functions
    return {"nav": [(endpoint, label) for endpoint, label in NAV if endpoint in views],
            "home": "index_page.index" if "index_page.index" in views else None,
            "timestamp": users.timestamp, "display_name": display_name, "status": status}


# --- reading people ---------------------------------------------------------------------------


def display_name(user: dict[str, Any]) -> str:
    """What the person is called: the provider's name, login, or the email's local part."""
    metadata = user["user_metadata"]
    for key in ("full_name", "name", "user_name", "preferred_username"):
        if isinstance(metadata.get(key), str) and metadata[key].strip():
            return metadata[key].strip()
    return user["email"].split("@")[0] if user["email"] else "—"


def status(user: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) for the status column: deleted, banned until …, unconfirmed or active."""
    if user["deleted_at"] is not None:
        return "deleted", "deleted"
    if users.is_banned(user, current_app.config["CLOCK"]()):
        return "banned", f"banned until {when(user['banned_until'])}"
    if user["email"] and user["email_confirmed_at"] is None:
        return "unconfirmed", "unconfirmed"
    return "active", "active"


def search_condition(text: str) -> tuple[str, tuple[str, ...]]:
    """Email, id, name or GitHub login containing the text (any case)."""
    if not text:
        return "1", ()
    like = f"%{text.lower()}%"
    return ("(lower(u.email) LIKE ? OR u.id LIKE ?"
            " OR lower(json_extract(u.user_metadata, '$.full_name')) LIKE ?"
            " OR EXISTS (SELECT 1 FROM identities i WHERE i.user_id = u.id"
            " AND i.provider = 'github'"
            " AND lower(json_extract(i.identity_data, '$.user_name')) LIKE ?))",
            (like, like, like, like))


def page_of_users(text: str, sort: str, order: str,
                  page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of matching users, sorted (never signed in last), and the match count."""
    condition, args = search_condition(text)
    column = SORTS[sort]
    db = get_db()
    total = db.one(f"SELECT count(*) FROM users u WHERE {condition}", args)[0]  # noqa: S608
    # The column and direction come from fixed tables above, never from the request as such.
    rows = db.all(f"SELECT u.* FROM users u WHERE {condition}"  # noqa: S608
                  f" ORDER BY u.{column} IS NULL, u.{column} {order}, u.id LIMIT ? OFFSET ?",
                  (*args, PER_PAGE, (page - 1) * PER_PAGE))
    return [users.from_row(row) for row in rows], total


def query_page() -> int:
    """The ``page`` query parameter, 1 when missing or not a positive number."""
    value = request.args.get("page", "1")
    return max(int(value), 1) if value.isdigit() else 1


def page_url(endpoint: str, page: int, **fixed: Any) -> str:
    """The URL of another page of a listing, keeping its query."""
    args = {k: v for k, v in request.args.items() if k != "page"}
    return url_for(endpoint, **fixed) + "?" + urlencode({**args, "page": page})


def pager(endpoint: str, page: int, total: int, **fixed: Any) -> dict[str, Any]:
    """Previous / next links and the range shown."""
    last = max(math.ceil(total / PER_PAGE), 1)
    return {"first": (page - 1) * PER_PAGE + 1 if total else 0,
            "last": min(page * PER_PAGE, total), "total": total,
            "previous": page_url(endpoint, page - 1, **fixed) if page > 1 else None,
            "next": page_url(endpoint, page + 1, **fixed) if page < last else None}


@bp.get("")
def index() -> str:
    """Every user, searchable and sortable, a page at a time."""
    text = request.args.get("q", "").strip()
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "created"
    order = "ASC" if request.args.get("order") == "asc" else "DESC"
    page = query_page()
    people, total = page_of_users(text, sort, order, page)
    return render_template("dashboard_users.html", users=people, q=text, sort=sort,
                           order=order.lower(), pager=pager("dashboard.index", page, total),
                           providers=lambda user: user["app_metadata"].get("providers") or [])


def load_or_404(user_id: str) -> dict[str, Any]:
    """The user, or a 404 page for an unknown id."""
    user = users.load(get_db(), user_id)
    if user is None:
        abort(404, "No user has this id; it may have been deleted.")
    return user


def session_rows(user_id: str) -> list[dict[str, Any]]:
    """The user's sessions, newest first, with their sign-in methods."""
    rows = get_db().all("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id",
                        (user_id,))
    return [{**dict(row), "methods": sorted({m.get("method", "?")
                                             for m in json.loads(row["amr"])})}
            for row in rows]


def github_tokens(user_id: str) -> int:
    """How many stand-in GitHub tokens the user's GitHub accounts hold."""
    return get_db().one(
        "SELECT count(*) FROM stand_in_tokens t JOIN identities i ON i.provider = 'github'"
        " AND t.provider = 'github' AND CAST(t.account_id AS TEXT) = i.provider_id"
        " WHERE i.user_id = ?", (user_id,))[0]


def recent_entries(user_id: str) -> list[dict[str, Any]]:
    """The last audit entries by or about the user."""
    rows = get_db().all(
        "SELECT * FROM audit_log_entries WHERE json_extract(payload, '$.actor_id') = ?"
        " OR json_extract(payload, '$.traits.user_id') = ?"
        " ORDER BY created_at DESC, rowid DESC LIMIT 10", (user_id, user_id))
    return [audit_row(row) for row in rows]


@bp.get("/users/<user_id>")
def user_page(user_id: str) -> str:
    """One person: facts, identities, metadata, sessions, factors, actions, recent entries."""
    user = load_or_404(user_id)
    return render_template(
        "dashboard_user.html", user=user, identities=users.identities(get_db(), user_id),
        sessions=session_rows(user_id), factors=users.factors(get_db(), user_id),
        passkeys=passkeys.list_passkeys(user_id),
        passkeys_enabled=current_app.config["PASSKEY_ENABLED"],
        github_tokens=github_tokens(user_id), entries=recent_entries(user_id),
        bans=BAN_DURATIONS, pretty=lambda value: json.dumps(value, indent=2, sort_keys=True),
        banned=users.is_banned(user, current_app.config["CLOCK"]()),
        identity_data=lambda row: json.loads(row["identity_data"]))


# --- acting on people -------------------------------------------------------------------------


def change_user(user_id: str, change: Callable[[sqlite3.Connection, dict[str, Any], float], str],
                done: str | None = None) -> Response:
    """Check CSRF, run a change in one transaction, flash the outcome and go on."""
    check_csrf()
    now = current_app.config["CLOCK"]()
    back = url_for("dashboard.user_page", user_id=user_id)
    try:
        with get_db().transaction() as conn:  # an error leaving the block rolls it all back
            user = users.load(conn, user_id)
            if user is None:
                flash("That user no longer exists.", "error")
                return redirect(url_for("dashboard.index"), 303)
            message = change(conn, user, now)
    except ApiError as error:
        flash(f"Nothing changed: {error.message}", "error")
        return redirect(back, 303)
    flash(message, "success")
    return redirect(done or back, 303)


def as_admin(body: dict[str, Any]) -> Callable[[sqlite3.Connection, dict[str, Any], float], None]:
    """A change that is exactly ``PUT /admin/users/{id}`` with this body, by the service role."""
    def apply(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> None:
        admin_api.update(conn, user, body, audit.admin_actor("service_role"), now)
    return apply


def who(user: dict[str, Any]) -> str:
    """How flash messages name a person."""
    return user["email"] or display_name(user) or user["id"]


@bp.post("/users/<user_id>/ban")
def ban(user_id: str) -> Response:
    """Ban for one of the offered durations (sessions stay; the next check refuses them)."""
    choice = BAN_DURATIONS.get(request.form.get("duration", ""))

    def apply(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
        if choice is None:
            raise ApiError(400, "validation_failed", "choose how long the ban lasts")
        as_admin({"ban_duration": choice[1]})(conn, user, now)
        return f"Banned {who(user)} for {choice[0]}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/unban")
def unban(user_id: str) -> Response:
    """Lift a ban."""
    def apply(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
        as_admin({"ban_duration": "none"})(conn, user, now)
        return f"Unbanned {who(user)}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/role")
def set_role(user_id: str) -> Response:
    """Set app_metadata.role, which the app reads (an empty value removes it)."""
    role = request.form.get("role", "").strip()

    def apply(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
        as_admin({"app_metadata": {"role": role or None}})(conn, user, now)
        return f"Set the role of {who(user)} to {role}." if role else \
            f"Removed the role of {who(user)}."
    return change_user(user_id, apply)


CONFIRMATIONS = {
    "delete": ("Delete {name}?", "The user, their identities and every session are removed. "
               "Signing in again with the same provider account creates a new user with a new "
               "id.", "Delete user"),
    "sign-out": ("Sign {name} out everywhere?", "Every session ends: the next check by any app "
                 "signs them out. They can sign in again.", "Sign out of every session"),
    "revoke-github": ("Revoke {name}'s GitHub tokens?", "Apps holding these tokens get "
                      "“Bad credentials” from the GitHub stand-in and must ask them to "
                      "reconnect.", "Revoke GitHub tokens"),
}


@bp.get("/users/<user_id>/<any(delete, 'sign-out', 'revoke-github'):action>")
def confirm(user_id: str, action: str) -> str:
    """Ask before an action that cannot be undone."""
    user = load_or_404(user_id)
    title, message, button = CONFIRMATIONS[action]
    return render_template("dashboard_confirm.html", user=user, message=message,
                           title=title.format(name=display_name(user)), button=button,
                           action=url_for("dashboard.act", user_id=user_id, action=action))


@bp.post("/users/<user_id>/<any(delete, 'sign-out', 'revoke-github'):action>")
def act(user_id: str, action: str) -> Response:
    """Do a confirmed action."""
    if action == "delete":
        return change_user(user_id, delete_user, url_for("dashboard.index"))
    if action == "sign-out":
        return sign_out(user_id)
    return change_user(user_id, revoke_github)


def delete_user(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
    """``DELETE /admin/users/{id}`` (hard delete) by the service role."""
    admin_api.delete(conn, user, False, audit.admin_actor("service_role"), now)
    return f"Deleted {who(user)}."


def sign_out(user_id: str) -> Response:
    """End every session with the code behind ``POST /logout?scope=global`` (a logout entry)."""
    check_csrf()
    user = load_or_404(user_id)
    count = get_db().one("SELECT count(*) FROM sessions WHERE user_id = ?", (user_id,))[0]
    sessions.logout(user_id, None, "global")
    flash(f"Signed {who(user)} out of {count} session(s).", "success")
    return redirect(url_for("dashboard.user_page", user_id=user_id), 303)


@bp.get("/users/<user_id>/factors/<factor_id>/remove")
def confirm_factor(user_id: str, factor_id: str) -> str:
    """Ask before removing an MFA factor."""
    user, factor = load_factor_or_404(user_id, factor_id)
    name = factor["friendly_name"] or factor["factor_type"].upper()
    return render_template(
        "dashboard_confirm.html", user=user, button="Remove factor",
        title=f"Remove the factor “{name}” of {display_name(user)}?",
        message="Sessions that reached aal2 with it drop to aal1; they can enrol again.",
        action=url_for("dashboard.remove_factor", user_id=user_id, factor_id=factor_id))


@bp.post("/users/<user_id>/factors/<factor_id>/remove")
def remove_factor(user_id: str, factor_id: str) -> Response:
    """Delete the factor with the admin API's code (a factor_deleted entry)."""
    check_csrf()
    user, factor = load_factor_or_404(user_id, factor_id)
    mfa.delete_factor(user_id, factor["id"])
    flash(f"Removed the factor {factor['friendly_name'] or factor['id']} of {who(user)}.",
          "success")
    return redirect(url_for("dashboard.user_page", user_id=user_id), 303)


def load_factor_or_404(user_id: str, factor_id: str) -> tuple[dict[str, Any], sqlite3.Row]:
    """The user and one of their factors, or a 404 page."""
    user = load_or_404(user_id)
    factor = next((row for row in users.factors(get_db(), user_id) if row["id"] == factor_id),
                  None)
    if factor is None:
        abort(404, "This user has no such factor; it may have been removed.")
    return user, factor


@bp.get("/users/<user_id>/passkeys/<passkey_id>/remove")
def confirm_passkey(user_id: str, passkey_id: str) -> str:
    """Ask before removing a passkey."""
    user, passkey = load_passkey_or_404(user_id, passkey_id)
    return render_template(
        "dashboard_confirm.html", user=user, button="Remove passkey",
        title=f"Remove the passkey “{passkey.get('friendly_name', '')}” of {display_name(user)}?",
        message="It can no longer sign them in; they can add a passkey again after signing in "
                "another way.",
        action=url_for("dashboard.remove_passkey", user_id=user_id, passkey_id=passkey_id))


@bp.post("/users/<user_id>/passkeys/<passkey_id>/remove")
def remove_passkey(user_id: str, passkey_id: str) -> Response:
    """Delete the passkey with the admin API's code (passkey_deleted by the service role)."""
    check_csrf()
    user, passkey = load_passkey_or_404(user_id, passkey_id)
    passkeys.delete_passkey(user, passkey["id"], audit.admin_actor("service_role"),
                            {"user_id": user_id})
    flash(f"Removed the passkey {passkey.get('friendly_name') or passkey['id']} of {who(user)}.",
          "success")
    return redirect(url_for("dashboard.user_page", user_id=user_id), 303)


def load_passkey_or_404(user_id: str, passkey_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The user and one of their passkeys, or a 404 page."""
    user = load_or_404(user_id)
    passkey = next((item for item in passkeys.list_passkeys(user_id) if item["id"] == passkey_id),
                   None)
    if passkey is None:
        abort(404, "This user has no such passkey; it may have been removed.")
    return user, passkey


def revoke_github(conn: sqlite3.Connection, user: dict[str, Any], _now: float) -> str:
    """Revoke the stand-in tokens of the user's GitHub accounts (apps must reconnect)."""
    revoked = sum(stand_in.revoke_account_tokens(conn, "github", int(row["provider_id"]))
                  for row in users.identities(conn, user["id"]) if row["provider"] == "github")
    return f"Revoked {revoked} GitHub token(s) of {who(user)}."


# --- the audit log ----------------------------------------------------------------------------


def audit_row(row: sqlite3.Row) -> dict[str, Any]:
    """An entry with what the table shows: time, action, actor and the traits."""
    entry = audit.entry_json(row)
    payload = entry["payload"]
    return {"created_at": row["created_at"], "action": payload.get("action", ""),
            "log_type": payload.get("log_type", ""), "actor_id": payload.get("actor_id"),
            "actor": payload.get("actor_username") or payload.get("actor_id") or "—",
            "traits": payload.get("traits") or {}, "ip_address": row["ip_address"],
            "id": row["id"]}


@bp.get("/audit")
def audit_log() -> str:
    """Entries newest first, filtered by actor text and action, a page at a time."""
    actor = request.args.get("actor", "").strip()
    action = request.args.get("action", "") if request.args.get("action") in audit.LOG_TYPES \
        else ""
    filters = [(audit.QUERY_SCOPES["author"], actor), (("action",), action)]
    page = query_page()
    rows, total = audit.find(get_db(), filters, page, PER_PAGE)
    entries = [audit_row(row) for row in rows]
    return render_template("dashboard_audit.html", entries=entries, actor=actor, action=action,
                           actions=written_actions(action), known_users=existing(entries),
                           pager=pager("dashboard.audit_log", page, total))


def written_actions(chosen: str) -> list[str]:
    """The filter's choices: the actions the log holds (what the emulator has written), not
    every action the real server knows, and the one chosen."""
    rows = get_db().all("SELECT DISTINCT json_extract(payload, '$.action') FROM audit_log_entries")
    return sorted({row[0] for row in rows if row[0] in audit.LOG_TYPES} | ({chosen} - {""}))


def existing(entries: list[dict[str, Any]]) -> set[str]:
    """Which actors of these entries are users still here (their names become links)."""
    ids = sorted({e["actor_id"] for e in entries if e["actor_id"]})
    marks = ",".join("?" * len(ids))
    rows = get_db().all(f"SELECT id FROM users WHERE id IN ({marks})", tuple(ids))  # noqa: S608
    return {row["id"] for row in rows}
