"""Find, link or create the user for a GitHub sign-in (§2.4, §2.5)."""

import sqlite3
from typing import Any

from flask import current_app

from . import users
from .errors import ApiError

PROVIDER = "github"


def identity_data(profile: dict[str, Any], emails: list[dict[str, Any]],
                  api_host: str) -> dict[str, Any]:
    """Build the identity_data map the real server stores for GitHub."""
    emails = [e for e in emails if e.get("email")]
    chosen = next((e for e in emails if e.get("primary")), emails[-1] if emails else None)
    sub = str(profile.get("id", ""))
    data: dict[str, Any] = {"iss": api_host, "sub": sub, "provider_id": sub}
    optional = {
        "name": profile.get("name"),
        "full_name": profile.get("name"),
        "preferred_username": profile.get("login"),
        "user_name": profile.get("login"),
        "avatar_url": profile.get("avatar_url"),
        "email": chosen["email"] if chosen else None,
    }
    data.update({k: v for k, v in optional.items() if v})
    data["email_verified"] = bool(chosen and chosen.get("verified"))
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


def create_account(conn: sqlite3.Connection, data: dict[str, Any], primary: str | None,
                   now: float) -> dict[str, Any]:
    """Create a new user with the GitHub identity."""
    config = current_app.config
    if config["DISABLE_SIGNUP"]:
        raise ApiError(422, "signup_disabled", "Signups not allowed for this instance")
    email = (primary or "").lower()
    if email and conn.execute("SELECT 1 FROM users WHERE aud = ? AND lower(email) = ?",
                              (config["JWT_AUD"], email)).fetchone():
        email = ""
    user = users.new_user(now, config["JWT_AUD"], config["JWT_DEFAULT_GROUP_NAME"], email=email,
                          user_metadata=dict(data),
                          app_metadata={"provider": PROVIDER, "providers": [PROVIDER]})
    users.insert(conn, user)
    users.add_identity(conn, user["id"], PROVIDER, data["sub"], data, now)
    return user


def attach(conn: sqlite3.Connection, user: dict[str, Any], data: dict[str, Any],
           identity: sqlite3.Row | None, now: float) -> dict[str, Any]:
    """Update (or add) the GitHub identity on an existing user and merge metadata."""
    if identity is None:
        users.add_identity(conn, user["id"], PROVIDER, data["sub"], data, now)
    else:
        users.update_identity(conn, identity["id"], data, now)
    users.merge(user["user_metadata"], data)
    if user["email_confirmed_at"] is None and user["email"]:
        # RemoveUnconfirmedIdentities: an unconfirmed account keeps only this identity.
        conn.execute("DELETE FROM identities WHERE user_id = ? AND provider != ?",
                     (user["id"], PROVIDER))
        user["user_metadata"] = dict(data)
    users.recompute_providers(conn, user)
    return user


def find_or_create(conn: sqlite3.Connection, data: dict[str, Any],
                   emails: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """DetermineAccountLinking: existing identity, one linkable user, or a new account."""
    config = current_app.config
    identity = conn.execute("SELECT * FROM identities WHERE provider = ? AND provider_id = ?",
                            (PROVIDER, data["sub"])).fetchone()
    if identity is not None:
        return attach(conn, users.load(conn, identity["user_id"]), data, identity, now)
    candidates = linking_candidates(conn, verified_emails(emails, config["MAILER_AUTOCONFIRM"]),
                                    config["JWT_AUD"])
    if len(candidates) > 1:
        raise ApiError(500, "unexpected_failure", "Multiple accounts with the same email address "
                       "in the same linking domain detected: default")
    if candidates:
        return attach(conn, users.load(conn, candidates.pop()), data, None, now)
    primary = next((e["email"] for e in emails if e.get("primary") and e.get("email")), None)
    return create_account(conn, data, primary, now)


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
