"""Passkeys (internal/api/passkey_*.go): registration, discoverable sign-in, list, rename,
remove, the admin calls and every refusal, over HTTP with a software authenticator.

The server must have passkeys on with the relying party in support.py (README.md):
GOTRUE_PASSKEY_ENABLED=true, GOTRUE_WEBAUTHN_RP_ID=localhost,
GOTRUE_WEBAUTHN_RP_ORIGINS=http://localhost:3000, GOTRUE_WEBAUTHN_RP_DISPLAY_NAME=Conformance,
and the default GOTRUE_PASSKEY_MAX_PASSKEYS_PER_USER (10) and GOTRUE_RATE_LIMIT_PASSKEY (30).
"""

import base64
import uuid

import httpx
import pyotp
import pytest

from tests.conformance.support import (
    PASSKEY_ORIGIN,
    PASSKEY_RP_ID,
    PASSKEY_RP_NAME,
    assert_error,
    jwt_parts,
    rate_limit_key,
)
from tests.webauthn_authenticator import Authenticator

FAILED = "webauthn_verification_failed"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(PASSKEY_ORIGIN)


@pytest.fixture
def account(stand_in) -> dict:
    """A fresh GitHub stand-in account."""
    return stand_in.create_account()


@pytest.fixture
def person(sign_in, account) -> dict:
    """A new person signed in with GitHub: the session JSON."""
    return sign_in(account)


