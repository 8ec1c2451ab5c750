"""Multi-factor authentication with TOTP, as the real server offers it.

From ``internal/api/mfa.go`` (enrol, challenge, verify, unenrol), ``internal/models/factor.go``,
``challenge.go``, ``sessions.go`` (aal and amr), ``internal/api/admin.go`` (the admin factor
calls) and the ``GOTRUE_MFA_*`` defaults in ``internal/conf/configuration.go``. Codes are RFC 6238
(SHA-1, six digits, 30-second steps, one step of skew either way), checked with pyotp.
"""

import hmac
import json
import re
import sqlite3
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import pyotp
import segno
from flask import Blueprint, Flask, Response, current_app, g

from . import audit, ratelimit, sessions, users
from .admin_api import find_user, require_admin
from .auth_api import current_user, read_json
from .db import get_db
from .errors import ApiError, json_response

bp = Blueprint("mfa", __name__, url_prefix="/auth/v1/factors")
admin_bp = Blueprint("mfa_admin", __name__, url_prefix="/auth/v1/admin/users/<user_id>/factors")

TOTP = "totp"
VERIFIED, UNVERIFIED = "verified", "unverified"
TOTP_METHOD = "totp"  # the session's amr method a TOTP verification adds
BURST = 30  # the real server's burst for the challenge and verify limiters
QR_MODULE = 3  # pixels per QR module (DefaultQRSize)
SKEW = 1  # time steps accepted either side of now
# What Go's url.PathEscape leaves unescaped besides letters, digits and "-_.~".
PATH_SEGMENT_SAFE = "$&+:=@"
UUID_FORMS = {
    32: re.compile(r"[0-9a-fA-F]{32}"),
    36: re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"),
    38: re.compile(r"\{[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}"),
    45: re.compile(r"urn:uuid:[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"),
}
NIL_UUID = "00000000-0000-0000-0000-000000000000"
OWNED = "SELECT * FROM mfa_factors WHERE id = ? AND user_id = ?"
TOO_MANY = "Maximum number of verified factors reached, unenroll to continue"
# Audit actions (models.EnrollFactorAction and friends) and what they are called in the log.
FACTOR_IN_PROGRESS = "factor_in_progress"
CHALLENGE_CREATED = "challenge_created"
VERIFICATION_ATTEMPTED = "verification_attempted"
FACTOR_UNENROLLED = "factor_unenrolled"
FACTOR_UPDATED = "factor_updated"


def init_app(app: Flask) -> None:
    """The challenge and verify limiters (GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY a minute)."""
    rate = app.config["MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY"] / 60
    for name in ("challenge", "verify"):
        app.extensions[f"emulator.mfa_{name}_limit"] = ratelimit.TokenBuckets(
            rate, BURST, app.config["CLOCK"])


# --- for the dashboard ----------------------------------------------------------------------


def list_factors(user_id: str) -> list[dict[str, Any]]:
    """A user's factors, verified or not, as GET /admin/users/{id}/factors lists them."""
    return [users.factor_json(row) for row in users.factors(get_db(), user_id)]


def delete_factor(user_id: str, factor_id: str) -> dict[str, Any] | None:
    """Delete one of a user's factors as the admin API does: sessions raised with it drop to
    aal1. Returns the deleted factor, or None when the user has no such factor."""
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        user = users.load(conn, user_id)
        factor = owned(conn, user_id, factor_id) if user is not None else None
        if factor is None:
            return None
        audit.record(conn, user, audit.FACTOR_DELETED, now,
                     {"factor_id": factor["id"], "user_id": user_id}, audit.client_ip())
        remove(conn, factor)
    return users.factor_json(factor)


# --- rows ------------------------------------------------------------------------------------


def owned(conn: sqlite3.Connection, user_id: str, factor_id: str) -> sqlite3.Row | None:
    """FindOwnedFactorByID: the user's factor with this id, or None."""
    return conn.execute(OWNED, (factor_id, user_id)).fetchone()


def remove(conn: sqlite3.Connection, factor: sqlite3.Row) -> None:
    """Delete a factor (its challenges go with it) and DowngradeSessionsToAAL1."""
    conn.execute("DELETE FROM mfa_factors WHERE id = ?", (factor["id"],))
    for row in conn.execute("SELECT id, amr FROM sessions WHERE factor_id = ?",
                            (factor["id"],)).fetchall():
        amr = [entry for entry in json.loads(row["amr"]) if entry["method"] != TOTP_METHOD]
        conn.execute("UPDATE sessions SET aal = 'aal1', factor_id = NULL, amr = ? WHERE id = ?",
                     (json.dumps(amr), row["id"]))


