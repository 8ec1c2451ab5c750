"""Users and identities: rows, JSON shapes (§3), metadata merges and ban durations."""

import datetime
import json
import re
import sqlite3
import uuid
from typing import Any

from .db import Database
from .errors import ApiError

USER_COLUMNS = (
    "aud", "role", "email", "email_confirmed_at", "phone", "phone_confirmed_at",
    "confirmation_token", "last_sign_in_at", "app_metadata", "user_metadata", "banned_until",
    "deleted_at", "is_anonymous", "created_at", "updated_at",
)
# Built from the fixed column list above, never from input.
UPDATE_USER = "UPDATE users SET {} WHERE id = :id".format(  # noqa: S608
    ", ".join(f"{c} = :{c}" for c in USER_COLUMNS)
)
INSERT_USER = "INSERT INTO users (id, {}) VALUES (:id, {})".format(  # noqa: S608
    ", ".join(USER_COLUMNS), ", ".join(f":{c}" for c in USER_COLUMNS)
)
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                  "m": 60.0, "h": 3600.0}
DURATION_PART = re.compile(r"(\d*\.?\d*)([^\d.]*)")


def timestamp(value: float | None) -> str | None:
    """Format unix seconds like Go's time.Time JSON in UTC (RFC 3339, trimmed fraction)."""
    if value is None:
        return None
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def from_row(row: sqlite3.Row) -> dict[str, Any]:
    """Turn a users row into a dict with decoded metadata."""
    user = dict(row)
    user["app_metadata"] = json.loads(user["app_metadata"])
    user["user_metadata"] = json.loads(user["user_metadata"])
    user["is_anonymous"] = bool(user["is_anonymous"])
    return user


def load(db: Database | sqlite3.Connection, user_id: str) -> dict[str, Any] | None:
    """Load a user by id, or None."""
    if isinstance(db, Database):
        row = db.one("SELECT * FROM users WHERE id = ?", (user_id,))
    else:
        row = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return from_row(row) if row else None


def identities(db: Database | sqlite3.Connection, user_id: str) -> list[sqlite3.Row]:
    """Return a user's identities, oldest first."""
    sql = "SELECT * FROM identities WHERE user_id = ? ORDER BY created_at, rowid"
    if isinstance(db, Database):
        return db.all(sql, (user_id,))
    return db.execute(sql, (user_id,)).fetchall()


def identity_json(row: sqlite3.Row) -> dict[str, Any]:
    """Serialise an identity; note the swapped id / identity_id naming of the real server."""
    body: dict[str, Any] = {
        "identity_id": row["id"],
        "id": row["provider_id"],
        "user_id": row["user_id"],
        "identity_data": json.loads(row["identity_data"]),
        "provider": row["provider"],
        "last_sign_in_at": timestamp(row["last_sign_in_at"]),
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
        "email": row["email"],
    }
    return {k: v for k, v in body.items() if v is not None or k in {"identity_data"}}


def factors(db: Database | sqlite3.Connection, user_id: str) -> list[sqlite3.Row]:
    """Return a user's MFA factors (verified or not), oldest first."""
    sql = "SELECT * FROM mfa_factors WHERE user_id = ? ORDER BY created_at, rowid"
    if isinstance(db, Database):
        return db.all(sql, (user_id,))
    return db.execute(sql, (user_id,)).fetchall()