def auth(session: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def registration_options(http: httpx.Client, session: dict) -> dict:
    resp = http.post("/passkeys/registration/options", headers=auth(session))
    assert resp.status_code == 200, resp.text
    return resp.json()


def register_verify(http, session, challenge_id, credential) -> httpx.Response:
    return http.post("/passkeys/registration/verify", headers=auth(session),
                     json={"challenge_id": challenge_id, "credential": credential})


def register(http, session, authenticator, **create) -> dict:
    found = registration_options(http, session)
    resp = register_verify(http, session, found["challenge_id"],
                           authenticator.create(found["options"], **create))
    assert resp.status_code == 200, resp.text
    return resp.json()


def sign_in_options(http) -> dict:
    resp = http.post("/passkeys/authentication/options")
    assert resp.status_code == 200, resp.text
    return resp.json()


def sign_in_verify(http, challenge_id, credential) -> httpx.Response:
    return http.post("/passkeys/authentication/verify",
                     json={"challenge_id": challenge_id, "credential": credential})


def passkey_sign_in(http, authenticator, **get) -> httpx.Response:
    found = sign_in_options(http)
    return sign_in_verify(http, found["challenge_id"], authenticator.get(found["options"], **get))


@pytest.fixture
def registered(http, person, authenticator):
    """The person with one passkey: (session, passkey)."""
    return person, register(http, person, authenticator)


# --- settings and options --------------------------------------------------------------------


def test_settings_say_passkeys_are_on(http):
    assert http.get("/settings").json()["passkeys_enabled"] is True


def test_passkey_routes_are_404_passkey_disabled_when_off(passkeys_off_target):
    with httpx.Client(base_url=passkeys_off_target.auth_url, timeout=10,
                      headers={"apikey": passkeys_off_target.anon_key,
                               "X-Supabase-Api-Version": "2024-01-01"}) as http:
        assert http.get("/settings").json()["passkeys_enabled"] is False
        for path in ("/passkeys/authentication/options", "/passkeys/registration/options"):
            assert_error(http.post(path), 404, "passkey_disabled", "Passkeys are disabled")


def test_registration_options(http, person):
    body = registration_options(http, person)
    assert list(body) == ["challenge_id", "options", "expires_at"]
    assert uuid.UUID(body["challenge_id"])
    options = body["options"]
    assert options["rp"] == {"name": PASSKEY_RP_NAME, "id": PASSKEY_RP_ID}
    assert options["user"]["id"] == b64url(person["user"]["id"].encode())
    assert options["user"]["name"] == person["user"]["email"]
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["authenticatorSelection"] == {"residentKey": "required",
                                                 "userVerification": "preferred"}
    assert options["attestation"] == "none"
    assert "excludeCredentials" not in options


def test_registration_needs_a_signed_in_person(http):
    assert_error(http.post("/passkeys/registration/options"), 401, "no_authorization")


def test_sign_in_options_are_discoverable(http):
    body = sign_in_options(http)
    assert list(body) == ["challenge_id", "options", "expires_at"]
    assert body["options"]["rpId"] == PASSKEY_RP_ID
    assert body["options"]["userVerification"] == "preferred"
    assert "allowCredentials" not in body["options"]


# --- registration ----------------------------------------------------------------------------


def test_register_list_and_exclude(http, registered, authenticator):
    session, passkey = registered
    assert list(passkey) == ["id", "friendly_name", "created_at"]
    assert passkey["friendly_name"] == "Passkey"  # the all-zero AAGUID is nobody's
    listed = http.get("/passkeys", headers=auth(session)).json()
    assert listed == [passkey]
    options = registration_options(http, session)["options"]
    credential = next(iter(authenticator.credentials.values()))
    assert options["excludeCredentials"] == [{"type": "public-key", "id": credential.id}]


def test_friendly_name_from_a_known_aaguid(http, person):
    google = uuid.UUID("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4").bytes
    passkey = register(http, person, Authenticator(PASSKEY_ORIGIN, aaguid=google))
    assert passkey["friendly_name"] == "Google Password Manager"


REGISTRATION_REFUSALS = {
    "wrong origin": {"origin": "http://evil.example"},
    "wrong RP ID": {"rp_id": "example.com"},
    "wrong challenge": {"challenge": b64url(b"x" * 32)},
    "no user presence": {"user_present": False},
}


@pytest.mark.parametrize("create", REGISTRATION_REFUSALS.values(), ids=REGISTRATION_REFUSALS)
def test_registration_refusals(http, person, authenticator, create):
    found = registration_options(http, person)
    credential = authenticator.create(found["options"], **create)
    assert_error(register_verify(http, person, found["challenge_id"], credential), 400, FAILED,
                 "Credential verification failed")
    assert_error(register_verify(http, person, found["challenge_id"], credential), 400,
                 "webauthn_challenge_not_found", "Challenge not found or already used")


def register_again(http, session, authenticator) -> httpx.Response:
    """Register the authenticator's credential a second time (ignoring the exclusion list)."""
    found = registration_options(http, session)
    reused = next(iter(authenticator.credentials.values()))
    return register_verify(http, session, found["challenge_id"],
                           authenticator.create(found["options"], reuse=reused))


def test_the_same_credential_twice_is_refused(http, registered, authenticator):
    session, passkey = registered
    assert register_again(http, session, authenticator).status_code >= 400
    assert http.get("/passkeys", headers=auth(session)).json() == [passkey]


@pytest.mark.emulator_only(reason="the real server answers 500 \"Database error creating "
                                  "passkey\": its unique-violation check misses the driver's "
                                  "error, so the 422 it means to send never comes")
def test_the_same_credential_twice_is_422_webauthn_credential_exists(http, registered,
                                                                     authenticator):
    session, _passkey = registered
    assert_error(register_again(http, session, authenticator), 422,
                 "webauthn_credential_exists", "This credential is already registered")


def test_ten_passkeys_at_most(http, person):
    for _ in range(10):
        register(http, person, Authenticator(PASSKEY_ORIGIN))
    assert_error(http.post("/passkeys/registration/options", headers=auth(person)), 422,
                 "too_many_passkeys", "Maximum number of passkeys reached")


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"credential": {}}, "validation_failed", "challenge_id is required"),
    ({"challenge_id": str(uuid.uuid4())}, "validation_failed", "credential is required"),
    ({"challenge_id": "nope", "credential": {}}, "validation_failed",
     "challenge_id must be a valid UUID"),
    ({"challenge_id": str(uuid.uuid4()), "credential": {}}, "webauthn_challenge_not_found",
     "Challenge not found or already used"),
])
def test_verify_body_checks(http, person, body, code, message):
    assert_error(http.post("/passkeys/registration/verify", headers=auth(person), json=body),
                 400, code, message)
    assert_error(http.post("/passkeys/authentication/verify", json=body), 400, code, message)


@pytest.mark.parametrize("credential", ["x", {}, {"id": "AA", "rawId": "AA", "type": "public-key",
                                                  "response": {"clientDataJSON": "e30"}}])
def test_a_malformed_credential_is_refused(http, person, credential):
    found = registration_options(http, person)
    assert_error(register_verify(http, person, found["challenge_id"], credential), 400, FAILED,
                 "Invalid credential response")


def test_a_registration_challenge_expires(http, person, authenticator, clock):
    found = registration_options(http, person)
    clock.advance(301)
    resp = register_verify(http, person, found["challenge_id"],
                           authenticator.create(found["options"]))
    assert_error(resp, 400, "webauthn_challenge_expired", "Challenge has expired")


# --- sign-in ---------------------------------------------------------------------------------