def load_factor(user: dict[str, Any], factor_id: str) -> sqlite3.Row:
    """loadFactor: 404 for an id that is not a UUID or not one of this user's factors."""
    try:
        factor_id = str(uuid.UUID(factor_id))
    except ValueError as error:
        raise ApiError(404, "validation_failed", "factor_id must be an UUID") from error
    factor = get_db().one(OWNED, (factor_id, user["id"]))
    if factor is None:
        raise ApiError(404, "mfa_factor_not_found", "Factor not found")
    return factor


def signed_in() -> tuple[dict[str, Any], dict[str, Any]]:
    """requireAuthentication and requireNotAnonymous; (claims, user)."""
    claims, user = current_user()
    if claims.get("is_anonymous"):
        raise ApiError(403, "no_authorization",
                       "Anonymous user not allowed to perform these actions")
    return claims, user


def session_of(claims: dict[str, Any]) -> sqlite3.Row | None:
    """The session named by the token's session_id claim (current_user checked it exists)."""
    session_id = claims.get("session_id")
    return get_db().one("SELECT * FROM sessions WHERE id = ?", (session_id,)) \
        if session_id else None


def limit(name: str) -> None:
    """429 over_request_rate_limit when the caller's challenge or verify bucket is empty."""
    if not current_app.extensions[f"emulator.mfa_{name}_limit"].allow(ratelimit.client_key()):
        raise ApiError(429, "over_request_rate_limit", "Request rate limit reached")


# --- TOTP ------------------------------------------------------------------------------------


def totp_key(issuer: str, account: str) -> tuple[str, str]:
    """A new secret (20 random bytes, base32 without padding) and its otpauth:// URI, built the
    way pquerna/otp builds it: escaped path, then the parameters sorted by name."""
    secret = pyotp.random_base32(32)
    path = quote(f"/{issuer}:{account}", safe="/:@$&+,;=")
    # pquerna/otp's EncodeQuery escapes names and values with url.PathEscape, not QueryEscape:
    # ":" stays as it is and a space is %20 (never "+").
    query = "&".join(f"{name}={quote(value, safe=PATH_SEGMENT_SAFE)}" for name, value in sorted(
        {"algorithm": "SHA1", "digits": "6", "issuer": issuer, "period": "30",
         "secret": secret}.items()))
    return secret, f"otpauth://totp{path}?{query}"


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as an SVG document (error correction H, three pixels a module).

    Like the real server's it has no ``#`` in it (colours by name), so a client that puts it
    behind ``data:image/svg+xml;utf-8,`` unencoded, as supabase-js and supabase-py do, still
    gets the whole picture.
    """
    code = segno.make_qr(text, error="h", boost_error=False)
    rows = list(code.matrix_iter(scale=1, border=0))
    size = len(rows)
    runs = []
    for y, row in enumerate(rows):
        x = 0
        for dark, group in _runs(row):
            if dark:
                runs.append(f"M{x} {y}h{group}v1h-{group}z")
            x += group
    pixels = size * QR_MODULE
    return (f'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="{pixels}" '
            f'height="{pixels}" viewBox="0 0 {size} {size}" shape-rendering="crispEdges">'
            f'<path fill="white" d="M0 0h{size}v{size}h-{size}z"/>'
            f'<path fill="black" d="{"".join(runs)}"/></svg>\n')


def _runs(row: Iterable[int]) -> list[tuple[bool, int]]:
    runs: list[tuple[bool, int]] = []
    for module in row:
        dark = bool(module)
        if runs and runs[-1][0] == dark:
            runs[-1] = (dark, runs[-1][1] + 1)
        else:
            runs.append((dark, 1))
    return runs


def code_is_valid(secret: str, code: str, now: float) -> bool:
    """totp.ValidateCustom: trimmed, exactly six bytes, equal to the code of now or a step
    either side (compared in constant time)."""
    code = code.strip()
    if len(code.encode()) != 6:
        return False
    totp = pyotp.TOTP(secret)
    step = int(now // 30)
    return any(hmac.compare_digest(totp.generate_otp(step + skew).encode(), code.encode())
               for skew in range(-SKEW, SKEW + 1))


# --- enrol -----------------------------------------------------------------------------------


@bp.post("")
@bp.post("/")
def enroll() -> Response:
    """EnrollFactor: a new unverified TOTP factor, its secret, otpauth:// URI and QR code."""
    claims, user = signed_in()
    session = session_of(claims)
    if session is None:
        raise ApiError(500, "unexpected_failure",
                       "A valid session and a registered user are required to enroll a factor")
    body = read_json({"friendly_name": str, "factor_type": str, "issuer": str, "phone": str})
    check_factor_type(body.get("factor_type") or "", "enroll")
    config = current_app.config
    issuer = body.get("issuer") or urlsplit(config["SITE_URL"]).netloc
    name = body.get("friendly_name") or ""
    now = config["CLOCK"]()
    with get_db().transaction() as conn:  # DeleteExpiredFactors commits on its own
        delete_abandoned(conn, now)
    with get_db().transaction() as conn:
        check_room(conn, user, name, session)
        if not user["email"]:  # pquerna/otp refuses an empty account name
            raise ApiError(500, "unexpected_failure", "Error generating QR Code")
        secret, uri = totp_key(issuer, user["email"])
        factor_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO mfa_factors (id, user_id, friendly_name, factor_type, status, secret,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (factor_id, user["id"], name, TOTP, UNVERIFIED, secret, now, now))
        audit.record(conn, user, FACTOR_IN_PROGRESS, now, {"factor_id": factor_id},
                     audit.client_ip())
    return json_response({"id": factor_id, "type": TOTP, "friendly_name": name,
                          "totp": {"qr_code": qr_svg(uri), "secret": secret, "uri": uri}})


