"""A small server-rendered dashboard: list users, ban/unban, delete, set app_metadata.role,
revoke a user's GitHub tokens."""

import sqlite3
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from . import stand_in, users
from .db import get_db
from .errors import ApiError
from .forms import check_csrf

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

FOREVER = "876000h"


@bp.get("")
def index() -> str:
    """Every user, newest first, with action forms."""
    rows = get_db().all("SELECT * FROM users ORDER BY created_at DESC, id")
    people = [users.from_row(r) for r in rows]
    now = current_app.config["CLOCK"]()
    return render_template("dashboard.html", users=people, now=now, timestamp=users.timestamp,
                           is_banned=users.is_banned)


def change_user(user_id: str,
                change: Callable[[sqlite3.Connection, dict[str, Any], float], str]) -> Response:
    """Check CSRF, apply a change to one user in a transaction, flash and go back."""
    check_csrf()
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        user = users.load(conn, user_id)
        if user is None:
            flash("That user no longer exists.")
            return redirect(url_for("dashboard.index"), 303)
        try:
            message = change(conn, user, now)
        except ApiError as error:
            flash(error.message)
            return redirect(url_for("dashboard.index"), 303)
        if user.get("deleted"):
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        else:
            users.save(conn, user, now)
    flash(message)
    return redirect(url_for("dashboard.index"), 303)


@bp.post("/users/<user_id>/ban")
def ban(user_id: str) -> Response:
    """Ban a user for a Go duration (default: about a hundred years)."""
    duration = request.form.get("duration", "").strip() or FOREVER

    def apply(_conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
        users.apply_ban(user, duration, now)
        return f"Banned {user['email'] or user['id']} for {duration}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/unban")
def unban(user_id: str) -> Response:
    """Lift a ban."""
    def apply(_conn: sqlite3.Connection, user: dict[str, Any], now: float) -> str:
        users.apply_ban(user, "none", now)
        return f"Unbanned {user['email'] or user['id']}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/delete")
def delete(user_id: str) -> Response:
    """Hard-delete a user (identities and sessions go with it)."""
    def apply(_conn: sqlite3.Connection, user: dict[str, Any], _now: float) -> str:
        user["deleted"] = True
        return f"Deleted {user['email'] or user['id']}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/role")
def set_role(user_id: str) -> Response:
    """Set app_metadata.role (an empty value removes it)."""
    role = request.form.get("role", "").strip()

    def apply(_conn: sqlite3.Connection, user: dict[str, Any], _now: float) -> str:
        users.merge(user["app_metadata"], {"role": role or None})
        return f"Set role of {user['email'] or user['id']} to {role or '(none)'}."
    return change_user(user_id, apply)


@bp.post("/users/<user_id>/revoke-github")
def revoke_github(user_id: str) -> Response:
    """Revoke the stand-in GitHub tokens of the user's GitHub accounts (the app must reconnect)."""
    def apply(conn: sqlite3.Connection, user: dict[str, Any], _now: float) -> str:
        revoked = sum(stand_in.revoke_account_tokens(conn, "github", int(row["provider_id"]))
                      for row in users.identities(conn, user["id"])
                      if row["provider"] == "github")
        return f"Revoked {revoked} GitHub token(s) of {user['email'] or user['id']}."
    return change_user(user_id, apply)