def test_a_passkey_signs_in(http, registered, authenticator):
    session, passkey = registered
    resp = passkey_sign_in(http, authenticator)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"access_token", "token_type", "expires_in", "expires_at", "refresh_token",
            "user"} <= set(body)
    _header, claims = jwt_parts(body["access_token"])
    assert claims["sub"] == session["user"]["id"]
    assert claims["aal"] == "aal1"
    assert [entry["method"] for entry in claims["amr"]] == ["passkey"]
    user = http.get("/user", headers=auth(body))
    assert user.json()["id"] == session["user"]["id"]
    listed = http.get("/passkeys", headers=auth(body)).json()
    assert listed[0]["id"] == passkey["id"] and "last_used_at" in listed[0]


def test_user_verification_is_only_preferred(http, registered, authenticator):
    assert passkey_sign_in(http, authenticator, user_verified=False).status_code == 200


def someone_elses_handle(http, sign_in) -> bytes:
    return sign_in()["user"]["id"].encode()


SIGN_IN_REFUSALS = {
    "wrong origin": lambda a, http, sign_in: {"origin": "http://evil.example"},
    "wrong RP ID": lambda a, http, sign_in: {"rp_id": "example.com"},
    "wrong challenge": lambda a, http, sign_in: {"challenge": b64url(b"y" * 32)},
    "no user presence": lambda a, http, sign_in: {"user_present": False},
    "bad signature": lambda a, http, sign_in: {"bad_signature": True},
    "backup eligibility changed": lambda a, http, sign_in: {"backup_eligible": True},
    "unknown credential": lambda a, http, sign_in: {"credential_id": a.make_credential(
        PASSKEY_RP_ID, next(iter(a.credentials.values())).user_handle).credential_id},
    "someone else's user handle": lambda a, http, sign_in: {
        "user_handle": someone_elses_handle(http, sign_in)},
    "unknown user handle": lambda a, http, sign_in: {"user_handle": str(uuid.uuid4()).encode()},
}


@pytest.mark.parametrize("refusal", SIGN_IN_REFUSALS.values(), ids=SIGN_IN_REFUSALS)
def test_sign_in_refusals(http, registered, authenticator, sign_in, refusal):
    found = sign_in_options(http)
    assertion = authenticator.get(found["options"], **refusal(authenticator, http, sign_in))
    assert_error(sign_in_verify(http, found["challenge_id"], assertion), 400, FAILED,
                 "Credential verification failed")
    assert_error(sign_in_verify(http, found["challenge_id"], assertion), 400,
                 "webauthn_challenge_not_found")


@pytest.mark.emulator_only(reason="the real server (go-webauthn) accepts a sign count that "
                                  "does not grow, flagging a possible clone; the emulator "
                                  "refuses it")
def test_a_sign_count_that_does_not_grow_is_refused(http, registered, authenticator):
    assert passkey_sign_in(http, authenticator).status_code == 200
    assert_error(passkey_sign_in(http, authenticator, sign_count=1), 400, FAILED)


def test_a_removed_passkey_is_refused(http, registered, authenticator):
    session, passkey = registered
    assert http.delete(f"/passkeys/{passkey['id']}", headers=auth(session)).status_code == 204
    assert_error(passkey_sign_in(http, authenticator), 400, FAILED)


def test_a_sign_in_challenge_is_used_once(http, registered, authenticator):
    found = sign_in_options(http)
    assertion = authenticator.get(found["options"])
    assert sign_in_verify(http, found["challenge_id"], assertion).status_code == 200
    assert_error(sign_in_verify(http, found["challenge_id"], assertion), 400,
                 "webauthn_challenge_not_found")


def test_a_registration_challenge_cannot_sign_in(http, registered, authenticator):
    session, _passkey = registered
    registration = registration_options(http, session)
    found = sign_in_options(http)
    assert_error(sign_in_verify(http, registration["challenge_id"],
                                authenticator.get(found["options"])), 400,
                 "webauthn_challenge_not_found")


def test_a_sign_in_challenge_expires(http, registered, authenticator, clock):
    found = sign_in_options(http)
    clock.advance(301)
    assert_error(sign_in_verify(http, found["challenge_id"], authenticator.get(found["options"])),
                 400, "webauthn_challenge_expired", "Challenge has expired")


def test_a_banned_person_is_refused_after_the_assertion(http, admin, registered, authenticator):
    session, _passkey = registered
    resp = admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "1h"})
    assert resp.status_code == 200, resp.text
    assert_error(passkey_sign_in(http, authenticator), 403, "user_banned", "User is banned")


def test_sign_in_options_are_rate_limited(http):
    key = rate_limit_key()
    for _ in range(30):
        assert http.post("/passkeys/authentication/options", headers=key).status_code == 200
    assert_error(http.post("/passkeys/authentication/options", headers=key), 429,
                 "over_request_rate_limit", "Request rate limit reached")
    assert http.post("/passkeys/authentication/options",
                     headers=rate_limit_key()).status_code == 200


