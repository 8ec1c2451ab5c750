"""MFA with TOTP: enrol, challenge, verify, unenrol, the admin factor calls, aal and amr."""

import re
import uuid

import jwt
import pyotp
import pytest

from emulator import keys, mfa
from emulator.tokens import assurance
from tests.emulator.emulator_helpers import bearer, new_session

REFRESH = "/auth/v1/token?grant_type=refresh_token"


def claims_of(session: dict) -> dict:
    return jwt.decode(session["access_token"], options={"verify_signature": False})


def enroll(client, session: dict, **body):
    return client.post("/auth/v1/factors", headers=bearer(session),
                       json={"factor_type": "totp", **body})


def challenge(client, session: dict, factor_id: str, **kwargs):
    return client.post(f"/auth/v1/factors/{factor_id}/challenge", headers=bearer(session),
                       **kwargs)


def verify(client, session: dict, factor_id: str, challenge_id, code, **kwargs):
    return client.post(f"/auth/v1/factors/{factor_id}/verify", headers=bearer(session),
                       json={"challenge_id": challenge_id, "code": code}, **kwargs)


def code_at(secret: str, moment: float) -> str:
    return pyotp.TOTP(secret).at(moment)


@pytest.fixture
def enrolled(client, sign_in):
    """A session with an unverified factor: (session, factor id, secret)."""
    session = sign_in()
    response = enroll(client, session, friendly_name="Phone")
    assert response.status_code == 200, response.json
    return session, response.json["id"], response.json["totp"]["secret"]


@pytest.fixture
def someone_else(client, sign_in):
    """Sign in as another GitHub account (hubot); that session."""
    config = client.application.config
    config["GITHUB_AUTO_LOGIN"] = "hubot"
    try:
        return sign_in()
    finally:
        config["GITHUB_AUTO_LOGIN"] = "octocat"


@pytest.fixture
def raised(client, enrolled, clock):
    """The same person after verifying: (aal2 session JSON, factor id, secret)."""
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    assert response.status_code == 200, response.json
    return response.json, factor_id, secret


# --- enrol -----------------------------------------------------------------------------------


def test_enroll_answers_id_secret_uri_and_an_svg_qr_code(client, sign_in):
    response = enroll(client, sign_in(), friendly_name="Phone")
    body = response.json
    assert response.status_code == 200
    assert list(body) == ["id", "type", "friendly_name", "totp"]
    assert (body["type"], body["friendly_name"]) == ("totp", "Phone")
    assert uuid.UUID(body["id"])
    secret = body["totp"]["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 20 random bytes, base32 without padding
    assert body["totp"]["uri"] == (
        "otpauth://totp/127.0.0.1:5000:octocat@example.com?algorithm=SHA1&digits=6"
        f"&issuer=127.0.0.1:5000&period=30&secret={secret}")
    qr = body["totp"]["qr_code"]
    assert qr.startswith('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"')
    assert "#" not in qr  # safe behind the clients' unencoded data: URI


def test_enroll_uses_the_given_issuer(client, sign_in):
    uri = enroll(client, sign_in(), issuer="Example App").json["totp"]["uri"]
    assert uri.startswith("otpauth://totp/Example%20App:octocat@example.com?")
    assert "&issuer=Example%20App&" in uri


def test_enroll_escapes_the_issuer_as_a_path_segment(client, sign_in):
    """url.PathEscape, as pquerna/otp uses: "/", "," and "?" escaped; ":", "&", "+" kept."""
    uri = enroll(client, sign_in(), issuer="A/B, C?d:e&f+g").json["totp"]["uri"]
    assert "&issuer=A%2FB%2C%20C%3Fd:e&f+g&" in uri


def test_the_new_factor_is_unverified_and_listed_by_get_user(client, enrolled):
    session, factor_id, _ = enrolled
    user = client.get("/auth/v1/user", headers=bearer(session)).json
    assert list(user).index("factors") == list(user).index("user_metadata") + 1
    [factor] = user["factors"]
    assert list(factor) == ["id", "created_at", "updated_at", "status", "friendly_name",
                            "factor_type", "phone", "last_challenged_at"]
    assert (factor["id"], factor["status"], factor["factor_type"]) == (
        factor_id, "unverified", "totp")
    assert factor["last_challenged_at"] is None
    assert "secret" not in factor


def test_a_user_without_factors_has_no_factors_key(client, sign_in):
    assert "factors" not in client.get("/auth/v1/user", headers=bearer(sign_in())).json


@pytest.mark.parametrize("factor_type, status, code, message", [
    ("phone", 422, "mfa_phone_enroll_not_enabled", "MFA enroll is disabled for Phone"),
    ("webauthn", 422, "mfa_webauthn_enroll_not_enabled", "MFA enroll is disabled for WebAuthn"),
    ("sms", 400, "validation_failed", "factor_type needs to be totp, phone, or webauthn"),
    ("", 400, "validation_failed", "factor_type needs to be totp, phone, or webauthn"),
])
def test_only_totp_can_be_enrolled(client, sign_in, factor_type, status, code, message):
    response = enroll(client, sign_in(), factor_type=factor_type)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        status, code, message)


