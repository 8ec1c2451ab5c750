"""Find, link or create the user for a provider sign-in (§2.4, §2.5); manual linking."""

import json
import sqlite3
from typing import Any

from flask import current_app

from . import audit, users
from .db import get_db
from .errors import ApiError


def identity_data(claims: dict[str, Any], emails: list[dict[str, Any]]) -> dict[str, Any]:
    """Claims plus the email the callback picks: the primary one, else the last one listed."""
    chosen = next((e for e in emails if e["primary"]), emails[-1] if emails else None)
    data = dict(claims)
    if chosen:
        data["email"] = chosen["email"]
    data["email_verified"] = bool(chosen and chosen["verified"])
    data["phone_verified"] = False
    return data


def verified_emails(emails: list[dict[str, Any]], autoconfirm: bool) -> list[str]:
    """Lower-cased emails that count as verified for linking."""
    return [e["email"].lower() for e in emails if e.get("email") and (e.get("verified")
                                                                     or autoconfirm)]


def linking_candidates(conn: sqlite3.Connection, emails: list[str], aud: str) -> set[str]:
    """Ids of users in the same aud that own one of these emails (user or identity)."""
    if not emails:
        return set()
    marks = ",".join("?" * len(emails))
    rows = conn.execute(
        f"SELECT id FROM users WHERE aud = ? AND lower(email) IN ({marks})"  # noqa: S608
        f" UNION SELECT i.user_id FROM identities i JOIN users u ON u.id = i.user_id"
        f" WHERE u.aud = ? AND i.email IN ({marks})",
        (aud, *emails, aud, *emails),
    ).fetchall()
    return {row[0] for row in rows}


def create_account(conn: sqlite3.Connection, provider: str, data: dict[str, Any],
                   primary: str | None, now: float) -> dict[str, Any]:
    """Create a new user with the provider's identity."""
    config = current_app.config
    if config["DISABLE_SIGNUP"]:
        raise ApiError(422, "signup_disabled", "Signups not allowed for this instance")
    email = (primary or "").lower()
    if email and conn.execute("SELECT 1 FROM users WHERE aud = ? AND lower(email) = ?",
                              (config["JWT_AUD"], email)).fetchone():
        email = ""
    user = users.new_user(now, config["JWT_AUD"], config["JWT_DEFAULT_GROUP_NAME"], email=email,
                          user_metadata=dict(data),
                          app_metadata={"provider": provider, "providers": [provider]})
    users.insert(conn, user)
    users.add_identity(conn, user["id"], provider, data["sub"], data, now)
    return user


def attach(conn: sqlite3.Connection, user: dict[str, Any], provider: str,
           data: dict[str, Any], identity: sqlite3.Row | None, now: float) -> dict[str, Any]:
    """Update (or add) the provider's identity on an existing user and merge metadata."""
    if identity is None:
        users.add_identity(conn, user["id"], provider, data["sub"], data, now)
    else:
        users.update_identity(conn, identity["id"], data, now)
    users.merge(user["user_metadata"], data)
    if user["email_confirmed_at"] is None and user["email"]:
        # RemoveUnconfirmedIdentities: an unconfirmed account keeps only this identity.
        conn.execute("DELETE FROM identities WHERE user_id = ? AND provider != ?",
                     (user["id"], provider))
        user["user_metadata"] = dict(data)
    users.recompute_providers(conn, user)
    return user


def find_identity(conn: sqlite3.Connection, provider: str, sub: str) -> sqlite3.Row | None:
    """The identity row for (provider, provider_id), or None."""
    return conn.execute("SELECT * FROM identities WHERE provider = ? AND provider_id = ?",
                        (provider, sub)).fetchone()


