"""Admin API under /auth/v1/admin for service_role tokens (§7)."""

import math
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request

from . import audit, users
from .auth_api import bearer_claims, read_json
from .db import get_db
from .errors import ApiError, json_response

bp = Blueprint("admin_api", __name__, url_prefix="/auth/v1/admin")

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
USER_FIELDS = {"email": str, "phone": str, "password": str, "email_confirm": bool,
               "phone_confirm": bool, "role": str, "user_metadata": dict, "app_metadata": dict,
               "ban_duration": str, "id": str, "aud": str, "password_hash": str}


@bp.before_request
def require_admin() -> None:
    """requireAdminCredentials: a verified bearer JWT with an admin role."""
    claims = bearer_claims()
    roles = {r.strip() for r in current_app.config["JWT_ADMIN_ROLES"].split(",")}
    if claims.get("role") not in roles:
        raise ApiError(403, "not_admin", "User not allowed")
    session_id = claims.get("session_id")
    if session_id and not get_db().one("SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
        raise ApiError(403, "session_expired", "Session is no longer valid")
    g.emulator_admin = audit.admin_actor(claims["role"])


def request_aud() -> str:
    """The audience admin calls act on: X-JWT-AUD, else the configured one."""
    return request.headers.get("X-JWT-AUD") or current_app.config["JWT_AUD"]


def positive_int(name: str, default: int) -> int:
    """Read a pagination query parameter (unsigned integer) or fail with 400."""
    value = request.args.get(name, "")
    if value == "":
        return default
    if not value.isdigit():
        raise ApiError(400, "validation_failed", f"Bad Pagination Parameters: {name}")
    return int(value)


def sort_order() -> str:
    """Only ``created_at asc|desc`` may be sorted on."""
    field, _, direction = (request.args.get("sort") or "created_at desc").partition(" ")
    if field != "created_at" or direction.lower() not in {"", "asc", "desc"}:
        raise ApiError(400, "validation_failed", "Bad Sort Parameters: unsupported sort")
    return "ASC" if direction.lower() == "asc" else "DESC"


def link_header(page: int, per_page: int, total: int, path: str = "/admin/users") -> str:
    """GoTrue's Link header (next when more pages exist, always last)."""
    last = math.ceil(total / per_page) if per_page else 0
    query = {k: request.args.get(k, "") for k in request.args}
    links = []
    if page < last:
        links.append(f'<{path}?{urlencode(sorted({**query, "page": page + 1}.items()))}>;'
                     ' rel="next"')
    links.append(f'<{path}?{urlencode(sorted({**query, "page": last}.items()))}>; rel="last"')
    return ", ".join(links)


@bp.get("/users")
def list_users() -> Response:
    """Page through users of the request aud, newest first by default."""
    page, per_page = positive_int("page", 1), positive_int("per_page", 50)
    if per_page == 0:
        raise ApiError(400, "validation_failed", "Bad Pagination Parameters: per_page")
    order = sort_order()
    term = f"%{request.args.get('filter', '')}%"
    where = ("aud = ? AND (email LIKE ? OR lower(json_extract(user_metadata, '$.full_name'))"
             " LIKE lower(?))")
    args = (request_aud(), term, term)
    db = get_db()
    total = db.one(f"SELECT count(*) FROM users WHERE {where}", args)[0]  # noqa: S608
    rows = db.all(f"SELECT * FROM users WHERE {where} ORDER BY created_at {order}, id"  # noqa: S608
                  " LIMIT ? OFFSET ?", (*args, per_page, max(page - 1, 0) * per_page))
    body = {"users": [users.user_json(users.from_row(r), None) for r in rows], "aud": request_aud()}
    headers = {"X-Total-Count": str(total), "Link": link_header(page, per_page, total)}
    return json_response(body, headers=headers)


def find_user(user_id: str) -> dict[str, Any]:
    """loadUser: 404 for a non-UUID or unknown id."""
    try:
        uuid.UUID(user_id)
    except ValueError as error:
        raise ApiError(404, "validation_failed", "user_id must be an UUID") from error
    user = users.load(get_db(), user_id)
    if user is None:
        raise ApiError(404, "user_not_found", "User not found")
    return user


@bp.get("/users/<user_id>")
def get_user(user_id: str) -> Response:
    """One user with identities."""
    return json_response(users.full_json(get_db(), find_user(user_id)))


def check_email(email: str) -> str:
    """Validate an email address (400) and lower-case it."""
    if not EMAIL.fullmatch(email):
        raise ApiError(400, "validation_failed",
                       "Unable to validate email address: invalid format")
    return email.lower()


def email_taken(conn, email: str, aud: str, user_id: str | None = None) -> bool:
    """True if another user in the aud has this email."""
    row = conn.execute("SELECT id FROM users WHERE aud = ? AND lower(email) = ? AND id != ?",
                       (aud, email, user_id or "")).fetchone()
    return row is not None


def set_identity(conn, user: dict[str, Any], provider: str, value: str, now: float) -> None:
    """Create or update the email/phone identity that mirrors a user field."""
    data = {"sub": user["id"], provider: value, "email_verified": False, "phone_verified": False}
    row = conn.execute("SELECT id FROM identities WHERE user_id = ? AND provider = ?",
                       (user["id"], provider)).fetchone()
    if row is None:
        users.add_identity(conn, user["id"], provider, user["id"], data, now)
    else:
        users.update_identity(conn, row["id"], data, now)


def apply_changes(conn, user: dict[str, Any], body: dict[str, Any], now: float) -> None:
    """Apply the optional fields shared by admin create and update."""
    if body.get("email"):
        email = check_email(body["email"])
        if email_taken(conn, email, user["aud"], user["id"]):
            raise ApiError(422, "email_exists",
                           "A user with this email address has already been registered")
        user["email"] = email
    if body.get("phone"):
        user["phone"] = body["phone"]
    if body.get("role"):
        user["role"] = body["role"]
    if body.get("email_confirm"):
        user["email_confirmed_at"] = user["email_confirmed_at"] or now
        user["user_metadata"]["email_verified"] = True
    if body.get("phone_confirm"):
        user["phone_confirmed_at"] = user["phone_confirmed_at"] or now
    users.merge(user["user_metadata"], body.get("user_metadata") or {})
    users.merge(user["app_metadata"], body.get("app_metadata") or {})
    if body.get("ban_duration"):
        users.apply_ban(user, body["ban_duration"], now)


@bp.post("/users")
def create_user() -> Response:
    """Create a user with email/phone identities (handy for seeding)."""
    body = read_json(USER_FIELDS)
    if not body.get("email") and not body.get("phone"):
        raise ApiError(400, "validation_failed",
                       "Cannot create a user without either an email or phone")
    config, now = current_app.config, current_app.config["CLOCK"]()
    user = users.new_user(now, body.get("aud") or request_aud(),
                          config["JWT_DEFAULT_GROUP_NAME"],
                          app_metadata={"provider": "email", "providers": ["email"]})
    if body.get("id"):
        user["id"] = str(parse_user_id(body["id"]))
        if users.load(get_db(), user["id"]) is not None:
            raise ApiError(422, "user_already_exists", "User already exists")
    with get_db().transaction() as conn:
        apply_changes(conn, user, body, now)
        users.insert(conn, user)
        for provider in ("email", "phone"):
            if user[provider]:
                set_identity(conn, user, provider, user[provider], now)
        users.recompute_providers(conn, user)
        users.save(conn, user, now)
        audit.record(conn, g.emulator_admin, audit.USER_SIGNED_UP, now,
                     audit.user_traits(user, provider=user["app_metadata"]["providers"][0]))
        return json_response(users.full_json(conn, user))


def parse_user_id(value: str) -> uuid.UUID:
    """Validate a custom user id."""
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise ApiError(400, "validation_failed", "id must be a valid UUID") from error


def update(conn, user: dict[str, Any], body: dict[str, Any], actor: dict[str, Any],
           now: float) -> None:
    """adminUserUpdate inside the caller's transaction, with its user_modified entry."""
    apply_changes(conn, user, body, now)
    for provider in ("email", "phone"):
        if body.get(provider):
            set_identity(conn, user, provider, user[provider], now)
    users.save(conn, user, now)
    audit.record(conn, actor, audit.USER_MODIFIED, now, audit.user_traits(user))


def delete(conn, user: dict[str, Any], soft: bool, actor: dict[str, Any], now: float) -> None:
    """adminUserDelete inside the caller's transaction: user_deleted first, then the delete."""
    audit.record(conn, actor, audit.USER_DELETED, now, audit.user_traits(user))
    if soft:
        conn.execute("DELETE FROM sessions WHERE user_id = ?", (user["id"],))
        conn.execute("DELETE FROM identities WHERE user_id = ?", (user["id"],))
        conn.execute("DELETE FROM mfa_factors WHERE user_id = ?", (user["id"],))
        conn.execute("DELETE FROM webauthn_credentials WHERE user_id = ?", (user["id"],))
        user.update(email="", phone="", deleted_at=now)
        users.save(conn, user, now)
    else:
        conn.execute("DELETE FROM users WHERE id = ?", (user["id"],))


@bp.put("/users/<user_id>")
def update_user(user_id: str) -> Response:
    """Update fields, merge metadata (null deletes a key) and ban or unban."""
    user = find_user(user_id)
    body = read_json(USER_FIELDS)
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        update(conn, user, body, g.emulator_admin, now)
        return json_response(users.full_json(conn, user))


@bp.delete("/users/<user_id>")
def delete_user(user_id: str) -> Response:
    """Hard delete (cascades), or soft delete with ``should_soft_delete``; 200 {}."""
    user = find_user(user_id)
    body = read_json({"should_soft_delete": bool}) if request.get_data(cache=True).strip() else {}
    with get_db().transaction() as conn:
        delete(conn, user, bool(body.get("should_soft_delete")), g.emulator_admin,
               current_app.config["CLOCK"]())
    return json_response({})


@bp.get("/audit")
def audit_log() -> Response:
    """adminAuditLog: entries newest first, ``query=author|action|type:<text>``, paginated."""
    page, per_page = positive_int("page", 1), positive_int("per_page", 50)
    if per_page == 0:
        raise ApiError(400, "validation_failed", "Bad Pagination Parameters: per_page")
    query = request.args.get("query", "")
    try:
        columns, text = audit.parse_query(query)
    except ValueError as error:
        raise ApiError(400, "validation_failed", f"Invalid query scope: {query}") from error
    rows, total = audit.find(get_db(), [(columns, text)], page, per_page)
    headers = {"X-Total-Count": str(total),
               "Link": link_header(page, per_page, total, "/admin/audit")}
    return json_response([audit.entry_json(row) for row in rows], headers=headers)