def test_totp_enrolment_can_be_turned_off(make_app):
    app = make_app(MFA_TOTP_ENROLL_ENABLED=False)
    client = app.test_client()
    response = enroll(client, new_session(client))
    assert (response.status_code, response.json["error_code"]) == (
        422, "mfa_totp_enroll_not_enabled")


def test_friendly_names_are_unique_per_user_even_when_empty(client, sign_in):
    session = sign_in()
    assert enroll(client, session).status_code == 200
    response = enroll(client, session)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_factor_name_conflict",
        'A factor with the friendly name "" for this user already exists')


def test_ten_factors_at_most(client, sign_in):
    session = sign_in()
    for number in range(10):
        assert enroll(client, session, friendly_name=f"f{number}").status_code == 200
    response = enroll(client, session, friendly_name="eleventh")
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "too_many_enrolled_mfa_factors", mfa.TOO_MANY)


def test_abandoned_enrolments_are_removed_after_five_minutes(client, enrolled, clock):
    session, factor_id, _ = enrolled
    clock.now += 301
    assert enroll(client, session, friendly_name="Tablet").status_code == 200
    factors = client.get("/auth/v1/user", headers=bearer(session)).json["factors"]
    assert [f["friendly_name"] for f in factors] == ["Tablet"]


def test_a_challenged_enrolment_is_kept(client, enrolled, clock):
    session, factor_id, _ = enrolled
    challenge(client, session, factor_id)
    clock.now += 301
    enroll(client, session, friendly_name="Tablet")
    factors = client.get("/auth/v1/user", headers=bearer(session)).json["factors"]
    assert [f["id"] for f in factors][0] == factor_id


def test_a_second_factor_needs_aal2(client, raised, sign_in):
    _, _, _ = raised
    other_device = sign_in()  # the same person, a new aal1 session
    response = enroll(client, other_device, friendly_name="Tablet")
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        403, "insufficient_aal", "AAL2 required to enroll a new factor")
    assert enroll(client, raised[0], friendly_name="Tablet").status_code == 200


def test_a_user_without_email_cannot_get_a_qr_code(client, sign_in, admin):
    session = sign_in()
    user_id = claims_of(session)["sub"]
    from emulator.db import get_db
    with client.application.app_context(), get_db().transaction() as conn:
        conn.execute("UPDATE users SET email = '' WHERE id = ?", (user_id,))
    response = enroll(client, session)
    assert (response.status_code, response.json["msg"]) == (500, "Error generating QR Code")