# --- with MFA: passkeys are managed from an aal2 session -------------------------------------


def raise_to_aal2(http, session) -> dict:
    """Enrol and verify TOTP: the aal2 session JSON."""
    enrolled = http.post("/factors", headers=auth(session), json={"factor_type": "totp"}).json()
    found = http.post(f"/factors/{enrolled['id']}/challenge", headers=auth(session)).json()
    code = pyotp.TOTP(enrolled["totp"]["secret"]).now()
    resp = http.post(f"/factors/{enrolled['id']}/verify", headers=auth(session),
                     json={"challenge_id": found["id"], "code": code})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_with_mfa_an_aal1_session_cannot_add_passkeys(http, person, account, sign_in):
    aal2 = raise_to_aal2(http, person)
    assert registration_options(http, aal2)["challenge_id"]
    aal1 = sign_in(account)  # the same person, GitHub only
    assert_error(http.post("/passkeys/registration/options", headers=auth(aal1)), 403,
                 "insufficient_aal",
                 "AAL2 session is required to manage passkeys when MFA is enabled")


def test_a_passkey_sign_in_is_aal1_even_with_mfa(http, person, authenticator):
    register(http, raise_to_aal2(http, person), authenticator)
    resp = passkey_sign_in(http, authenticator)
    assert resp.status_code == 200, resp.text
    _header, claims = jwt_parts(resp.json()["access_token"])
    assert claims["aal"] == "aal1"
    assert [entry["method"] for entry in claims["amr"]] == ["passkey"]


# --- rename, remove, admin -------------------------------------------------------------------


def test_rename(http, registered):
    session, passkey = registered
    resp = http.patch(f"/passkeys/{passkey['id']}", headers=auth(session),
                      json={"friendly_name": "Work laptop"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**passkey, "friendly_name": "Work laptop"}


@pytest.mark.parametrize(("name", "message"), [
    ("", "friendly_name is required"), ("n" * 121, "friendly_name must be 120 characters or less")])
def test_rename_refusals(http, registered, name, message):
    session, passkey = registered
    assert_error(http.patch(f"/passkeys/{passkey['id']}", headers=auth(session),
                            json={"friendly_name": name}), 400, "validation_failed", message)


@pytest.mark.parametrize("passkey_id", [str(uuid.uuid4()), "not-a-uuid"])
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_unknown_passkeys_are_404(http, person, method, passkey_id):
    resp = http.request(method, f"/passkeys/{passkey_id}", headers=auth(person),
                        json={"friendly_name": "x"})
    assert_error(resp, 404, "validation_failed", "Passkey not found")


def test_someone_elses_passkey_is_404(http, registered, sign_in):
    _session, passkey = registered
    other = sign_in()
    assert_error(http.delete(f"/passkeys/{passkey['id']}", headers=auth(other)), 404,
                 "validation_failed", "Passkey not found")


def test_remove(http, registered):
    session, passkey = registered
    resp = http.delete(f"/passkeys/{passkey['id']}", headers=auth(session))
    assert (resp.status_code, resp.content) == (204, b"")
    assert http.get("/passkeys", headers=auth(session)).json() == []


def test_admin_list_and_remove(admin, registered):
    session, passkey = registered
    user_id = session["user"]["id"]
    assert admin.get(f"/admin/users/{user_id}/passkeys").json() == [passkey]
    assert admin.delete(f"/admin/users/{user_id}/passkeys/{passkey['id']}").status_code == 204
    assert admin.get(f"/admin/users/{user_id}/passkeys").json() == []
    assert_error(admin.delete(f"/admin/users/{user_id}/passkeys/{passkey['id']}"), 404,
                 "validation_failed", "Passkey not found")


def test_admin_passkeys_of_an_unknown_user(admin):
    assert_error(admin.get(f"/admin/users/{uuid.uuid4()}/passkeys"), 404, "user_not_found")


def test_audit_entries(admin, http, registered):
    session, passkey = registered
    http.patch(f"/passkeys/{passkey['id']}", headers=auth(session), json={"friendly_name": "A"})
    http.delete(f"/passkeys/{passkey['id']}", headers=auth(session))
    entries = [entry["payload"] for entry in admin.get("/admin/audit",
                                                       params={"per_page": 100}).json()
               if (entry["payload"].get("traits") or {}).get("passkey_id") == passkey["id"]]
    assert [(e["action"], e["log_type"], e["actor_id"]) for e in reversed(entries)] == [
        ("passkey_created", "user", session["user"]["id"]),
        ("passkey_updated", "user", session["user"]["id"]),
        ("passkey_deleted", "user", session["user"]["id"])]