def check_factor_type(factor_type: str, action: str) -> None:
    """Phone and WebAuthn are off by default; anything else is not a factor type."""
    verb = "enroll" if action == "enroll" else "verification"
    names = {"phone": "Phone", "webauthn": "WebAuthn", TOTP: "TOTP"}
    if factor_type not in names:
        raise ApiError(400, "validation_failed", "factor_type needs to be totp, phone, or webauthn")
    enabled = factor_type == TOTP and current_app.config[
        "MFA_TOTP_ENROLL_ENABLED" if action == "enroll" else "MFA_TOTP_VERIFY_ENABLED"]
    if not enabled:
        raise ApiError(422, f"mfa_{factor_type}_{action}_not_enabled",
                       f"MFA {verb} is disabled for {names[factor_type]}")


def delete_abandoned(conn: sqlite3.Connection, now: float) -> None:
    """DeleteExpiredFactors: every user's unverified factors never challenged, past the expiry."""
    conn.execute("DELETE FROM mfa_factors WHERE status != ? AND created_at + ? < ? AND NOT"
                 " EXISTS (SELECT 1 FROM mfa_challenges c WHERE c.factor_id = mfa_factors.id)",
                 (VERIFIED, current_app.config["MFA_FACTOR_EXPIRY_DURATION"], now))


def check_room(conn: sqlite3.Connection, user: dict[str, Any], name: str,
               session: sqlite3.Row) -> None:
    """validateFactors: names are unique, at most 10 factors, aal2 to add a second one."""
    rows = users.factors(conn, user["id"])
    for row in rows:
        if row["friendly_name"] == name:
            raise ApiError(422, "mfa_factor_name_conflict",
                           f"A factor with the friendly name {json.dumps(name, ensure_ascii=False)}"
                           " for this user already exists")
    verified = sum(row["status"] == VERIFIED for row in rows)
    config = current_app.config
    if len(rows) >= config["MFA_MAX_ENROLLED_FACTORS"] or \
            verified >= config["MFA_MAX_VERIFIED_FACTORS"]:
        raise ApiError(422, "too_many_enrolled_mfa_factors", TOO_MANY)
    if verified and session["aal"] != "aal2":
        raise ApiError(403, "insufficient_aal", "AAL2 required to enroll a new factor")


# --- challenge and verify --------------------------------------------------------------------


@bp.post("/<factor_id>/challenge")
def challenge(factor_id: str) -> Response:
    """ChallengeFactor: a challenge bound to the caller's address, valid for five minutes."""
    _claims, user = signed_in()
    factor = load_factor(user, factor_id)
    limit("challenge")
    check_factor_type(factor["factor_type"], "verify")
    config = current_app.config
    now = config["CLOCK"]()
    challenge_id = str(uuid.uuid4())
    with get_db().transaction() as conn:
        conn.execute("INSERT INTO mfa_challenges (id, factor_id, ip_address, created_at)"
                     " VALUES (?, ?, ?, ?)", (challenge_id, factor["id"], audit.client_ip(), now))
        conn.execute("UPDATE mfa_factors SET last_challenged_at = ? WHERE id = ?",
                     (now, factor["id"]))
        audit.record(conn, user, CHALLENGE_CREATED, now,
                     {"factor_id": factor["id"], "factor_status": factor["status"]},
                     audit.client_ip())
    expires_at = int(now + config["MFA_CHALLENGE_EXPIRY_DURATION"])
    return json_response({"id": challenge_id, "type": factor["factor_type"],
                          "expires_at": expires_at})