def factor_json(row: sqlite3.Row) -> dict[str, Any]:
    """Serialise a factor as models.Factor does: never the secret; an empty name is left out."""
    body: dict[str, Any] = {
        "id": row["id"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
        "status": row["status"],
        "friendly_name": row["friendly_name"],
        "factor_type": row["factor_type"],
        "phone": row["phone"],
        "last_challenged_at": timestamp(row["last_challenged_at"]),
    }
    if not body["friendly_name"]:
        del body["friendly_name"]
    return body


def user_json(user: dict[str, Any], rows: list[sqlite3.Row] | None,
              factor_rows: list[sqlite3.Row] | None = None) -> dict[str, Any]:
    """Serialise a user in the real server's key order; rows=None gives ``identities: null``.

    ``factors`` is left out when there are none, as the real server's omitempty does.
    """
    confirmed = [t for t in (user["email_confirmed_at"], user["phone_confirmed_at"]) if t]
    optional = {
        "email_confirmed_at": timestamp(user["email_confirmed_at"]),
        "phone_confirmed_at": timestamp(user["phone_confirmed_at"]),
        "confirmed_at": timestamp(min(confirmed)) if confirmed else None,
        "last_sign_in_at": timestamp(user["last_sign_in_at"]),
    }
    body: dict[str, Any] = {"id": user["id"], "aud": user["aud"], "role": user["role"],
                            "email": user["email"]}
    body.update(email_confirmed_at=optional["email_confirmed_at"], phone=user["phone"])
    for key in ("phone_confirmed_at", "confirmed_at", "last_sign_in_at"):
        body[key] = optional[key]
    body["app_metadata"] = user["app_metadata"]
    body["user_metadata"] = user["user_metadata"]
    if factor_rows:
        body["factors"] = [factor_json(r) for r in factor_rows]
    body["identities"] = None if rows is None else [identity_json(r) for r in rows]
    body["created_at"] = timestamp(user["created_at"])
    body["updated_at"] = timestamp(user["updated_at"])
    body["banned_until"] = timestamp(user["banned_until"])
    body["deleted_at"] = timestamp(user["deleted_at"])
    body["is_anonymous"] = user["is_anonymous"]
    keep = {"identities"}
    return {k: v for k, v in body.items() if v is not None or k in keep}


def full_json(db: Database | sqlite3.Connection, user: dict[str, Any]) -> dict[str, Any]:
    """Serialise a user with identities and MFA factors loaded."""
    return user_json(user, identities(db, user["id"]), factors(db, user["id"]))


def new_user(now: float, aud: str, role: str, **fields: Any) -> dict[str, Any]:
    """Return a fresh user dict (not yet stored)."""
    user: dict[str, Any] = {c: None for c in USER_COLUMNS}
    user.update(id=str(uuid.uuid4()), aud=aud, role=role, email="", phone="",
                app_metadata={}, user_metadata={}, is_anonymous=False,
                created_at=now, updated_at=now)
    user.update(fields)
    return user


def params(user: dict[str, Any]) -> dict[str, Any]:
    """Row parameters for INSERT/UPDATE."""
    row = {c: user[c] for c in USER_COLUMNS}
    row["id"] = user["id"]
    row["app_metadata"] = json.dumps(user["app_metadata"])
    row["user_metadata"] = json.dumps(user["user_metadata"])
    row["is_anonymous"] = int(user["is_anonymous"])
    return row


def insert(conn: sqlite3.Connection, user: dict[str, Any]) -> None:
    """Store a new user."""
    conn.execute(INSERT_USER, params(user))


def save(conn: sqlite3.Connection, user: dict[str, Any], now: float) -> None:
    """Store every column of an existing user and bump updated_at."""
    user["updated_at"] = now
    conn.execute(UPDATE_USER, params(user))


def add_identity(conn: sqlite3.Connection, user_id: str, provider: str, provider_id: str,
                 data: dict[str, Any], now: float) -> None:
    """Create an identity row for a user."""
    email = (data.get("email") or "").lower() or None
    conn.execute(
        "INSERT INTO identities (id, provider_id, user_id, identity_data, provider, email,"
        " last_sign_in_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (str(uuid.uuid4()), provider_id, user_id, json.dumps(data), provider, email,
         now, now, now),
    )


def update_identity(conn: sqlite3.Connection, identity_id: str, data: dict[str, Any],
                    now: float) -> None:
    """Overwrite an identity's data and mark it signed in now."""
    email = (data.get("email") or "").lower() or None
    conn.execute(
        "UPDATE identities SET identity_data = ?, email = ?, last_sign_in_at = ?,"
        " updated_at = ? WHERE id = ?",
        (json.dumps(data), email, now, now, identity_id),
    )


def recompute_providers(conn: sqlite3.Connection, user: dict[str, Any]) -> None:
    """Set app_metadata provider/providers from the identities, oldest first."""
    names: list[str] = []
    for row in identities(conn, user["id"]):
        if row["provider"] not in names:
            names.append(row["provider"])
    if names:
        user["app_metadata"]["provider"] = names[0]
    user["app_metadata"]["providers"] = names


def merge(target: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Merge metadata key by key; a None value deletes the key."""
    for key, value in updates.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return target


def is_banned(user: dict[str, Any], now: float) -> bool:
    """True while banned_until lies in the future."""
    return user["banned_until"] is not None and user["banned_until"] > now


def parse_go_duration(text: str) -> float:
    """Parse a Go duration string ("24h", "1h30m", "-5s", "0") into seconds."""
    original, sign = text, 1.0
    if text[:1] in "+-" and text:
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total, pos = 0.0, 0
    while pos < len(text):
        match = DURATION_PART.match(text, pos)
        number, unit = match.group(1), match.group(2)
        if number in {"", "."}:
            raise ValueError(f'time: invalid duration "{original}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{original}"')
        if unit not in DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += float(number) * DURATION_UNITS[unit]
        pos = match.end()
    return sign * total


def apply_ban(user: dict[str, Any], duration: str, now: float) -> None:
    """Set or clear banned_until from an admin ``ban_duration`` value."""
    if duration == "none":
        user["banned_until"] = None
        return
    try:
        seconds = parse_go_duration(duration)
    except ValueError as error:
        raise ApiError(400, "validation_failed",
                       f"invalid format for ban duration: {error}") from error
    user["banned_until"] = now + seconds if seconds else None
