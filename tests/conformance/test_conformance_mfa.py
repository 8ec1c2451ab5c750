"""MFA with TOTP (internal/api/mfa.go): supabase-py's auth.mfa as the client, raw HTTP for the
refusals, and the admin factor calls. Codes come from pyotp, so any RFC 6238 server passes."""

import re
import time
import uuid

import pyotp
import pytest
from supabase_auth.errors import AuthApiError

from tests.conformance.support import assert_error, jwt_parts

QR_PREFIX = "data:image/svg+xml;utf-8,"  # what supabase-py puts before the server's SVG


@pytest.fixture
def person(client_sign_in, stand_in):
    """A stand-in account signed in through the real client (its session is the client's)."""
    account = stand_in.create_account()
    client_sign_in(account)
    return account


@pytest.fixture
def enrolled(person, gotrue):
    """An unverified TOTP factor of the signed-in person: (factor id, secret)."""
    response = gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "Phone"})
    return response.id, response.totp.secret


@pytest.fixture
def verified(enrolled, gotrue):
    """The factor verified: the client's session is now aal2. (factor id, secret)."""
    factor_id, secret = enrolled
    gotrue.mfa.challenge_and_verify({"factor_id": factor_id, "code": pyotp.TOTP(secret).now()})
    return factor_id, secret


def access_token(gotrue) -> str:
    return gotrue.get_session().access_token


def api_error(call) -> AuthApiError:
    with pytest.raises(AuthApiError) as raised:
        call()
    return raised.value


def test_enroll_gives_secret_uri_and_qr_code(person, gotrue):
    response = gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "Phone"})
    assert (response.type, response.friendly_name) == ("totp", "Phone")
    assert uuid.UUID(response.id)
    secret = response.totp.secret
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert response.totp.uri == (
        f"otpauth://totp/localhost:3000:{person['email']}?algorithm=SHA1&digits=6"
        f"&issuer=localhost:3000&period=30&secret={secret}")
    assert response.totp.qr_code.startswith(QR_PREFIX)
    svg = response.totp.qr_code[len(QR_PREFIX):]
    assert "<svg" in svg and "#" not in svg


def test_the_factor_is_listed_unverified_until_verified(enrolled, gotrue):
    factor_id, secret = enrolled
    listed = gotrue.mfa.list_factors()
    assert [(f.id, f.status) for f in listed.all] == [(factor_id, "unverified")]
    assert listed.totp == []
    gotrue.mfa.challenge_and_verify({"factor_id": factor_id, "code": pyotp.TOTP(secret).now()})
    assert [f.id for f in gotrue.mfa.list_factors().totp] == [factor_id]


def test_a_challenge_lasts_five_minutes(enrolled, gotrue):
    factor_id, _ = enrolled
    before = time.time()
    response = gotrue.mfa.challenge({"factor_id": factor_id})
    assert response.factor_type == "totp"
    assert before + 300 - 5 <= response.expires_at <= time.time() + 300 + 5


def test_verifying_gives_an_aal2_session_whose_amr_has_totp(verified, gotrue):
    claims = jwt_parts(access_token(gotrue))[1]
    assert claims["aal"] == "aal2"
    assert {entry["method"] for entry in claims["amr"]} == {"oauth", "totp"}
    level = gotrue.mfa.get_authenticator_assurance_level()
    assert (level.current_level, level.next_level) == ("aal2", "aal2")


def wrong_code(secret: str) -> str:
    """Six digits that are not the code of now, nor of a step either side."""
    totp, now = pyotp.TOTP(secret), time.time()
    taken = {totp.at(now + offset) for offset in (-30, 0, 30)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in taken)


def test_a_wrong_code_is_refused(enrolled, gotrue):
    factor_id, secret = enrolled
    error = api_error(lambda: gotrue.mfa.challenge_and_verify(
        {"factor_id": factor_id, "code": wrong_code(secret)}))
    assert (error.status, error.code, error.message) == (
        422, "mfa_verification_failed", "Invalid TOTP code entered")
    assert jwt_parts(access_token(gotrue))[1]["aal"] == "aal1"


def test_an_empty_code_is_a_validation_error(enrolled, gotrue, bearer):
    factor_id, _ = enrolled
    challenge_id = gotrue.mfa.challenge({"factor_id": factor_id}).id
    resp = bearer("POST", f"/factors/{factor_id}/verify", access_token(gotrue),
                  json={"challenge_id": challenge_id, "code": ""})
    assert_error(resp, 400, "validation_failed", "Code needs to be non-empty")


def test_a_challenge_id_that_is_not_a_uuid_is_bad_json(enrolled, gotrue, bearer):
    factor_id, _ = enrolled
    resp = bearer("POST", f"/factors/{factor_id}/verify", access_token(gotrue),
                  json={"challenge_id": "abc", "code": "123456"})
    assert_error(resp, 400, "bad_json")
    assert resp.json()["message"].startswith("Could not parse request body as JSON: ")


def test_a_verified_challenge_cannot_be_used_again(enrolled, gotrue):
    factor_id, secret = enrolled
    challenge_id = gotrue.mfa.challenge({"factor_id": factor_id}).id
    code = pyotp.TOTP(secret).now()
    gotrue.mfa.verify({"factor_id": factor_id, "challenge_id": challenge_id, "code": code})
    error = api_error(lambda: gotrue.mfa.verify(
        {"factor_id": factor_id, "challenge_id": challenge_id, "code": code}))
    assert (error.status, error.code) == (422, "mfa_ip_address_mismatch")


