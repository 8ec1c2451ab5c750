"""The emulator's data file: export, import, seed at start and reset (all emulator-only).

A data file is one JSON object (see README.md, "Data in and out")::

    {"format": "supabase-auth-emulator", "version": 1, "exported_at": "…Z",
     "users": [<user as GET /admin/users/{id} answers, identities included>, …],
     "stand_in_accounts": [{"provider": "github", "id": 583231, "login": "octocat", …}, …]}

Users keep their ids, so sessions, tokens and app data that name them stay meaningful across
an export and an import. Sessions, refresh tokens, MFA factors, flow states, the audit log and
stand-in codes and tokens are not part of the file.

Each user's passkeys are (``"passkeys": [...]``): the credential id and the public key (COSE,
base64url), sign count, AAGUID, transports, backup flags, name and times. That is everything
the server holds about a passkey, and none of it is secret: the private key never leaves the
authenticator. WebAuthn challenges are not part of the file. A user entry without
``"passkeys"`` leaves that user's passkeys as they are; a list replaces them.
"""

import datetime
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from webauthn.helpers import decode_credential_public_key
from webauthn.helpers.exceptions import WebAuthnException

from . import mfa, passkeys, ratelimit, stand_in, users
from .config import KNOWN_PROVIDERS
from .db import get_db

FORMAT = "supabase-auth-emulator"
VERSION = 1
# Deleting users cascades to identities, sessions and refresh tokens; deleting stand-in
# accounts cascades to their codes and tokens.
RESET_TABLES = ("users", "webauthn_challenges", "flow_states", "audit_log_entries",
                "stand_in_accounts")


class DataFileError(ValueError):
    """The data file cannot be imported; the message names the entry and the problem."""


# --- export ----------------------------------------------------------------------------------


def account_json(row: sqlite3.Row) -> dict[str, Any]:
    """One stand-in account as the file stores it."""
    return {"provider": row["provider"], "id": row["id"], "login": row["login"],
            "name": row["name"], "email": row["email"], "verified": bool(row["verified"]),
            "created_at": users.timestamp(row["created_at"])}


def export_data(now: float) -> dict[str, Any]:
    """Every user (with identities) and stand-in account, as a version 1 data file."""
    db = get_db()
    rows = db.all("SELECT * FROM users ORDER BY created_at, id")
    accounts = db.all("SELECT * FROM stand_in_accounts ORDER BY provider, created_at, id")
    return {"format": FORMAT, "version": VERSION, "exported_at": users.timestamp(now),
            "users": [user_json(db, users.from_row(row)) for row in rows],
            "stand_in_accounts": [account_json(row) for row in accounts]}


def user_json(db: Any, user: dict[str, Any]) -> dict[str, Any]:
    """The admin API's user JSON without MFA factors (their secrets never leave the server),
    with the user's passkeys (public material only)."""
    body = {k: v for k, v in users.full_json(db, user).items() if k != "factors"}
    body["passkeys"] = [passkey_export(row) for row in passkeys.of_user(db, user["id"])]
    return body


def passkey_export(row: sqlite3.Row) -> dict[str, Any]:
    """One passkey as the file stores it."""
    return {"id": row["id"], "friendly_name": row["friendly_name"],
            "credential_id": passkeys.b64url(row["credential_id"]),
            "public_key": passkeys.b64url(row["public_key"]),
            "attestation_type": row["attestation_type"], "aaguid": row["aaguid"],
            "sign_count": row["sign_count"], "transports": json.loads(row["transports"]),
            "backup_eligible": bool(row["backup_eligible"]), "backed_up": bool(row["backed_up"]),
            "created_at": users.timestamp(row["created_at"]),
            "updated_at": users.timestamp(row["updated_at"]),
            "last_used_at": users.timestamp(row["last_used_at"])}


# --- reading a file ----------------------------------------------------------------------------