@pytest.mark.parametrize("body", ['{"factor_type": 1}', "[]", "{"])
def test_enrol_body_must_be_a_json_object(client, sign_in, body):
    response = client.post("/auth/v1/factors", headers={
        **bearer(sign_in()), "Content-Type": "application/json"}, data=body)
    assert (response.status_code, response.json["error_code"]) == (400, "bad_json")


def test_factors_need_a_bearer_token(client, anon):
    response = client.post("/auth/v1/factors", headers=anon, json={"factor_type": "totp"})
    assert (response.status_code, response.json["error_code"]) == (401, "no_authorization")


# --- challenge -------------------------------------------------------------------------------


def test_a_challenge_lasts_five_minutes_and_marks_the_factor(client, enrolled, clock):
    session, factor_id, _ = enrolled
    response = challenge(client, session, factor_id)
    assert response.status_code == 200
    assert list(response.json) == ["id", "type", "expires_at"]
    assert response.json["type"] == "totp"
    assert response.json["expires_at"] == int(clock.now) + 300
    factor = client.get("/auth/v1/user", headers=bearer(session)).json["factors"][0]
    assert factor["last_challenged_at"] is not None


@pytest.mark.parametrize("factor_id, code, message", [
    ("not-a-uuid", "validation_failed", "factor_id must be an UUID"),
    (str(uuid.uuid4()), "mfa_factor_not_found", "Factor not found"),
])
def test_unknown_factors_are_404(client, sign_in, factor_id, code, message):
    response = challenge(client, sign_in(), factor_id)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        404, code, message)


def test_another_persons_factor_is_not_found(client, enrolled, someone_else):
    _, factor_id, _ = enrolled
    for response in (challenge(client, someone_else, factor_id),
                     verify(client, someone_else, factor_id, str(uuid.uuid4()), "123456"),
                     client.delete(f"/auth/v1/factors/{factor_id}", headers=bearer(someone_else))):
        assert (response.status_code, response.json["error_code"]) == (404, "mfa_factor_not_found")


def test_challenges_are_rate_limited_per_address(client, enrolled):
    session, factor_id, _ = enrolled
    statuses = [challenge(client, session, factor_id).status_code for _ in range(mfa.BURST + 1)]
    assert statuses[:-1] == [200] * mfa.BURST
    assert statuses[-1] == 429
    elsewhere = challenge(client, session, factor_id, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert elsewhere.status_code == 200


def test_the_limit_refills_at_fifteen_a_minute(client, enrolled, clock):
    session, factor_id, _ = enrolled
    for _ in range(mfa.BURST):
        challenge(client, session, factor_id)
    assert challenge(client, session, factor_id).status_code == 429
    clock.now += 4  # one token every 4 s
    assert challenge(client, session, factor_id).status_code == 200


# --- verify ----------------------------------------------------------------------------------


def test_verifying_raises_the_session_to_aal2(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    body = response.json
    assert response.status_code == 200
    assert list(body) == ["access_token", "token_type", "expires_in", "expires_at",
                          "refresh_token", "user"]
    claims = claims_of(body)
    assert claims["aal"] == "aal2"
    assert [entry["method"] for entry in claims["amr"]] == ["oauth", "totp"]
    assert claims["session_id"] == claims_of(session)["session_id"]
    assert body["refresh_token"] != session["refresh_token"]
    assert body["user"]["factors"][0]["status"] == "verified"


def test_the_aal2_token_survives_a_refresh(client, raised):
    session, _, _ = raised
    response = client.post(REFRESH, headers={"apikey": keys.ANON_KEY},
                           json={"refresh_token": session["refresh_token"]})
    assert claims_of(response.json)["aal"] == "aal2"


def test_the_aal1_refresh_token_was_swapped(client, enrolled, raised):
    old_session, _, _ = enrolled
    response = client.post(REFRESH, headers={"apikey": keys.ANON_KEY},
                           json={"refresh_token": old_session["refresh_token"]})
    assert response.json["refresh_token"] == raised[0]["refresh_token"]  # parent of the active


def test_other_aal1_sessions_end_when_a_factor_is_verified(client, enrolled, sign_in, clock):
    session, factor_id, secret = enrolled
    other = sign_in()
    found = challenge(client, session, factor_id).json
    verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    response = client.get("/auth/v1/user", headers=bearer(other))
    assert (response.status_code, response.json["error_code"]) == (403, "session_not_found")


def test_other_unverified_totp_factors_go_when_one_is_verified(client, enrolled, clock):
    session, factor_id, secret = enrolled
    enroll(client, session, friendly_name="Abandoned")
    found = challenge(client, session, factor_id).json
    verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    factors = client.get("/auth/v1/user", headers=bearer(session)).json["factors"]
    assert [f["id"] for f in factors] == [factor_id]


@pytest.mark.parametrize("offset", [-30, 0, 30])
def test_a_code_one_step_either_side_is_accepted(client, enrolled, clock, offset):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"],
                      code_at(secret, clock.now + offset))
    assert response.status_code == 200


@pytest.mark.parametrize("code", ["wrong", "12345", "1234567", "000000", "１２３４５６"])
def test_wrong_codes_are_refused(client, enrolled, clock, code):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    if code == "１２３４５６":  # the right digits, but fullwidth: six characters, 18 bytes
        code = code_at(secret, clock.now).translate({c: c + 0xFEE0 for c in range(48, 58)})
    response = verify(client, session, factor_id, found["id"], code)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_verification_failed", "Invalid TOTP code entered")
    assert claims_of(session)["aal"] == "aal1"


@pytest.mark.parametrize("offset", [-60, 60])
def test_a_code_two_steps_away_is_refused(client, enrolled, clock, offset):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"],
                      code_at(secret, clock.now + offset))
    assert response.json["error_code"] == "mfa_verification_failed"