def test_a_challenge_of_another_factor_is_not_found(enrolled, gotrue):
    factor_id, secret = enrolled
    other = gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "Tablet"}).id
    challenge_id = gotrue.mfa.challenge({"factor_id": other}).id
    error = api_error(lambda: gotrue.mfa.verify(
        {"factor_id": factor_id, "challenge_id": challenge_id, "code": pyotp.TOTP(secret).now()}))
    assert (error.status, error.code, error.message) == (
        422, "mfa_factor_not_found", "MFA factor with the provided challenge ID not found")


@pytest.mark.emulator_only(reason="moves the clock past the five-minute challenge expiry")
def test_an_expired_challenge_is_refused(enrolled, gotrue, clock):
    factor_id, secret = enrolled
    challenge_id = gotrue.mfa.challenge({"factor_id": factor_id}).id
    clock.advance(301)
    error = api_error(lambda: gotrue.mfa.verify(
        {"factor_id": factor_id, "challenge_id": challenge_id,
         "code": pyotp.TOTP(secret).at(time.time() + 301)}))
    assert (error.status, error.code) == (422, "mfa_challenge_expired")


def test_another_persons_factor_is_not_found(enrolled, sign_in, bearer):
    factor_id, _ = enrolled
    stranger = sign_in()["access_token"]
    for method, path in (("POST", f"/factors/{factor_id}/challenge"),
                         ("DELETE", f"/factors/{factor_id}")):
        assert_error(bearer(method, path, stranger), 404, "mfa_factor_not_found",
                     "Factor not found")


def test_a_factor_id_that_is_not_a_uuid_is_404(person, gotrue, bearer):
    resp = bearer("POST", "/factors/nope/challenge", access_token(gotrue))
    assert_error(resp, 404, "validation_failed", "factor_id must be an UUID")


def test_friendly_names_are_unique_per_person(enrolled, gotrue):
    error = api_error(lambda: gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "Phone"}))
    assert (error.status, error.code, error.message) == (
        422, "mfa_factor_name_conflict",
        'A factor with the friendly name "Phone" for this user already exists')


@pytest.mark.parametrize("factor_type, status, code", [
    ("phone", 422, "mfa_phone_enroll_not_enabled"),
    ("sms", 400, "validation_failed"),
])
def test_only_totp_is_enabled(person, gotrue, bearer, factor_type, status, code):
    resp = bearer("POST", "/factors", access_token(gotrue),
                  json={"factor_type": factor_type, "phone": "+15555550100"})
    assert_error(resp, status, code)


def test_an_aal1_session_cannot_add_or_remove_factors_once_one_is_verified(
        person, verified, client_sign_in, bearer):
    factor_id, _ = verified
    other = client_sign_in(person).access_token  # the same person signing in again: aal1
    assert jwt_parts(other)[1]["aal"] == "aal1"
    assert bearer("GET", "/user", other).json()["factors"][0]["status"] == "verified"
    assert_error(bearer("POST", "/factors", other, json={"factor_type": "totp",
                                                         "friendly_name": "Tablet"}),
                 403, "insufficient_aal", "AAL2 required to enroll a new factor")
    assert_error(bearer("DELETE", f"/factors/{factor_id}", other),
                 422, "insufficient_aal", "AAL2 required to unenroll verified factor")


def test_verifying_ends_the_persons_other_aal1_sessions(person, enrolled, gotrue,
                                                         client_sign_in, bearer):
    factor_id, secret = enrolled
    first = access_token(gotrue)
    other = client_sign_in(person).access_token
    challenge = bearer("POST", f"/factors/{factor_id}/challenge", first).json()
    resp = bearer("POST", f"/factors/{factor_id}/verify", first,
                  json={"challenge_id": challenge["id"], "code": pyotp.TOTP(secret).now()})
    assert resp.status_code == 200, resp.text
    assert_error(bearer("GET", "/user", other), 403, "session_not_found")


def test_unenrolling_drops_the_session_to_aal1(verified, gotrue, refresh):
    factor_id, _ = verified
    assert gotrue.mfa.unenroll({"factor_id": factor_id}).id == factor_id
    after = refresh(gotrue.get_session().refresh_token).json()
    claims = jwt_parts(after["access_token"])[1]
    assert claims["aal"] == "aal1"
    assert [entry["method"] for entry in claims["amr"]] == ["oauth"]


def test_admin_lists_and_deletes_a_persons_factors(verified, gotrue, admin, refresh):
    factor_id, _ = verified
    user_id = gotrue.get_session().user.id
    listed = admin.get(f"/admin/users/{user_id}/factors")
    assert listed.status_code == 200, listed.text
    assert [(f["id"], f["status"], f["factor_type"]) for f in listed.json()] == [
        (factor_id, "verified", "totp")]
    deleted = admin.delete(f"/admin/users/{user_id}/factors/{factor_id}")
    assert (deleted.status_code, deleted.json()["id"]) == (200, factor_id)
    after = refresh(gotrue.get_session().refresh_token).json()
    assert jwt_parts(after["access_token"])[1]["aal"] == "aal1"
    assert "factors" not in after["user"]


def test_admin_factor_calls_check_ids(admin, person, gotrue):
    user_id = gotrue.get_session().user.id
    assert_error(admin.delete(f"/admin/users/{user_id}/factors/nope"), 404, "validation_failed",
                 "factor_id must be an UUID")
    assert_error(admin.delete(f"/admin/users/{user_id}/factors/{uuid.uuid4()}"), 404,
                 "mfa_factor_not_found", "Factor not found")
