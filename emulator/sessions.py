"""Sessions and v1 refresh tokens: issue, rotate (with reuse rules), and sign out."""

import base64
import json
import re
import secrets
import sqlite3
import uuid
from typing import Any

from flask import current_app, request

from . import audit, users
from .db import get_db
from .errors import ApiError

BASE32_LOWER = "abcdefghijklmnopqrstuvwxyz234567"
V1_TOKEN = re.compile(r"[a-z0-9]{12}")
INVALID = ApiError(400, "validation_failed", "Refresh token is not valid")
NOT_FOUND = ("refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
ALREADY_USED = ("refresh_token_already_used", "Invalid Refresh Token: Already Used")
SELECT_ACTIVE = (
    "SELECT * FROM refresh_tokens WHERE session_id = ? AND revoked = 0 ORDER BY id DESC LIMIT 1"
)


def new_refresh_token() -> str:
    """Twelve random lower-case base32 characters, like crypto.SecureAlphanumeric(12)."""
    return "".join(secrets.choice(BASE32_LOWER) for _ in range(12))


def insert_refresh_token(conn: sqlite3.Connection, user_id: str, session_id: str,
                         parent: str | None, now: float) -> str:
    """Store and return a new refresh token in a session."""
    token = new_refresh_token()
    conn.execute(
        "INSERT INTO refresh_tokens (token, user_id, session_id, parent, revoked, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
        (token, user_id, session_id, parent, now, now),
    )
    return token


def create_session(conn: sqlite3.Connection, user: dict[str, Any], method: str,
                   now: float) -> tuple[dict[str, Any], str]:
    """Create a session and its first refresh token; mark the user signed in."""
    session = {"id": str(uuid.uuid4()), "aal": "aal1",
               "amr": [{"method": method, "timestamp": int(now)}]}
    conn.execute(
        "INSERT INTO sessions (id, user_id, aal, amr, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session["id"], user["id"], session["aal"], json.dumps(session["amr"]), now, now),
    )
    token = insert_refresh_token(conn, user["id"], session["id"], None, now)
    user["last_sign_in_at"] = now
    users.save(conn, user, now)
    return session, token


def token_response(conn: sqlite3.Connection, user: dict[str, Any], session: dict[str, Any],
                   refresh_token: str, now: float, method: str = "oauth",
                   **extra: str) -> dict[str, Any]:
    """Build the AccessTokenResponse body (§3), omitting empty provider tokens.

    ``method`` is the authentication method the custom access token hook is told (``oauth``,
    ``token_refresh``, ``totp``); a hook failure raises here, inside the caller's transaction,
    so nothing of the grant is kept.
    """
    access_token, exp = current_app.extensions["emulator.tokens"].access_token(
        user, session, int(now), method, request.remote_addr or "")
    body: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": exp - int(now),
        "expires_at": exp,
        "refresh_token": refresh_token,
        "user": users.full_json(conn, user),
    }
    body.update({k: v for k, v in extra.items() if v})
    return body


def check_format(token: Any) -> None:
    """Reject malformed refresh tokens before touching the database (§5.1)."""
    if not isinstance(token, str) or len(token) < 12:
        raise INVALID
    if len(token) == 12:
        if not V1_TOKEN.fullmatch(token):
            raise INVALID
        return
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError as error:
        raise INVALID from error
    if not 38 <= len(raw) <= 46 or raw[0] != 0:
        raise INVALID


def refresh(token: str) -> dict[str, Any]:
    """Run the refresh_token grant; every step inside one serialised transaction."""
    check_format(token)
    config = current_app.config
    now = config["CLOCK"]()
    failure: tuple[str, str] | None = None
    with get_db().transaction() as conn:
        row = conn.execute(
            "SELECT r.*, s.aal, s.amr FROM refresh_tokens r JOIN sessions s"
            " ON s.id = r.session_id WHERE r.token = ?", (token,)).fetchone()
        user = users.load(conn, row["user_id"]) if row else None
        if row is None or user is None:
            failure = NOT_FOUND
        elif users.is_banned(user, now):
            failure = ("user_banned", "Invalid Refresh Token: User Banned")
        else:
            issued = rotate(conn, row, user, now, config)
            if issued is None:
                failure = ALREADY_USED  # the family revocation is committed first
            else:
                session = {"id": row["session_id"], "aal": row["aal"],
                           "amr": json.loads(row["amr"])}
                conn.execute("UPDATE sessions SET refreshed_at = ?, updated_at = ? WHERE id = ?",
                             (now, now, row["session_id"]))
                return token_response(conn, user, session, issued, now, "token_refresh")
    raise ApiError(400, *failure)


def rotate(conn: sqlite3.Connection, row: sqlite3.Row, user: dict[str, Any], now: float,
           config: dict[str, Any]) -> str | None:
    """Return the token to hand out, or None when reuse is detected (family revoked).

    Audit entries as the real server writes them: token_refreshed once reuse is ruled out,
    then token_revoked when the token is swapped for a new one.
    """
    if row["revoked"]:
        active = conn.execute(SELECT_ACTIVE, (row["session_id"],)).fetchone()
        if active is not None and active["parent"] == row["token"]:
            audit.record(conn, user, audit.TOKEN_REFRESHED, now)
            return active["token"]  # the client lost the last answer: give it again
        if now > row["updated_at"] + config["REFRESH_TOKEN_REUSE_INTERVAL"]:
            if config["REFRESH_TOKEN_ROTATION_ENABLED"]:
                conn.execute("UPDATE refresh_tokens SET revoked = 1, updated_at = ?"
                             " WHERE session_id = ? AND revoked = 0", (now, row["session_id"]))
            return None
    else:
        conn.execute("UPDATE refresh_tokens SET revoked = 1, updated_at = ? WHERE id = ?",
                     (now, row["id"]))
    audit.record(conn, user, audit.TOKEN_REFRESHED, now)
    audit.record(conn, user, audit.TOKEN_REVOKED, now)  # GrantRefreshTokenSwap
    return insert_refresh_token(conn, row["user_id"], row["session_id"], row["token"], now)


def logout(user_id: str, session_id: str | None, scope: str) -> None:
    """Delete sessions for a scope; refresh tokens go with them (cascade)."""
    with get_db().transaction() as conn:
        user = users.load(conn, user_id)
        if user is not None:
            audit.record(conn, user, audit.LOGOUT, current_app.config["CLOCK"]())
        if session_id is None or scope == "global":
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        elif scope == "local":
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        else:
            conn.execute("DELETE FROM sessions WHERE user_id = ? AND id != ?",
                         (user_id, session_id))
