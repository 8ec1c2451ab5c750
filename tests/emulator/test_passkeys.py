"""Passkeys: settings, registration, discoverable sign-in, every refusal, list, rename, remove,
the admin calls, audit entries, the dashboard's passkey section and the data file."""

import json
import re
import uuid

import jwt
import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import config as emulator_config
from emulator import datafile, keys, passkeys
from tests.emulator.emulator_helpers import bearer, new_session
from tests.webauthn_authenticator import Authenticator, from_b64url

ORIGIN = "http://localhost:5000"
PASSKEY_CONFIG = {"PASSKEY_ENABLED": True, "WEBAUTHN_RP_ID": "localhost",
                  "WEBAUTHN_RP_DISPLAY_NAME": "Emulator tests", "WEBAUTHN_RP_ORIGINS": ORIGIN}
ANON = {"apikey": keys.ANON_KEY}
GOOGLE_PASSWORD_MANAGER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"
BASE = "/auth/v1/passkeys"


@pytest.fixture
def app(make_app):
    return make_app(**PASSKEY_CONFIG)


@pytest.fixture
def session(client):
    return new_session(client)


@pytest.fixture
def authenticator():
    return Authenticator(ORIGIN)


def registration_options(client, session):
    response = client.post(f"{BASE}/registration/options", headers=bearer(session))
    assert response.status_code == 200, response.json
    return response.json


def register_verify(client, session, challenge_id, credential):
    return client.post(f"{BASE}/registration/verify", headers=bearer(session),
                       json={"challenge_id": challenge_id, "credential": credential})


def register(client, session, authenticator, **create):
    """Add a passkey for the session's person; its PasskeyMetadataResponse."""
    found = registration_options(client, session)
    response = register_verify(client, session, found["challenge_id"],
                               authenticator.create(found["options"], **create))
    assert response.status_code == 200, response.json
    return response.json


def sign_in_options(client, headers=None):
    response = client.post(f"{BASE}/authentication/options", headers={**ANON, **(headers or {})})
    assert response.status_code == 200, response.json
    return response.json


def sign_in_verify(client, challenge_id, credential):
    return client.post(f"{BASE}/authentication/verify", headers=ANON,
                       json={"challenge_id": challenge_id, "credential": credential})


def passkey_sign_in(client, authenticator, **get):
    found = sign_in_options(client)
    return sign_in_verify(client, found["challenge_id"], authenticator.get(found["options"], **get))


def claims_of(body: dict) -> dict:
    return jwt.decode(body["access_token"], options={"verify_signature": False})


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json["error_code"]


def db(client):
    return client.application.extensions["emulator.db"]


def audit_actions(client) -> list[dict]:
    return [json.loads(row["payload"]) for row in
            db(client).all("SELECT payload FROM audit_log_entries ORDER BY created_at, rowid")]


@pytest.fixture
def registered(client, session, authenticator):
    """A person with one passkey: (session, passkey metadata)."""
    return session, register(client, session, authenticator)


# --- settings --------------------------------------------------------------------------------


def test_passkeys_are_off_by_default_and_settings_say_so(make_app):
    client = make_app().test_client()
    assert client.get("/auth/v1/settings", headers=ANON).json["passkeys_enabled"] is False


def test_settings_report_passkeys_when_on(client):
    assert client.get("/auth/v1/settings", headers=ANON).json["passkeys_enabled"] is True


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/registration/options"), ("post", "/registration/verify"),
    ("post", "/authentication/options"), ("post", "/authentication/verify"), ("get", ""),
    ("patch", f"/{uuid.uuid4()}"), ("delete", f"/{uuid.uuid4()}")])
def test_every_passkey_route_is_404_passkey_disabled_while_off(make_app, method, path):
    client = make_app().test_client()
    response = getattr(client, method)(BASE + path, headers=ANON, json={})
    assert error_of(response) == (404, "passkey_disabled")
    assert response.json["msg"] == "Passkeys are disabled"


def test_the_admin_list_works_with_passkeys_off(make_app, admin):
    client = make_app().test_client()
    user_id = new_session(client)["user"]["id"]
    response = client.get(f"/auth/v1/admin/users/{user_id}/passkeys", headers=admin)
    assert (response.status_code, response.json) == (200, [])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"WEBAUTHN_RP_ID": ""}, "WEBAUTHN_RP_ID is required"),
    ({"WEBAUTHN_RP_DISPLAY_NAME": " "}, "WEBAUTHN_RP_DISPLAY_NAME is required"),
    ({"WEBAUTHN_RP_ORIGINS": ""}, "WEBAUTHN_RP_ORIGINS is required"),
    ({"WEBAUTHN_RP_ID": "127.0.0.1"}, "WebAuthn refuses IP addresses"),
    ({"WEBAUTHN_RP_ID": "localhost:5000"}, "must be a host name"),
    ({"WEBAUTHN_RP_ORIGINS": "localhost:5000"}, "is not an origin"),
    ({"WEBAUTHN_RP_ORIGINS": "http://localhost:5000/app"}, "is not an origin"),
    ({"WEBAUTHN_CHALLENGE_EXPIRY_DURATION": "soon"}, "a duration like 5m"),
    ({"RATE_LIMIT_PASSKEY": 0}, "RATE_LIMIT_PASSKEY must be a positive"),
])
def test_a_relying_party_webauthn_would_refuse_fails_fast(overrides, message):
    with pytest.raises(ValueError, match=message):
        emulator_config.load({**PASSKEY_CONFIG, **overrides})