def parse_time(value: Any, where: str) -> float | None:
    """An RFC 3339 timestamp (or null) as unix seconds; a zone-less value is UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataFileError(f"{where}: expected an RFC 3339 timestamp string or null")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as error:
        raise DataFileError(f"{where}: {value!r} is not an RFC 3339 timestamp") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def expect(value: Any, kind: type, where: str, what: str) -> Any:
    """Return value if it has the expected JSON type, else fail naming the place."""
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DataFileError(f"{where}: expected {what}")
    return value


def parse_uuid(value: Any, where: str) -> str:
    """A UUID string in canonical form."""
    expect(value, str, where, "a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError as error:
        raise DataFileError(f"{where}: {value!r} is not a UUID") from error


def check_header(data: Any) -> None:
    """The file must be a JSON object of a known format and version."""
    expect(data, dict, "file", "a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise DataFileError(f"format: expected {FORMAT!r}, not {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise DataFileError(f"version: this emulator reads version {VERSION}, "
                            f"not {data.get('version')!r}")


def user_from_json(item: Any, where: str, now: float) -> dict[str, Any]:
    """A user ready to store, from the admin API's user JSON (defaults for what is missing)."""
    item = expect(item, dict, where, "a user object")
    config = current_app.config
    user = users.new_user(now, config["JWT_AUD"], config["JWT_DEFAULT_GROUP_NAME"])
    user["id"] = parse_uuid(item.get("id"), f"{where}.id")
    for key in ("aud", "role", "email", "phone"):
        if item.get(key) is not None:
            user[key] = expect(item[key], str, f"{where}.{key}", "a string")
    user["email"] = user["email"].lower()
    for key in ("app_metadata", "user_metadata"):
        if item.get(key) is not None:
            user[key] = expect(item[key], dict, f"{where}.{key}", "an object")
    for key in ("email_confirmed_at", "phone_confirmed_at", "last_sign_in_at", "banned_until",
                "deleted_at", "created_at", "updated_at"):
        if key in item:
            user[key] = parse_time(item[key], f"{where}.{key}")
    user["created_at"] = user["created_at"] if user["created_at"] is not None else now
    user["updated_at"] = user["updated_at"] if user["updated_at"] is not None \
        else user["created_at"]
    user["is_anonymous"] = bool(expect(item.get("is_anonymous", False), bool,
                                       f"{where}.is_anonymous", "true or false"))
    return user


def identity_from_json(item: Any, user: dict[str, Any], where: str) -> dict[str, Any]:
    """An identity row from the admin API's identity JSON (``id`` is the provider's id)."""
    item = expect(item, dict, where, "an identity object")
    provider = expect(item.get("provider"), str, f"{where}.provider", "a provider name")
    provider_id = expect(item.get("id"), str, f"{where}.id", "the provider's user id (a string)")
    if item.get("user_id") not in (None, user["id"]):
        raise DataFileError(f"{where}.user_id: {item['user_id']!r} is not the user's id")
    data = expect(item.get("identity_data") or {"sub": provider_id}, dict,
                  f"{where}.identity_data", "an object")
    email = expect(item.get("email") or data.get("email") or "", str, f"{where}.email",
                   "a string")
    identity_id = item.get("identity_id")
    created = parse_time(item.get("created_at"), f"{where}.created_at") or user["created_at"]
    return {
        "id": str(uuid.uuid4()) if identity_id is None
        else parse_uuid(identity_id, f"{where}.identity_id"),
        "provider_id": provider_id, "user_id": user["id"], "identity_data": json.dumps(data),
        "provider": provider, "email": email.lower() or None,
        "last_sign_in_at": parse_time(item.get("last_sign_in_at"), f"{where}.last_sign_in_at"),
        "created_at": created,
        "updated_at": parse_time(item.get("updated_at"), f"{where}.updated_at") or created,
    }


def passkey_from_json(item: Any, user: dict[str, Any], where: str) -> dict[str, Any]:
    """A webauthn_credentials row from the file; the public key must be a COSE key."""
    item = expect(item, dict, where, "a passkey object")
    raw = {}
    for key in ("credential_id", "public_key"):
        text = expect(item.get(key), str, f"{where}.{key}", "base64url text")
        try:
            raw[key] = passkeys.from_b64url(text)
        except ValueError as error:
            raise DataFileError(f"{where}.{key}: not base64url") from error
        if not raw[key]:
            raise DataFileError(f"{where}.{key}: empty")
    try:
        decode_credential_public_key(raw["public_key"])
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise DataFileError(f"{where}.public_key: not a COSE public key") from error
    aaguid = item.get("aaguid")
    created = parse_time(item.get("created_at"), f"{where}.created_at") or user["created_at"]
    sign_count = expect(item.get("sign_count", 0), int, f"{where}.sign_count", "a whole number")
    transports = expect(item.get("transports") or [], list, f"{where}.transports", "a list")
    return {
        "id": str(uuid.uuid4()) if item.get("id") is None
        else parse_uuid(item["id"], f"{where}.id"),
        "user_id": user["id"], **raw,
        "attestation_type": expect(item.get("attestation_type") or "", str,
                                   f"{where}.attestation_type", "a string"),
        "aaguid": None if aaguid is None else parse_uuid(aaguid, f"{where}.aaguid"),
        "sign_count": max(sign_count, 0),
        "transports": json.dumps([expect(t, str, f"{where}.transports", "a list of strings")
                                  for t in transports]),
        "backup_eligible": int(expect(item.get("backup_eligible", False), bool,
                                      f"{where}.backup_eligible", "true or false")),
        "backed_up": int(expect(item.get("backed_up", False), bool, f"{where}.backed_up",
                                "true or false")),
        "friendly_name": expect(item.get("friendly_name") or "", str, f"{where}.friendly_name",
                                "a string"),
        "created_at": created,
        "updated_at": parse_time(item.get("updated_at"), f"{where}.updated_at") or created,
        "last_used_at": parse_time(item.get("last_used_at"), f"{where}.last_used_at"),
    }