def find_or_create(conn: sqlite3.Connection, provider: str, data: dict[str, Any],
                   emails: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """DetermineAccountLinking: existing identity, one linkable user, or a new account."""
    config = current_app.config
    identity = find_identity(conn, provider, data["sub"])
    if identity is not None:
        return attach(conn, users.load(conn, identity["user_id"]), provider, data, identity, now)
    candidates = linking_candidates(conn, verified_emails(emails, config["MAILER_AUTOCONFIRM"]),
                                    config["JWT_AUD"])
    if len(candidates) > 1:
        raise ApiError(500, "unexpected_failure", "Multiple accounts with the same email address "
                       "in the same linking domain detected: default")
    if candidates:
        user = attach(conn, users.load(conn, candidates.pop()), provider, data, None, now)
        audit.record(conn, user, audit.IDENTITY_LINKED, now,
                     audit.identity_traits(find_identity(conn, provider, data["sub"])),
                     audit.client_ip())
        return user
    primary = next((e["email"] for e in emails if e["primary"]), None)
    return create_account(conn, provider, data, primary, now)


def needs_verification(conn: sqlite3.Connection, user: dict[str, Any], data: dict[str, Any],
                       now: float) -> bool:
    """Confirm the user if the email is verified (or autoconfirm); else report it must wait."""
    if user["email_confirmed_at"] is not None or not user["email"]:
        users.save(conn, user, now)
        return False
    if data["email_verified"] or current_app.config["MAILER_AUTOCONFIRM"]:
        user["email_confirmed_at"] = now
        user["user_metadata"]["email_verified"] = True
        users.save(conn, user, now)
        return False
    users.save(conn, user, now)
    return True


# --- manual linking (GET /user/identities/authorize, then /callback) and unlinking -----------


class EmailConflict(Exception):
    """Every identity's email already belongs to another user."""


def identity_email_verified(row: sqlite3.Row) -> bool:
    """True when the provider said the identity's email is verified."""
    return json.loads(row["identity_data"]).get("email_verified") is True


def update_email_from_identities(conn: sqlite3.Connection, user: dict[str, Any]) -> None:
    """Keep the user's email if an identity has it; else take the best identity's email."""
    rows = users.identities(conn, user["id"])
    if any((row["email"] or "") == user["email"].lower() for row in rows):
        return

    def rank(row: sqlite3.Row) -> tuple[int, float, str]:
        level = 2 if not row["email"] else 0 if identity_email_verified(row) else 1
        return level, row["created_at"], row["id"]

    for row in sorted(rows, key=rank):
        email = row["email"] or ""
        taken = email and conn.execute(
            "SELECT 1 FROM users WHERE aud = ? AND lower(email) = ? AND id != ?",
            (user["aud"], email, user["id"])).fetchone()
        if not taken:
            break
    else:
        raise EmailConflict
    user["email"] = email
    if not email or not (identity_email_verified(row)
                         or current_app.config["MAILER_AUTOCONFIRM"]):
        user["email_confirmed_at"] = None
        user["user_metadata"]["email_verified"] = False


def link_to_target(conn: sqlite3.Connection, target: dict[str, Any], provider: str,
                   data: dict[str, Any], now: float) -> bool:
    """Add the new identity to the user who asked; True if its email still needs confirming."""
    identity = find_identity(conn, provider, data["sub"])
    if identity is not None:
        whose = "" if identity["user_id"] == target["id"] else " to another user"
        raise ApiError(422, "identity_already_exists", f"Identity is already linked{whose}")
    users.add_identity(conn, target["id"], provider, data["sub"], data, now)
    audit.record(conn, target, audit.IDENTITY_LINKED, now,
                 audit.identity_traits(find_identity(conn, provider, data["sub"])),
                 audit.client_ip())
    if not target["email"]:
        try:
            update_email_from_identities(conn, target)
        except EmailConflict as error:
            raise ApiError(400, "email_exists", "A user with this email address has already "
                           "been registered") from error
        if not data["email_verified"]:
            users.save(conn, target, now)
            return True
        target["email_confirmed_at"] = now
        target["user_metadata"]["email_verified"] = True
        target["is_anonymous"] = False
    users.recompute_providers(conn, target)
    users.save(conn, target, now)
    return False


def unlink(user: dict[str, Any], identity_id: str) -> None:
    """DeleteIdentity: remove one of several identities; fix the email and providers."""
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        rows = users.identities(conn, user["id"])
        if len(rows) <= 1:
            raise ApiError(422, "single_identity_not_deletable",
                           "User must have at least 1 identity after unlinking")
        identity = next((row for row in rows if row["id"] == identity_id), None)
        if identity is None:
            raise ApiError(422, "identity_not_found", "Identity doesn't exist")
        provider = identity["provider"]
        audit.record(conn, user, audit.IDENTITY_UNLINKED, now, audit.identity_traits(identity),
                     audit.client_ip())
        conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        try:
            if provider == "phone":
                user.update(phone="", phone_confirmed_at=None)
            else:
                update_email_from_identities(conn, user)
        except EmailConflict as error:
            raise ApiError(422, "email_conflict_identity_not_deletable",
                           "Unable to unlink identity due to email conflict") from error
        users.recompute_providers(conn, user)
        users.save(conn, user, now)