@bp.post("/<factor_id>/verify")
def verify(factor_id: str) -> Response:
    """VerifyFactor: a right code raises the session to aal2 (amr gains totp) with new tokens."""
    claims, user = signed_in()
    factor = load_factor(user, factor_id)
    limit("verify")
    body = read_json({"code": str})
    challenge_id = challenge_id_of(body.get("challenge_id"))
    code = body.get("code") or ""
    if not code:
        raise ApiError(400, "validation_failed", "Code needs to be non-empty")
    check_factor_type(factor["factor_type"], "verify")
    now = current_app.config["CLOCK"]()
    found = usable_challenge(factor, challenge_id, now)
    if not code_is_valid(factor["secret"], code, now):
        raise ApiError(422, "mfa_verification_failed", "Invalid TOTP code entered")
    with get_db().transaction() as conn:
        audit.record(conn, user, VERIFICATION_ATTEMPTED, now,
                     {"challenge_id": found["id"], "factor_id": factor["id"],
                      "factor_type": factor["factor_type"]}, audit.client_ip())
        conn.execute("UPDATE mfa_challenges SET verified_at = ? WHERE id = ?", (now, found["id"]))
        if factor["status"] != VERIFIED:
            conn.execute("UPDATE mfa_factors SET status = ?, updated_at = ? WHERE id = ?",
                         (VERIFIED, now, factor["id"]))
        body = raise_session(conn, users.load(conn, user["id"]), claims, factor, now)
        # InvalidateSessionsWithAALLessThan: the person's other aal1 sessions end here.
        conn.execute("DELETE FROM sessions WHERE user_id = ? AND aal < 'aal2'", (user["id"],))
        conn.execute("DELETE FROM mfa_factors WHERE user_id = ? AND status = ? AND"
                     " factor_type = ?", (user["id"], UNVERIFIED, factor["factor_type"]))
    return json_response(body)


def challenge_id_of(value: Any) -> str:
    """challenge_id as gofrs/uuid reads it from JSON (absent or null: the nil UUID)."""
    if value is None:
        return NIL_UUID
    if not isinstance(value, str):
        kind = "number" if isinstance(value, int | float) and not isinstance(value, bool) else \
            {bool: "bool", list: "array", dict: "object"}.get(type(value), "value")
        raise ApiError(400, "bad_json", "Could not parse request body as JSON: json: cannot "
                       f"unmarshal {kind} into Go struct field .challenge_id of type uuid.UUID")
    form = UUID_FORMS.get(len(value.encode()))
    if form is None:
        problem = f"incorrect UUID length {len(value.encode())} in string"
    elif not form.fullmatch(value):
        problem = "incorrect UUID format in string"
    else:
        return str(uuid.UUID(value))
    raise ApiError(400, "bad_json", f"Could not parse request body as JSON: uuid: {problem} "
                                    f"{json.dumps(value, ensure_ascii=False)}")


def usable_challenge(factor: sqlite3.Row, challenge_id: str, now: float) -> sqlite3.Row:
    """validateChallenge: this factor's, not used yet, from the same address, not expired
    (an expired challenge is deleted, and that deletion stays)."""
    db = get_db()
    found = db.one("SELECT * FROM mfa_challenges WHERE id = ? AND factor_id = ?",
                   (challenge_id, factor["id"]))
    if found is None:
        raise ApiError(422, "mfa_factor_not_found",
                       "MFA factor with the provided challenge ID not found")
    if found["verified_at"] is not None or found["ip_address"] != audit.client_ip():
        raise ApiError(422, "mfa_ip_address_mismatch",
                       "Challenge and verify IP addresses mismatch.")
    if now > found["created_at"] + current_app.config["MFA_CHALLENGE_EXPIRY_DURATION"]:
        with db.transaction() as conn:
            conn.execute("DELETE FROM mfa_challenges WHERE id = ?", (found["id"],))
        raise ApiError(422, "mfa_challenge_expired",
                       f"MFA challenge {found['id']} has expired, verify against another "
                       "challenge or create a new challenge.")
    return found