def store_passkeys(conn: sqlite3.Connection, user: dict[str, Any],
                   rows: list[dict[str, Any]], where: str) -> None:
    """Replace the user's passkeys; a credential id or passkey id of another user is refused."""
    conn.execute("DELETE FROM webauthn_credentials WHERE user_id = ?", (user["id"],))
    for number, row in enumerate(rows):
        owner = conn.execute("SELECT user_id FROM webauthn_credentials WHERE credential_id = ?"
                             " OR id = ?", (row["credential_id"], row["id"])).fetchone()
        if owner is not None:
            raise DataFileError(f"{where}.passkeys[{number}]: this passkey already belongs to "
                                f"user {owner['user_id']}")
        conn.execute(
            "INSERT INTO webauthn_credentials (id, user_id, credential_id, public_key,"
            " attestation_type, aaguid, sign_count, transports, backup_eligible, backed_up,"
            " friendly_name, created_at, updated_at, last_used_at) VALUES (:id, :user_id,"
            " :credential_id, :public_key, :attestation_type, :aaguid, :sign_count, :transports,"
            " :backup_eligible, :backed_up, :friendly_name, :created_at, :updated_at,"
            " :last_used_at)", row)


def account_from_json(item: Any, where: str, now: float) -> dict[str, Any]:
    """A stand-in account row; ``id`` may be left out for a new login."""
    item = expect(item, dict, where, "an account object")
    provider = expect(item.get("provider"), str, f"{where}.provider", "a provider name")
    if provider not in KNOWN_PROVIDERS:
        raise DataFileError(f"{where}.provider: {provider!r} is not a provider the real "
                            "server knows")
    login = expect(item.get("login"), str, f"{where}.login", "a non-empty login")
    if not login:
        raise DataFileError(f"{where}.login: expected a non-empty login")
    account_id = item.get("id")
    if account_id is not None:
        expect(account_id, int, f"{where}.id", "a whole number")
    return {"provider": provider, "id": account_id, "login": login,
            "name": expect(item.get("name") or "", str, f"{where}.name", "a string"),
            "email": expect(item.get("email") or "", str, f"{where}.email", "a string"),
            "verified": int(expect(item.get("verified", True), bool, f"{where}.verified",
                                   "true or false")),
            "created_at": parse_time(item.get("created_at"), f"{where}.created_at") or now}


# --- storing -----------------------------------------------------------------------------------


def store_user(conn: sqlite3.Connection, user: dict[str, Any],
               identities: list[dict[str, Any]], where: str) -> None:
    """Insert or replace one user and all of their identities (the file wins)."""
    if user["email"] and conn.execute(
            "SELECT 1 FROM users WHERE aud = ? AND lower(email) = ? AND id != ?",
            (user["aud"], user["email"], user["id"])).fetchone():
        raise DataFileError(f"{where}.email: {user['email']} belongs to another user")
    if users.load(conn, user["id"]) is None:
        users.insert(conn, user)
    else:
        conn.execute(users.UPDATE_USER, users.params(user))
        conn.execute("DELETE FROM identities WHERE user_id = ?", (user["id"],))
    for number, identity in enumerate(identities):
        owner = conn.execute(
            "SELECT user_id FROM identities WHERE (provider = ? AND provider_id = ?) OR id = ?",
            (identity["provider"], identity["provider_id"], identity["id"])).fetchone()
        if owner is not None:
            raise DataFileError(f"{where}.identities[{number}]: {identity['provider']} identity "
                                f"{identity['provider_id']} already belongs to user "
                                f"{owner['user_id']}")
        conn.execute(
            "INSERT INTO identities (id, provider_id, user_id, identity_data, provider, email,"
            " last_sign_in_at, created_at, updated_at) VALUES (:id, :provider_id, :user_id,"
            " :identity_data, :provider, :email, :last_sign_in_at, :created_at, :updated_at)",
            identity)