def test_settings_read_like_the_real_servers():
    environ = {"EMULATOR_PASSKEY_ENABLED": "true", "EMULATOR_WEBAUTHN_RP_ID": "LocalHost",
               "EMULATOR_WEBAUTHN_RP_DISPLAY_NAME": "App",
               "EMULATOR_WEBAUTHN_RP_ORIGINS": "http://localhost:5000/, https://app.example.com",
               "EMULATOR_WEBAUTHN_CHALLENGE_EXPIRY_DURATION": "90s",
               "EMULATOR_PASSKEY_MAX_PASSKEYS_PER_USER": "3", "EMULATOR_RATE_LIMIT_PASSKEY": "60"}
    config = emulator_config.load(emulator_config.from_environ(environ))
    assert config["PASSKEY_ENABLED"] is True
    assert config["WEBAUTHN_RP_ID"] == "localhost"
    assert config["WEBAUTHN_RP_ORIGINS"] == ("http://localhost:5000", "https://app.example.com")
    assert config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"] == 90
    assert (config["PASSKEY_MAX_PASSKEYS_PER_USER"], config["RATE_LIMIT_PASSKEY"]) == (3, 60)


def test_defaults_leave_passkeys_off_without_a_relying_party():
    config = emulator_config.load()
    assert config["PASSKEY_ENABLED"] is False
    assert config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"] == 300
    assert (config["PASSKEY_MAX_PASSKEYS_PER_USER"], config["RATE_LIMIT_PASSKEY"]) == (10, 30)


# --- registration ----------------------------------------------------------------------------


def test_registration_options_are_go_webauthns_creation_options(client, session, clock):
    body = registration_options(client, session)
    assert list(body) == ["challenge_id", "options", "expires_at"]
    assert uuid.UUID(body["challenge_id"])
    assert body["expires_at"] == int(clock.now + 300)
    options = body["options"]
    assert list(options) == ["rp", "user", "challenge", "pubKeyCredParams", "timeout",
                             "authenticatorSelection", "attestation"]
    assert options["rp"] == {"name": "Emulator tests", "id": "localhost"}
    user = session["user"]
    assert options["user"] == {"name": user["email"], "displayName": "The Octocat",
                               "id": passkeys.b64url(user["id"].encode())}
    assert len(from_b64url(options["challenge"])) == 32
    assert [p["alg"] for p in options["pubKeyCredParams"]][:2] == [-7, -35]
    assert options["authenticatorSelection"] == {"residentKey": "required",
                                                 "userVerification": "preferred"}
    assert (options["timeout"], options["attestation"]) == (300000, "none")


def test_registration_needs_a_signed_in_person(client):
    response = client.post(f"{BASE}/registration/options", headers=ANON)
    assert error_of(response) == (401, "no_authorization")


def test_a_registered_passkey_is_named_listed_and_audited(client, registered):
    session, passkey = registered
    assert list(passkey) == ["id", "friendly_name", "created_at"]
    assert passkey["friendly_name"] == "Passkey"
    listed = client.get(BASE, headers=bearer(session)).json
    assert listed == [{"id": passkey["id"], "friendly_name": "Passkey",
                       "created_at": passkey["created_at"]}]
    entry = audit_actions(client)[-1]
    assert (entry["action"], entry["log_type"], entry["actor_id"]) == \
        ("passkey_created", "user", session["user"]["id"])
    assert entry["traits"] == {"passkey_id": passkey["id"]}


def test_known_authenticators_are_named_after_their_aaguid(client, session):
    authenticator = Authenticator(ORIGIN, aaguid=uuid.UUID(GOOGLE_PASSWORD_MANAGER).bytes)
    assert register(client, session, authenticator)["friendly_name"] == \
        "Google Password Manager"


