"""The audit trail as the real server keeps it: rows of ``auth.audit_log_entries``.

Action names and their log types follow ``internal/models/audit_log_entry.go``; each entry's
payload is built the way ``NewAuditLogEntry`` builds it (the actor's id, email or phone,
whether they came through SSO, ``full_name`` when the metadata has one, and the traits).
"""

import ipaddress
import json
import sqlite3
import uuid
from typing import Any

from flask import current_app, has_request_context, request

from .ratelimit import SBFF_HEADER, forwarded_address
from .users import timestamp

NIL_UUID = "00000000-0000-0000-0000-000000000000"

LOGIN = "login"
LOGOUT = "logout"
USER_SIGNED_UP = "user_signedup"
USER_DELETED = "user_deleted"
USER_MODIFIED = "user_modified"
TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an action name
TOKEN_REFRESHED = "token_refreshed"  # noqa: S105 - an action name
IDENTITY_LINKED = "identity_linked"
IDENTITY_UNLINKED = "identity_unlinked"
FACTOR_DELETED = "factor_deleted"
PASSKEY_CREATED = "passkey_created"
PASSKEY_UPDATED = "passkey_updated"
PASSKEY_DELETED = "passkey_deleted"

# ActionLogTypeMap: every action the real server knows, with its log type.
LOG_TYPES = {
    "login": "account", "logout": "account", "invite_accepted": "account",
    "user_signedup": "team", "user_invited": "team", "user_deleted": "team",
    "token_revoked": "token", "token_refreshed": "token",
    "user_modified": "user", "user_recovery_requested": "user",
    "user_reauthenticate_requested": "user", "user_confirmation_requested": "user",
    "user_repeated_signup": "user", "user_updated_password": "user",
    "identity_linked": "user", "identity_unlinked": "user",
    "factor_in_progress": "factor", "factor_unenrolled": "factor",
    "challenge_created": "factor", "verification_attempted": "factor",
    "factor_deleted": "factor", "factor_updated": "factor",
    "passkey_created": "user", "passkey_updated": "user", "passkey_deleted": "user",
}
# GET /admin/audit?query=<scope>:<text> searches these payload keys (filterColumnMap).
QUERY_SCOPES = {"author": ("actor_username", "actor_name"), "action": ("action",),
                "type": ("log_type",)}


def admin_actor(role: str) -> dict[str, Any]:
    """The stand-in user requireAdmin puts behind admin calls: nil id, the role as email."""
    return {"id": NIL_UUID, "email": role, "phone": "", "user_metadata": {}}


def payload(actor: dict[str, Any], action: str,
            traits: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON payload of one entry, keyed as NewAuditLogEntry keys it."""
    body: dict[str, Any] = {
        "actor_id": actor["id"],
        "actor_via_sso": bool(actor.get("is_sso_user", False)),
        "actor_username": actor.get("phone") or actor.get("email") or "",
        "action": action,
        "log_type": LOG_TYPES[action],
    }
    metadata = actor.get("user_metadata") or {}
    if "full_name" in metadata:
        body["actor_name"] = metadata["full_name"]
    if traits is not None:
        body["traits"] = traits
    return body


def record(conn: sqlite3.Connection, actor: dict[str, Any], action: str, now: float,
           traits: dict[str, Any] | None = None, ip_address: str = "") -> None:
    """Write one entry inside the caller's transaction (it goes if the transaction does)."""
    # Go serialises the map with sorted keys; so do we, so stored payloads read the same.
    conn.execute(
        "INSERT INTO audit_log_entries (instance_id, id, payload, created_at, ip_address)"
        " VALUES (?, ?, ?, ?, ?)",
        (NIL_UUID, str(uuid.uuid4()), json.dumps(payload(actor, action, traits), sort_keys=True),
         now, ip_address or ""))


def client_ip() -> str:
    """utilities.GetIPAddress: Sb-Forwarded-For (when enabled), X-Forwarded-For, the peer."""
    if not has_request_context():
        return ""
    if current_app.config["SB_FORWARDED_FOR"]:
        address = forwarded_address(request.headers.get(SBFF_HEADER, ""))
        if address is not None:
            return address
    for candidate in request.headers.get("X-Forwarded-For", "").split(","):
        try:
            return str(ipaddress.ip_address(candidate.strip()))
        except ValueError:
            continue
    return request.remote_addr or ""


def user_traits(user: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The traits admin actions attach: the user's id, email and phone (and any extra)."""
    return {"user_id": user["id"], "user_email": user["email"], "user_phone": user["phone"],
            **extra}


def identity_traits(identity: sqlite3.Row) -> dict[str, Any]:
    """The traits of identity_linked / identity_unlinked."""
    return {"identity_id": identity["id"], "provider": identity["provider"],
            "provider_id": identity["provider_id"]}


def entry_json(row: sqlite3.Row) -> dict[str, Any]:
    """One entry as GET /admin/audit serialises AuditLogEntry."""
    return {"id": row["id"], "payload": json.loads(row["payload"] or "{}"),
            "created_at": timestamp(row["created_at"]), "ip_address": row["ip_address"]}


def parse_query(query: str) -> tuple[tuple[str, ...], str]:
    """Split ``author:…``, ``action:…`` or ``type:…`` into payload keys and text; ValueError."""
    if not query:
        return (), ""
    scope, colon, text = query.partition(":")
    if scope not in QUERY_SCOPES or not colon:
        raise ValueError(query)
    return QUERY_SCOPES[scope], text


Filter = tuple[tuple[str, ...], str]  # payload keys, and the text one of them must contain


def where(filters: list[Filter]) -> tuple[str, tuple[str, ...]]:
    """SQL condition and arguments: for each filter, one of its payload keys has the text."""
    conditions, args = ["1"], []
    for columns, text in filters:
        if columns and text:
            # The key names come from QUERY_SCOPES or the code, never from the request.
            conditions.append("(" + " OR ".join(
                f"lower(json_extract(payload, '$.{c}')) LIKE lower(?)" for c in columns) + ")")
            args += [f"%{text}%"] * len(columns)
    return " AND ".join(conditions), tuple(args)


def find(db: Any, filters: list[Filter], page: int,
         per_page: int) -> tuple[list[sqlite3.Row], int]:
    """FindAuditLogEntries: newest first, filtered, one page; also the total count."""
    condition, args = where(filters)
    total = db.one(f"SELECT count(*) FROM audit_log_entries WHERE {condition}", args)[0]  # noqa: S608
    rows = db.all(f"SELECT * FROM audit_log_entries WHERE {condition}"  # noqa: S608
                  " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                  (*args, per_page, max(page - 1, 0) * per_page))
    return rows, total