def store_account(conn: sqlite3.Connection, account: dict[str, Any], where: str) -> None:
    """Insert or update a stand-in account; an id or login held by another account is refused."""
    by_login = stand_in.find_account(conn, account["provider"], account["login"])
    if account["id"] is None:
        account["id"] = by_login["id"] if by_login else None
    if account["id"] is None:
        stand_in.save_account(conn, account["provider"], account, account["created_at"])
        return
    by_id = conn.execute("SELECT login FROM stand_in_accounts WHERE provider = ? AND id = ?",
                         (account["provider"], account["id"])).fetchone()
    if by_id is not None and by_id["login"] != account["login"]:
        raise DataFileError(f"{where}.id: {account['provider']} id {account['id']} belongs to "
                            f"login {by_id['login']!r}")
    if by_login is not None and by_login["id"] != account["id"]:
        raise DataFileError(f"{where}.login: {account['provider']} login {account['login']!r} "
                            f"has id {by_login['id']}")
    conn.execute(
        "INSERT INTO stand_in_accounts (provider, id, login, name, email, verified, created_at)"
        " VALUES (:provider, :id, :login, :name, :email, :verified, :created_at)"
        " ON CONFLICT (provider, id) DO UPDATE SET name = excluded.name,"
        " email = excluded.email, verified = excluded.verified,"
        " created_at = excluded.created_at", account)


def import_into(conn: sqlite3.Connection, data: Any, now: float) -> dict[str, int]:
    """Check and store a data file inside the caller's transaction; counts of what it held."""
    check_header(data)
    accounts = expect(data.get("stand_in_accounts", []), list, "stand_in_accounts", "a list")
    for number, item in enumerate(accounts):
        where = f"stand_in_accounts[{number}]"
        store_account(conn, account_from_json(item, where, now), where)
    people = expect(data.get("users", []), list, "users", "a list")
    for number, item in enumerate(people):
        where = f"users[{number}]"
        user = user_from_json(item, where, now)
        found = expect(item.get("identities") or [], list, f"{where}.identities", "a list")
        store_user(conn, user, [identity_from_json(identity, user, f"{where}.identities[{n}]")
                                for n, identity in enumerate(found)], where)
        if item.get("passkeys") is not None:
            listed = expect(item["passkeys"], list, f"{where}.passkeys", "a list")
            store_passkeys(conn, user, [passkey_from_json(p, user, f"{where}.passkeys[{n}]")
                                        for n, p in enumerate(listed)], where)
    return {"users": len(people), "stand_in_accounts": len(accounts)}


def import_data(data: Any) -> dict[str, int]:
    """Import a data file in one transaction: all of it, or nothing if any entry is wrong."""
    with get_db().transaction() as conn:
        return import_into(conn, data, current_app.config["CLOCK"]())


def reset(data: Any = None) -> dict[str, int]:
    """Forget every user, flow, audit entry and stand-in account; then the default accounts,
    the start-up seed file and ``data`` (if any), all in one transaction."""
    app = current_app
    now = app.config["CLOCK"]()
    counts = {"users": 0, "stand_in_accounts": 0}
    with get_db().transaction() as conn:
        for table in RESET_TABLES:  # a fixed list of names, never input
            conn.execute(f"DELETE FROM {table}")  # noqa: S608
        for provider in stand_in.served_providers(app.config):
            stand_in.save_account(conn, provider, stand_in.default_account(provider),
                                  stand_in.DEFAULT_CREATED_AT)
        for source in (app.extensions.get("emulator.seed"), data):
            if source is not None:
                for key, value in import_into(conn, source, now).items():
                    counts[key] += value
    ratelimit.init_app(app)  # fresh /token buckets,
    mfa.init_app(app)  # fresh MFA challenge and verify buckets,
    passkeys.init_app(app)  # and fresh passkey sign-in buckets
    return counts


# --- files and start-up ----------------------------------------------------------------------


def read_file(path: str | Path) -> Any:
    """Parse a data file from disk (``-`` is not handled here; the CLI reads stdin)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFileError(f"{path}: not JSON ({error})") from error


def write_file(path: str | Path, data: dict[str, Any]) -> None:
    """Write a data file as indented JSON (diff-friendly)."""
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")


def init_app(app: Flask) -> None:
    """Import the SEED file, if configured, and keep it for resets; fail fast if it is wrong."""
    seed = app.config.get("SEED")
    if not seed:
        return
    try:
        data = read_file(seed)
        with app.app_context():
            import_data(data)
    except (OSError, DataFileError) as error:
        raise ValueError(f"SEED {seed}: {error}") from error
    app.extensions["emulator.seed"] = data