@pytest.mark.parametrize(("aaguid", "name"), [
    (GOOGLE_PASSWORD_MANAGER, "Google Password Manager"), ("", "Passkey"), (None, "Passkey"),
    ("00000000-0000-0000-0000-000000000000", "Passkey"),
    ("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "Passkey")])
def test_friendly_name(aaguid, name):
    assert passkeys.friendly_name(aaguid) == name


def test_the_next_options_exclude_registered_credentials(client, registered, authenticator):
    session, _passkey = registered
    options = registration_options(client, session)["options"]
    credential = next(iter(authenticator.credentials.values()))
    assert options["excludeCredentials"] == [{"type": "public-key", "id": credential.id}]


def test_the_stored_record_keeps_the_public_key_sign_count_and_flags(client, session):
    authenticator = Authenticator(ORIGIN, backup_eligible=True, backed_up=True,
                                  transports=("internal", "hybrid"))
    passkey = register(client, session, authenticator)
    row = db(client).one("SELECT * FROM webauthn_credentials WHERE id = ?", (passkey["id"],))
    credential = next(iter(authenticator.credentials.values()))
    assert row["credential_id"] == credential.credential_id
    assert (row["sign_count"], row["attestation_type"], row["aaguid"]) == \
        (0, "none", "00000000-0000-0000-0000-000000000000")
    assert json.loads(row["transports"]) == ["internal", "hybrid"]
    assert (row["backup_eligible"], row["backed_up"]) == (1, 1)


REGISTRATION_REFUSALS = {
    "wrong origin": {"origin": "http://evil.example"},
    "wrong RP ID": {"rp_id": "example.com"},
    "wrong challenge": {"challenge": passkeys.b64url(b"x" * 32)},
    "no user presence": {"user_present": False},
    "an assertion's client data": {"client_type": "webauthn.get"},
    "packed attestation without a statement": {"attestation_format": "packed"},
}


@pytest.mark.parametrize("create", REGISTRATION_REFUSALS.values(), ids=REGISTRATION_REFUSALS)
def test_registration_refusals_use_up_the_challenge(client, session, authenticator, create):
    found = registration_options(client, session)
    credential = authenticator.create(found["options"], **create)
    response = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_verification_failed")
    assert response.json["msg"] == "Credential verification failed"
    again = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(again) == (400, "webauthn_challenge_not_found")
    assert client.get(BASE, headers=bearer(session)).json == []


def test_user_verification_is_preferred_not_required(client, session, authenticator):
    assert register(client, session, authenticator, user_verified=False)["id"]


def test_a_registration_challenge_is_used_once(client, session, authenticator):
    found = registration_options(client, session)
    credential = authenticator.create(found["options"])
    assert register_verify(client, session, found["challenge_id"], credential).status_code == 200
    again = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(again) == (400, "webauthn_challenge_not_found")
    assert again.json["msg"] == "Challenge not found or already used"


def test_an_expired_registration_challenge_is_refused_and_gone(client, session, authenticator,
                                                               clock):
    found = registration_options(client, session)
    credential = authenticator.create(found["options"])
    clock.now += 301
    response = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_challenge_expired")
    assert response.json["msg"] == "Challenge has expired"
    again = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(again) == (400, "webauthn_challenge_not_found")


def test_another_persons_challenge_is_not_found(client, session, authenticator):
    found = registration_options(client, session)
    client.application.config["GITHUB_AUTO_LOGIN"] = "hubot"
    other = new_session(client)
    response = register_verify(client, other, found["challenge_id"],
                               authenticator.create(found["options"]))
    assert error_of(response) == (400, "webauthn_challenge_not_found")


def test_a_sign_in_challenge_cannot_register(client, session, authenticator):
    registration = registration_options(client, session)
    sign_in = sign_in_options(client)
    response = register_verify(client, session, sign_in["challenge_id"],
                               authenticator.create(registration["options"]))
    assert error_of(response) == (400, "webauthn_challenge_not_found")


def test_the_same_credential_cannot_be_registered_twice(client, registered, authenticator):
    session, _passkey = registered
    found = registration_options(client, session)
    reused = next(iter(authenticator.credentials.values()))
    response = register_verify(client, session, found["challenge_id"],
                               authenticator.create(found["options"], reuse=reused))
    assert error_of(response) == (422, "webauthn_credential_exists")


def test_at_most_max_passkeys_per_user(make_app, authenticator):
    client = make_app(**PASSKEY_CONFIG, PASSKEY_MAX_PASSKEYS_PER_USER=1).test_client()
    session = new_session(client)
    first, second = registration_options(client, session), registration_options(client, session)
    assert register_verify(client, session, first["challenge_id"],
                           authenticator.create(first["options"])).status_code == 200
    late = register_verify(client, session, second["challenge_id"],
                           Authenticator(ORIGIN).create(second["options"]))
    assert error_of(late) == (422, "too_many_passkeys")
    response = client.post(f"{BASE}/registration/options", headers=bearer(session))
    assert error_of(response) == (422, "too_many_passkeys")
    assert response.json["msg"] == "Maximum number of passkeys reached"


@pytest.mark.parametrize(("body", "status", "code"), [
    (None, 400, "bad_json"),
    ("[]", 400, "bad_json"),
    ({"credential": {}}, 400, "validation_failed"),
    ({"challenge_id": str(uuid.uuid4())}, 400, "validation_failed"),
    ({"challenge_id": "not-a-uuid", "credential": {}}, 400, "validation_failed"),
    ({"challenge_id": 5, "credential": {}}, 400, "bad_json"),
    ({"challenge_id": str(uuid.uuid4()), "credential": {}}, 400, "webauthn_challenge_not_found"),
])
def test_verify_bodies_are_checked_in_the_real_order(client, session, body, status, code):
    for path, headers in (("/registration/verify", bearer(session)),
                          ("/authentication/verify", ANON)):
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        if body is None:
            kwargs = {}
        response = client.post(BASE + path, headers=headers, **kwargs)
        assert error_of(response) == (status, code), path


@pytest.mark.parametrize(("body", "message"), [
    ({"challenge_id": 5}, "json: cannot unmarshal number into Go struct field "
                          "PasskeyRegistrationVerifyParams.challenge_id of type string"),
    ([], "json: cannot unmarshal array into Go value of type "
         "api.PasskeyRegistrationVerifyParams"),
])
def test_bad_json_names_the_go_struct(client, session, body, message):
    response = client.post(f"{BASE}/registration/verify", headers=bearer(session), json=body)
    assert error_of(response) == (400, "bad_json")
    assert response.json["msg"] == f"Could not parse request body as JSON: {message}"


@pytest.mark.parametrize(("credential", "message"), [
    ({"id": "AA", "rawId": "AA", "type": "public-key",
      "response": {"clientDataJSON": "e30", "attestationObject": "oA"}},
     "Invalid credential response"),
    ({"id": "AA", "rawId": "AA", "type": "public-key",
      "response": {"clientDataJSON": passkeys.b64url(b"not json"), "attestationObject": "oA"}},
     "Invalid credential response"),
])
def test_a_credential_that_does_not_decode_is_an_invalid_response(client, session, credential,
                                                                  message):
    found = registration_options(client, session)
    response = register_verify(client, session, found["challenge_id"], credential)
    assert (error_of(response), response.json["msg"]) == \
        ((400, "webauthn_verification_failed"), message)


GARBAGE = ["", "x", 5, [], {}, {"id": "!!", "rawId": "!!", "type": "public-key"},
           {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}},
           {"id": "AA", "rawId": "AA", "type": "public-key",
            "response": {"clientDataJSON": "e30", "attestationObject": "oA"}},
           {"id": "AA", "rawId": "AA", "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA",
                         "userHandle": "AA"}}]


@pytest.mark.parametrize("credential", GARBAGE)
def test_a_malformed_credential_is_a_400_never_a_500(client, session, credential):
    found = registration_options(client, session)
    response = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_verification_failed")
    options = sign_in_options(client)
    response = sign_in_verify(client, options["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_verification_failed")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
B64 = st.binary(max_size=80).map(passkeys.b64url) | st.text(max_size=30)
SHAPED = st.fixed_dictionaries({
    "id": B64, "rawId": B64, "type": st.sampled_from(["public-key", "x"]),
    "response": st.fixed_dictionaries({}, optional={
        "clientDataJSON": B64, "attestationObject": B64, "authenticatorData": B64,
        "signature": B64, "userHandle": B64 | JSON, "transports": JSON})})
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(credential=JSON | SHAPED)
def test_hostile_credentials_are_refused_with_a_400(client, session, credential):
    found = registration_options(client, session)
    response = register_verify(client, session, found["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_verification_failed")
    client.application.config["RATE_LIMIT_HEADER"] = "X-Client"  # a bucket per example
    options = sign_in_options(client, {"X-Client": str(uuid.uuid4())})
    response = sign_in_verify(client, options["challenge_id"], credential)
    assert error_of(response) == (400, "webauthn_verification_failed")


# --- aal: a person with MFA manages passkeys from an aal2 session ----------------------------


@pytest.fixture
def with_totp(client, session, clock):
    """The person enrols and verifies TOTP: (their old aal1 session, a new aal2 session)."""
    factor = client.post("/auth/v1/factors", headers=bearer(session),
                         json={"factor_type": "totp"}).json
    aal1 = new_session(client)
    found = client.post(f"/auth/v1/factors/{factor['id']}/challenge",
                        headers=bearer(aal1)).json
    code = pyotp.TOTP(factor["totp"]["secret"]).at(clock.now)
    aal2 = client.post(f"/auth/v1/factors/{factor['id']}/verify", headers=bearer(aal1),
                       json={"challenge_id": found["id"], "code": code}).json
    return new_session(client), aal2


def test_with_mfa_an_aal1_session_cannot_add_or_remove_passkeys(client, with_totp,
                                                                authenticator):
    aal1, aal2 = with_totp
    passkey = register(client, aal2, authenticator)
    for method, path in (("post", "/registration/options"), ("post", "/registration/verify"),
                         ("delete", f"/{passkey['id']}")):
        response = getattr(client, method)(BASE + path, headers=bearer(aal1), json={})
        assert error_of(response) == (403, "insufficient_aal"), path
    assert client.get(BASE, headers=bearer(aal1)).status_code == 200
    assert client.delete(f"{BASE}/{passkey['id']}", headers=bearer(aal2)).status_code == 204


def test_a_passkey_session_is_aal1_even_with_mfa(client, with_totp, authenticator):
    _aal1, aal2 = with_totp
    register(client, aal2, authenticator)
    claims = claims_of(passkey_sign_in(client, authenticator).json)
    assert claims["aal"] == "aal1"
    assert [entry["method"] for entry in claims["amr"]] == ["passkey"]


# --- authentication --------------------------------------------------------------------------


def test_sign_in_options_are_discoverable(client, clock):
    body = sign_in_options(client)
    assert list(body) == ["challenge_id", "options", "expires_at"]
    assert body["options"]["rpId"] == "localhost"
    assert list(body["options"]) == ["challenge", "timeout", "rpId", "userVerification"]
    assert "allowCredentials" not in body["options"]
    assert body["expires_at"] == int(clock.now + 300)


def test_a_passkey_signs_in_like_token(client, registered, authenticator, clock):
    session, passkey = registered
    response = passkey_sign_in(client, authenticator)
    assert response.status_code == 200, response.json
    body = response.json
    assert list(body) == ["access_token", "token_type", "expires_in", "expires_at",
                          "refresh_token", "user"]
    claims = claims_of(body)
    assert claims["sub"] == session["user"]["id"]
    assert (claims["aal"], claims["amr"]) == ("aal1", [{"method": "passkey",
                                                       "timestamp": int(clock.now)}])
    assert client.get("/auth/v1/user", headers=bearer(body)).json["id"] == claims["sub"]
    refreshed = client.post("/auth/v1/token?grant_type=refresh_token", headers=ANON,
                            json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
    listed = client.get(BASE, headers=bearer(session)).json
    assert listed[0]["last_used_at"] == body["user"]["last_sign_in_at"]
    logins = [entry for entry in audit_actions(client) if entry["action"] == "login"]
    assert logins[-1]["traits"] == {"passkey_id": passkey["id"]}
    assert logins[-1]["actor_id"] == session["user"]["id"]


def test_each_sign_in_stores_the_new_sign_count(client, registered, authenticator):
    for expected in (1, 2):
        assert passkey_sign_in(client, authenticator).status_code == 200
        count = db(client).one("SELECT sign_count FROM webauthn_credentials")[0]
        assert count == expected


def test_user_verification_is_not_required_to_sign_in(client, registered, authenticator):
    assert passkey_sign_in(client, authenticator, user_verified=False).status_code == 200


def another_persons_handle(client) -> bytes:
    client.application.config["GITHUB_AUTO_LOGIN"] = "hubot"
    return new_session(client)["user"]["id"].encode()


SIGN_IN_REFUSALS = {
    "wrong origin": lambda client, a: {"origin": "http://evil.example"},
    "wrong RP ID": lambda client, a: {"rp_id": "example.com"},
    "wrong challenge": lambda client, a: {"challenge": passkeys.b64url(b"y" * 32)},
    "no user presence": lambda client, a: {"user_present": False},
    "bad signature": lambda client, a: {"bad_signature": True},
    "a creation's client data": lambda client, a: {"client_type": "webauthn.create"},
    "sign count that does not grow": lambda client, a: {"sign_count": 0},
    "backup eligibility changed": lambda client, a: {"backup_eligible": True},
    "no user handle": lambda client, a: {"user_handle": b""},
    "user handle that is no user id": lambda client, a: {"user_handle": b"someone"},
    "unknown user": lambda client, a: {"user_handle": str(uuid.uuid4()).encode()},
    "someone else's user handle": lambda client, a: {
        "user_handle": another_persons_handle(client)},
    "unknown credential": lambda client, a: {"credential_id": a.make_credential(
        "localhost", next(iter(a.credentials.values())).user_handle).credential_id},
}


@pytest.mark.parametrize("refusal", SIGN_IN_REFUSALS.values(), ids=SIGN_IN_REFUSALS)
def test_sign_in_refusals(client, registered, authenticator, refusal):
    # One good sign-in first, so that the stored sign count is above zero.
    assert passkey_sign_in(client, authenticator).status_code == 200
    found = sign_in_options(client)
    assertion = authenticator.get(found["options"], **refusal(client, authenticator))
    response = sign_in_verify(client, found["challenge_id"], assertion)
    assert error_of(response) == (400, "webauthn_verification_failed")
    again = sign_in_verify(client, found["challenge_id"], assertion)
    assert error_of(again) == (400, "webauthn_challenge_not_found")


def test_a_removed_passkey_no_longer_signs_in(client, registered, authenticator):
    session, passkey = registered
    assert client.delete(f"{BASE}/{passkey['id']}", headers=bearer(session)).status_code == 204
    response = passkey_sign_in(client, authenticator)
    assert error_of(response) == (400, "webauthn_verification_failed")


def test_a_sign_in_challenge_is_used_once(client, registered, authenticator):
    found = sign_in_options(client)
    assertion = authenticator.get(found["options"])
    assert sign_in_verify(client, found["challenge_id"], assertion).status_code == 200
    again = sign_in_verify(client, found["challenge_id"], assertion)
    assert error_of(again) == (400, "webauthn_challenge_not_found")


def test_an_expired_sign_in_challenge_is_refused(client, registered, authenticator, clock):
    found = sign_in_options(client)
    assertion = authenticator.get(found["options"])
    clock.now += 301
    response = sign_in_verify(client, found["challenge_id"], assertion)
    assert error_of(response) == (400, "webauthn_challenge_expired")


def test_a_registration_challenge_cannot_sign_in(client, registered, authenticator):
    session, _passkey = registered
    registration = registration_options(client, session)
    found = sign_in_options(client)
    response = sign_in_verify(client, registration["challenge_id"],
                              authenticator.get(found["options"]))
    assert error_of(response) == (400, "webauthn_challenge_not_found")


def test_stale_challenges_are_swept(client, clock):
    sign_in_options(client)
    clock.now += 300 + passkeys.STALE_CHALLENGES + 1
    sign_in_options(client)
    assert db(client).one("SELECT count(*) FROM webauthn_challenges")[0] == 1


@pytest.mark.parametrize(("change", "status", "code"), [
    ("UPDATE users SET banned_until = 9999999999", 403, "user_banned"),
    ("UPDATE users SET email_confirmed_at = NULL", 403, "email_not_confirmed"),
    ("UPDATE users SET phone = '15550001', phone_confirmed_at = NULL", 403,
     "phone_not_confirmed"),
])
def test_people_who_may_not_sign_in_are_refused_after_the_assertion(
        client, registered, authenticator, change, status, code):
    with db(client).transaction() as conn:
        conn.execute(change)
    assert error_of(passkey_sign_in(client, authenticator)) == (status, code)


def test_sign_in_options_are_rate_limited_per_client(make_app):
    client = make_app(**PASSKEY_CONFIG, RATE_LIMIT_HEADER="X-Client").test_client()
    for _ in range(30):
        sign_in_options(client, {"X-Client": "one"})
    response = client.post(f"{BASE}/authentication/options", headers={**ANON, "X-Client": "one"})
    assert error_of(response) == (429, "over_request_rate_limit")
    assert response.json["msg"] == "Request rate limit reached"
    sign_in_options(client, {"X-Client": "two"})


def test_the_sign_in_limit_refills_at_its_rate(make_app, clock):
    client = make_app(**PASSKEY_CONFIG, RATE_LIMIT_PASSKEY=60).test_client()
    for _ in range(30):
        sign_in_options(client)
    assert client.post(f"{BASE}/authentication/options", headers=ANON).status_code == 429
    clock.now += 5  # 60 per five minutes: one every five seconds
    sign_in_options(client)
    assert client.post(f"{BASE}/authentication/options", headers=ANON).status_code == 429


# --- list, rename, remove --------------------------------------------------------------------


def test_the_list_starts_empty_and_needs_a_token(client, session):
    assert client.get(BASE, headers=bearer(session)).json == []
    assert client.get(BASE + "/", headers=bearer(session)).json == []
    assert error_of(client.get(BASE, headers=ANON)) == (401, "no_authorization")


def test_rename(client, registered):
    session, passkey = registered
    response = client.patch(f"{BASE}/{passkey['id']}", headers=bearer(session),
                            json={"friendly_name": "Work laptop"})
    assert response.status_code == 200
    assert response.json == {"id": passkey["id"], "friendly_name": "Work laptop",
                             "created_at": passkey["created_at"]}
    assert client.get(BASE, headers=bearer(session)).json[0]["friendly_name"] == "Work laptop"
    entry = audit_actions(client)[-1]
    assert (entry["action"], entry["traits"]) == ("passkey_updated", {"passkey_id": passkey["id"]})


@pytest.mark.parametrize(("body", "status", "code", "message"), [
    ({"friendly_name": ""}, 400, "validation_failed", "friendly_name is required"),
    ({}, 400, "validation_failed", "friendly_name is required"),
    ({"friendly_name": "é" * 61}, 400, "validation_failed",
     "friendly_name must be 120 characters or less"),
    ({"friendly_name": 7}, 400, "bad_json", None),
    (None, 400, "bad_json", None),
])
def test_rename_refusals(client, registered, body, status, code, message):
    session, passkey = registered
    kwargs = {} if body is None else {"json": body}
    response = client.patch(f"{BASE}/{passkey['id']}", headers=bearer(session), **kwargs)
    assert error_of(response) == (status, code)
    if message:
        assert response.json["msg"] == message


def test_a_name_of_120_bytes_is_accepted(client, registered):
    session, passkey = registered
    response = client.patch(f"{BASE}/{passkey['id']}", headers=bearer(session),
                            json={"friendly_name": "n" * 120})
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_unknown_or_someone_elses_passkey_is_404(client, registered, method):
    _session, passkey = registered
    client.application.config["GITHUB_AUTO_LOGIN"] = "hubot"
    other = new_session(client)
    for passkey_id in (passkey["id"], str(uuid.uuid4()), "not-a-uuid"):
        response = getattr(client, method)(f"{BASE}/{passkey_id}", headers=bearer(other),
                                           json={"friendly_name": "Mine"})
        assert error_of(response) == (404, "validation_failed"), passkey_id
        assert response.json["msg"] == "Passkey not found"


def test_remove(client, registered):
    session, passkey = registered
    response = client.delete(f"{BASE}/{passkey['id']}", headers=bearer(session))
    assert (response.status_code, response.get_data()) == (204, b"")
    assert client.get(BASE, headers=bearer(session)).json == []
    entry = audit_actions(client)[-1]
    assert (entry["action"], entry["actor_id"], entry["traits"]) == \
        ("passkey_deleted", session["user"]["id"], {"passkey_id": passkey["id"]})
    again = client.delete(f"{BASE}/{passkey['id']}", headers=bearer(session))
    assert error_of(again) == (404, "validation_failed")


# --- admin -----------------------------------------------------------------------------------


def test_admin_lists_and_removes_a_persons_passkeys(client, admin, registered):
    session, passkey = registered
    user_id = session["user"]["id"]
    listed = client.get(f"/auth/v1/admin/users/{user_id}/passkeys", headers=admin)
    assert listed.json == [{"id": passkey["id"], "friendly_name": "Passkey",
                            "created_at": passkey["created_at"]}]
    response = client.delete(f"/auth/v1/admin/users/{user_id}/passkeys/{passkey['id']}",
                             headers=admin)
    assert response.status_code == 204
    entry = audit_actions(client)[-1]
    assert (entry["action"], entry["actor_username"]) == ("passkey_deleted", "service_role")
    assert entry["traits"] == {"user_id": user_id, "passkey_id": passkey["id"]}
    again = client.delete(f"/auth/v1/admin/users/{user_id}/passkeys/{passkey['id']}",
                          headers=admin)
    assert error_of(again) == (404, "validation_failed")


@pytest.mark.parametrize(("user_id", "status", "code"), [
    (str(uuid.uuid4()), 404, "user_not_found"), ("nope", 404, "validation_failed")])
def test_admin_passkeys_of_an_unknown_user(client, admin, user_id, status, code):
    response = client.get(f"/auth/v1/admin/users/{user_id}/passkeys", headers=admin)
    assert error_of(response) == (status, code)


def test_admin_passkey_calls_need_an_admin(client, registered):
    session, passkey = registered
    user_id = session["user"]["id"]
    assert error_of(client.get(f"/auth/v1/admin/users/{user_id}/passkeys",
                               headers=bearer(session))) == (403, "not_admin")
    assert error_of(client.delete(f"/auth/v1/admin/users/{user_id}/passkeys/{passkey['id']}",
                                  headers=bearer(session))) == (403, "not_admin")


@pytest.mark.parametrize("soft", [False, True])
def test_deleting_a_person_deletes_their_passkeys(client, admin, registered, soft):
    session, _passkey = registered
    response = client.delete(f"/auth/v1/admin/users/{session['user']['id']}", headers=admin,
                             json={"should_soft_delete": soft})
    assert response.status_code == 200
    assert db(client).one("SELECT count(*) FROM webauthn_credentials")[0] == 0


# --- dashboard -------------------------------------------------------------------------------


def dashboard_page(client, path, status=200):
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True)


def dashboard_post(client, path):
    """Submit the dashboard's form at ``path`` with the CSRF token its page carries."""
    page = dashboard_page(client, path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(path, data={"csrf_token": csrf}, follow_redirects=True)


def test_the_person_page_lists_passkeys_and_removes_one_after_asking(client, registered):
    session, passkey = registered
    user_id = session["user"]["id"]
    html = dashboard_page(client, f"/dashboard/users/{user_id}")
    assert "Passkeys" in html and passkey["id"] in html and "never" in html
    path = f"/dashboard/users/{user_id}/passkeys/{passkey['id']}/remove"
    confirm = dashboard_page(client, path)
    assert "Remove the passkey “Passkey” of The Octocat?" in confirm
    assert ">Remove passkey</button>" in confirm
    html = dashboard_post(client, path).get_data(as_text=True)
    assert "Removed the passkey Passkey of octocat@example.com." in html
    assert "No passkeys." in html
    entry = audit_actions(client)[-1]
    assert (entry["action"], entry["actor_username"], entry["traits"]) == \
        ("passkey_deleted", "service_role", {"user_id": user_id, "passkey_id": passkey["id"]})


def test_removing_a_passkey_needs_the_form_token(client, registered):
    session, passkey = registered
    path = f"/dashboard/users/{session['user']['id']}/passkeys/{passkey['id']}/remove"
    assert client.post(path, data={}).status_code == 400
    assert len(client.get(BASE, headers=bearer(session)).json) == 1


def test_removing_an_unknown_passkey_is_a_404_page(client, session):
    path = f"/dashboard/users/{session['user']['id']}/passkeys/{uuid.uuid4()}/remove"
    assert "no such passkey" in dashboard_page(client, path, 404)


def test_the_person_page_works_with_passkeys_off(make_app):
    client = make_app().test_client()
    user_id = new_session(client)["user"]["id"]
    html = dashboard_page(client, f"/dashboard/users/{user_id}")
    assert "No passkeys." in html and "Passkeys are off" in html


# --- data file -------------------------------------------------------------------------------


def test_export_carries_public_material_only_and_import_restores_sign_in(
        client, registered, authenticator, make_app):
    session, passkey = registered
    with client.application.app_context():
        exported = datafile.export_data(0)
    [item] = exported["users"][0]["passkeys"]
    credential = next(iter(authenticator.credentials.values()))
    assert set(item) == {"id", "friendly_name", "credential_id", "public_key",
                         "attestation_type", "aaguid", "sign_count", "transports",
                         "backup_eligible", "backed_up", "created_at", "updated_at",
                         "last_used_at"}
    assert item["credential_id"] == credential.id
    assert "factors" not in exported["users"][0]
    assert "challenge" not in json.dumps(exported)
    fresh = make_app(**PASSKEY_CONFIG).test_client()
    with fresh.application.app_context():
        datafile.import_data(exported)
    response = passkey_sign_in(fresh, authenticator)
    assert response.status_code == 200, response.json
    assert claims_of(response.json)["sub"] == session["user"]["id"]
    assert fresh.get(f"/auth/v1/admin/users/{session['user']['id']}/passkeys",
                     headers={"apikey": keys.SERVICE_ROLE_KEY,
                              "Authorization": f"Bearer {keys.SERVICE_ROLE_KEY}"}
                     ).json[0]["id"] == passkey["id"]


@pytest.mark.parametrize(("change", "message"), [
    ({"public_key": "AAAA"}, "not a COSE public key"),
    ({"credential_id": ""}, "credential_id: empty"),
    ({"credential_id": 5}, "credential_id: expected base64url text"),
    ({"sign_count": "1"}, "sign_count: expected a whole number"),
    ({"aaguid": "x"}, "aaguid"),
])
def test_import_refuses_a_broken_passkey(client, registered, change, message):
    with client.application.app_context():
        exported = datafile.export_data(0)
        exported["users"][0]["passkeys"][0].update(change)
        with pytest.raises(datafile.DataFileError, match=message):
            datafile.import_data(exported)


def test_a_user_entry_without_passkeys_keeps_them(client, registered):
    with client.application.app_context():
        exported = datafile.export_data(0)
        del exported["users"][0]["passkeys"]
        datafile.import_data(exported)
    assert db(client).one("SELECT count(*) FROM webauthn_credentials")[0] == 1


def test_reset_forgets_passkeys_and_challenges(client, registered, admin):
    sign_in_options(client)
    assert client.post("/emulator/v1/reset", headers=admin).status_code == 200
    assert db(client).one("SELECT count(*) FROM webauthn_credentials")[0] == 0
    assert db(client).one("SELECT count(*) FROM webauthn_challenges")[0] == 0