def raise_session(conn: sqlite3.Connection, user: dict[str, Any], claims: dict[str, Any],
                  factor: sqlite3.Row, now: float) -> dict[str, Any]:
    """updateMFASessionAndClaims: totp joins the session's amr, its refresh token is swapped
    for a child, the session is tied to the factor at aal2; the token response."""
    session_id = claims.get("session_id") or ""
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    active = conn.execute("SELECT * FROM refresh_tokens WHERE session_id = ? AND revoked = 0"
                          " ORDER BY created_at, id LIMIT 1", (session_id,)).fetchone()
    if row is None or active is None:
        raise ApiError(500, "unexpected_failure", "Database error verifying MFA TOTP secret")
    amr = [entry for entry in json.loads(row["amr"]) if entry["method"] != TOTP_METHOD]
    amr.append({"method": TOTP_METHOD, "timestamp": int(now)})
    conn.execute("UPDATE sessions SET aal = 'aal2', factor_id = ?, amr = ?, updated_at = ?"
                 " WHERE id = ?", (factor["id"], json.dumps(amr), now, session_id))
    # GrantRefreshTokenSwap
    audit.record(conn, user, audit.TOKEN_REVOKED, now)
    conn.execute("UPDATE refresh_tokens SET revoked = 1, updated_at = ? WHERE id = ?",
                 (now, active["id"]))
    token = sessions.insert_refresh_token(conn, user["id"], session_id, active["token"], now)
    user["last_sign_in_at"] = now
    users.save(conn, user, now)
    return sessions.token_response(conn, user, {"id": session_id, "aal": "aal2", "amr": amr},
                                   token, now, TOTP_METHOD)


# --- unenrol ---------------------------------------------------------------------------------


@bp.delete("/<factor_id>")
@bp.delete("/<factor_id>/")
def unenroll(factor_id: str) -> Response:
    """UnenrollFactor: a verified factor needs an aal2 session; sessions raised with it drop."""
    claims, user = signed_in()
    factor = load_factor(user, factor_id)
    session = session_of(claims)
    if session is None:
        raise ApiError(500, "unexpected_failure",
                       "A valid session and factor are required to unenroll a factor")
    if factor["status"] == VERIFIED and session["aal"] != "aal2":
        raise ApiError(422, "insufficient_aal", "AAL2 required to unenroll verified factor")
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        remove(conn, factor)
        audit.record(conn, user, FACTOR_UNENROLLED, now,
                     {"factor_id": factor["id"], "factor_status": factor["status"],
                      "session_id": session["id"]}, audit.client_ip())
    return json_response({"id": factor["id"]})


# --- admin -----------------------------------------------------------------------------------


@admin_bp.before_request
def require_admin_credentials() -> None:
    """The admin API's own check (requireAdminCredentials)."""
    require_admin()


@admin_bp.get("")
@admin_bp.get("/")
def admin_list(user_id: str) -> Response:
    """adminUserGetFactors: every factor of the user, verified or not (never the secret)."""
    user = find_user(user_id)
    return json_response(list_factors(user["id"]))


def admin_factor(user_id: str, factor_id: str) -> tuple[dict[str, Any], sqlite3.Row]:
    """loadUser, then loadFactor."""
    user = find_user(user_id)
    return user, load_factor(user, factor_id)


@admin_bp.delete("/<factor_id>")
@admin_bp.delete("/<factor_id>/")
def admin_delete(user_id: str, factor_id: str) -> Response:
    """adminUserDeleteFactor: the deleted factor; sessions raised with it drop to aal1."""
    user, factor = admin_factor(user_id, factor_id)
    return json_response(delete_factor(user["id"], factor["id"]) or users.factor_json(factor))


@admin_bp.put("/<factor_id>")
@admin_bp.put("/<factor_id>/")
def admin_update(user_id: str, factor_id: str) -> Response:
    """adminUserUpdateFactor: a new friendly name (a phone only matters for phone factors)."""
    user, factor = admin_factor(user_id, factor_id)
    body = read_json({"friendly_name": str, "phone": str})
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        if body.get("friendly_name"):
            conn.execute("UPDATE mfa_factors SET friendly_name = ?, updated_at = ? WHERE id = ?",
                         (body["friendly_name"], now, factor["id"]))
        audit.record(conn, g.emulator_admin, FACTOR_UPDATED, now,
                     {"factor_id": factor["id"], "factor_type": factor["factor_type"],
                      "user_id": user["id"]})
        updated = owned(conn, user["id"], factor["id"])
    return json_response(users.factor_json(updated))