def test_a_code_with_spaces_around_it_is_trimmed(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"],
                      f" {code_at(secret, clock.now)}\n")
    assert response.status_code == 200


def test_a_wrong_code_leaves_the_challenge_usable(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    assert verify(client, session, factor_id, found["id"], "000000").status_code == 422
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    assert response.status_code == 200


def test_an_empty_code_is_a_validation_error(client, enrolled):
    session, factor_id, _ = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"], "")
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        400, "validation_failed", "Code needs to be non-empty")


@pytest.mark.parametrize("challenge_id, message", [
    ("abc", 'uuid: incorrect UUID length 3 in string "abc"'),
    ("g" * 36, f'uuid: incorrect UUID format in string "{"g" * 36}"'),
    (7, "json: cannot unmarshal number into Go struct field .challenge_id of type uuid.UUID"),
])
def test_a_challenge_id_that_is_not_a_uuid_is_bad_json(client, enrolled, challenge_id, message):
    session, factor_id, _ = enrolled
    response = verify(client, session, factor_id, challenge_id, "123456")
    assert (response.status_code, response.json["error_code"]) == (400, "bad_json")
    assert response.json["msg"] == f"Could not parse request body as JSON: {message}"


@pytest.mark.parametrize("challenge_id", [None, str(uuid.uuid4())])
def test_an_unknown_challenge_is_not_found(client, enrolled, challenge_id):
    session, factor_id, _ = enrolled
    response = verify(client, session, factor_id, challenge_id, "123456")
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_factor_not_found", "MFA factor with the provided challenge ID not found")


def test_a_challenge_of_another_factor_is_not_found(client, enrolled, clock):
    session, factor_id, secret = enrolled
    other = enroll(client, session, friendly_name="Tablet").json["id"]
    found = challenge(client, session, other).json
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    assert (response.status_code, response.json["error_code"]) == (422, "mfa_factor_not_found")


def test_an_expired_challenge_is_refused_and_deleted(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    clock.now += 301
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_challenge_expired",
        f"MFA challenge {found['id']} has expired, verify against another challenge or create "
        "a new challenge.")
    again = verify(client, session, factor_id, found["id"], code_at(secret, clock.now))
    assert again.json["error_code"] == "mfa_factor_not_found"


def test_a_verified_challenge_cannot_be_replayed(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    code = code_at(secret, clock.now)
    assert verify(client, session, factor_id, found["id"], code).status_code == 200
    response = verify(client, session, factor_id, found["id"], code)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_ip_address_mismatch", "Challenge and verify IP addresses mismatch.")


def test_the_same_code_on_a_new_challenge_is_accepted_as_the_real_server_does(
        client, raised, clock):
    session, factor_id, secret = raised
    found = challenge(client, session, factor_id).json
    assert verify(client, session, factor_id, found["id"],
                  code_at(secret, clock.now)).status_code == 200


def test_a_challenge_must_be_verified_from_the_same_address(client, enrolled, clock):
    session, factor_id, secret = enrolled
    found = challenge(client, session, factor_id).json
    response = verify(client, session, factor_id, found["id"], code_at(secret, clock.now),
                      environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert response.json["error_code"] == "mfa_ip_address_mismatch"


def test_verification_can_be_turned_off(make_app, clock):
    app = make_app(MFA_TOTP_VERIFY_ENABLED=False)
    client = app.test_client()
    session = new_session(client)
    factor_id = enroll(client, session).json["id"]
    response = challenge(client, session, factor_id)
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "mfa_totp_verify_not_enabled", "MFA verification is disabled for TOTP")


# --- unenrol ---------------------------------------------------------------------------------


def test_an_unverified_factor_can_be_removed_at_aal1(client, enrolled):
    session, factor_id, _ = enrolled
    response = client.delete(f"/auth/v1/factors/{factor_id}", headers=bearer(session))
    assert (response.status_code, response.json) == (200, {"id": factor_id})


def test_a_verified_factor_needs_aal2_to_be_removed(client, raised, sign_in):
    _, factor_id, _ = raised
    response = client.delete(f"/auth/v1/factors/{factor_id}", headers=bearer(sign_in()))
    assert (response.status_code, response.json["error_code"], response.json["msg"]) == (
        422, "insufficient_aal", "AAL2 required to unenroll verified factor")


def test_removing_the_factor_drops_its_sessions_to_aal1(client, raised):
    session, factor_id, _ = raised
    assert client.delete(f"/auth/v1/factors/{factor_id}", headers=bearer(session)).status_code \
        == 200
    response = client.post(REFRESH, headers={"apikey": keys.ANON_KEY},
                           json={"refresh_token": session["refresh_token"]})
    claims = claims_of(response.json)
    assert (claims["aal"], [entry["method"] for entry in claims["amr"]]) == ("aal1", ["oauth"])
    assert "factors" not in response.json["user"]


# --- admin -----------------------------------------------------------------------------------


def test_admin_lists_a_users_factors(client, admin, enrolled):
    session, factor_id, _ = enrolled
    user_id = claims_of(session)["sub"]
    response = client.get(f"/auth/v1/admin/users/{user_id}/factors", headers=admin)
    assert response.status_code == 200
    assert [factor["id"] for factor in response.json] == [factor_id]
    assert "secret" not in response.json[0]


def test_admin_lists_no_factors_as_an_empty_list(client, admin, sign_in):
    user_id = claims_of(sign_in())["sub"]
    assert client.get(f"/auth/v1/admin/users/{user_id}/factors", headers=admin).json == []


def test_admin_user_list_leaves_factors_out(client, admin, enrolled):
    users = client.get("/auth/v1/admin/users", headers=admin).json["users"]
    assert all("factors" not in user for user in users)


def test_admin_deleting_a_factor_drops_the_session_to_aal1(client, admin, raised):
    session, factor_id, _ = raised
    user_id = claims_of(session)["sub"]
    response = client.delete(f"/auth/v1/admin/users/{user_id}/factors/{factor_id}",
                             headers=admin)
    assert (response.status_code, response.json["id"], response.json["status"]) == (
        200, factor_id, "verified")
    refreshed = client.post(REFRESH, headers={"apikey": keys.ANON_KEY},
                            json={"refresh_token": session["refresh_token"]}).json
    assert claims_of(refreshed)["aal"] == "aal1"
    assert client.get(f"/auth/v1/admin/users/{user_id}/factors", headers=admin).json == []


@pytest.mark.parametrize("user_id, factor_id, code", [
    ("nope", str(uuid.uuid4()), "validation_failed"),
    (str(uuid.uuid4()), str(uuid.uuid4()), "user_not_found"),
])
def test_admin_factor_calls_check_the_user_first(client, admin, user_id, factor_id, code):
    response = client.delete(f"/auth/v1/admin/users/{user_id}/factors/{factor_id}",
                             headers=admin)
    assert (response.status_code, response.json["error_code"]) == (404, code)


def test_admin_cannot_delete_another_users_factor_through_this_user(client, admin, enrolled,
                                                                     someone_else):
    _, factor_id, _ = enrolled
    other = claims_of(someone_else)["sub"]
    response = client.delete(f"/auth/v1/admin/users/{other}/factors/{factor_id}", headers=admin)
    assert (response.status_code, response.json["error_code"]) == (404, "mfa_factor_not_found")


def test_admin_factor_calls_need_the_service_role(client, anon, enrolled):
    session, factor_id, _ = enrolled
    user_id = claims_of(session)["sub"]
    response = client.get(f"/auth/v1/admin/users/{user_id}/factors", headers=bearer(session))
    assert (response.status_code, response.json["error_code"]) == (403, "not_admin")


def test_admin_renames_a_factor(client, admin, enrolled):
    session, factor_id, _ = enrolled
    user_id = claims_of(session)["sub"]
    response = client.put(f"/auth/v1/admin/users/{user_id}/factors/{factor_id}", headers=admin,
                          json={"friendly_name": "Old phone"})
    assert (response.status_code, response.json["friendly_name"]) == (200, "Old phone")


def test_soft_deleting_a_user_deletes_the_factors(client, admin, enrolled):
    session, _, _ = enrolled
    user_id = claims_of(session)["sub"]
    client.delete(f"/auth/v1/admin/users/{user_id}", headers=admin,
                  json={"should_soft_delete": True})
    assert client.get(f"/auth/v1/admin/users/{user_id}/factors", headers=admin).json == []


# --- for the dashboard, and the token's claims ----------------------------------------------------


def test_dashboard_functions_list_and_delete(client, raised):
    session, factor_id, _ = raised
    user_id = claims_of(session)["sub"]
    with client.application.test_request_context():
        assert [factor["id"] for factor in mfa.list_factors(user_id)] == [factor_id]
        assert mfa.delete_factor(user_id, str(uuid.uuid4())) is None
        assert mfa.delete_factor(user_id, factor_id)["id"] == factor_id
        assert mfa.list_factors(user_id) == []
    refreshed = client.post(REFRESH, headers={"apikey": keys.ANON_KEY},
                            json={"refresh_token": session["refresh_token"]}).json
    assert claims_of(refreshed)["aal"] == "aal1"


def test_factor_actions_are_audited(client, admin, raised):
    session, factor_id, _ = raised
    client.delete(f"/auth/v1/factors/{factor_id}", headers=bearer(session))
    entries = client.get("/auth/v1/admin/audit", headers=admin).json
    actions = [entry["payload"]["action"] for entry in entries]
    for action in ("factor_in_progress", "challenge_created", "verification_attempted",
                   "factor_unenrolled"):
        assert action in actions


def test_assurance_comes_from_the_methods_newest_first():
    amr = [{"method": "oauth", "timestamp": 10}, {"method": "totp", "timestamp": 20}]
    assert assurance(amr) == ("aal2", [amr[1], amr[0]])
    assert assurance(amr[:1]) == ("aal1", amr[:1])
