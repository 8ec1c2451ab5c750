"""GET /user (§6) and requireAuthentication's answers (§5.5)."""

import time

import pytest

from tests.conformance.support import assert_error, b64url_json, jwt_parts

NO_AUTH = "This endpoint requires a valid Bearer token"
BAD_JWT_PREFIX = "invalid JWT: unable to parse or verify signature, "


def tamper_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


def unsigned(token: str) -> str:
    _, claims = jwt_parts(token)
    return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."


def test_user_returns_the_user_with_identities(sign_in, bearer):
    session = sign_in()
    resp = bearer("GET", "/user", session["access_token"])
    assert resp.status_code == 200, resp.text
    user = resp.json()
    assert user["id"] == session["user"]["id"]
    assert [i["provider"] for i in user["identities"]] == ["github"]


def test_bearer_scheme_is_case_insensitive(sign_in, http):
    token = sign_in()["access_token"]
    resp = http.get("/user", headers={"Authorization": f"bearer {token}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("authorization", [
    None,
    "",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Token abc.def.ghi",
    "Bearer abc def",
])
def test_missing_or_malformed_header_is_401(http, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = http.get("/user", headers=headers)
    assert_error(resp, 401, "no_authorization", NO_AUTH)


@pytest.mark.parametrize("forge", [
    lambda token: "not-a-jwt",
    lambda token: "aaa.bbb.ccc",
    tamper_signature,
    unsigned,
], ids=["garbage", "garbage-segments", "bad-signature", "alg-none"])
def test_unverifiable_jwt_is_bad_jwt(sign_in, bearer, forge):
    resp = bearer("GET", "/user", forge(sign_in()["access_token"]))
    assert_error(resp, 403, "bad_jwt")
    assert resp.json()["message"].startswith(BAD_JWT_PREFIX)


def test_jwt_without_sub_is_bad_jwt(bearer, target):
    # the anon key is a valid JWT signed by the server, with no sub claim
    resp = bearer("GET", "/user", target.anon_key)
    assert_error(resp, 403, "bad_jwt", "invalid claim: missing sub claim")


@pytest.mark.emulator_only(reason="needs JWT_EXP=1 on a second emulator")
def test_expired_jwt_is_bad_jwt(short_exp_sign_in, short_exp_http):
    session = short_exp_sign_in()
    assert session["expires_in"] <= 1
    time.sleep(2.1)
    resp = short_exp_http.get("/user",
                              headers={"Authorization": f"Bearer {session['access_token']}"})
    assert_error(resp, 403, "bad_jwt")
    assert resp.json()["message"].startswith(BAD_JWT_PREFIX)
    assert "expired" in resp.json()["message"]


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past JWT_EXP")
def test_jwt_expired_by_clock_is_bad_jwt(sign_in, bearer, clock):
    token = sign_in()["access_token"]
    clock.advance(3601)
    resp = bearer("GET", "/user", token)
    assert_error(resp, 403, "bad_jwt")
    assert "expired" in resp.json()["message"]


def test_deleted_user_is_user_not_found(sign_in, bearer, admin):
    session = sign_in()
    admin.delete(f"/admin/users/{session['user']['id']}")
    resp = bearer("GET", "/user", session["access_token"])
    assert_error(resp, 403, "user_not_found", "User from sub claim in JWT does not exist")


def test_logged_out_session_is_session_not_found(sign_in, bearer):
    session = sign_in()
    bearer("POST", "/logout", session["access_token"])
    resp = bearer("GET", "/user", session["access_token"])
    assert_error(resp, 403, "session_not_found",
                 "Session from session_id claim in JWT does not exist")


def test_banned_user_is_user_banned(sign_in, bearer, admin):
    session = sign_in()
    admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "24h"})
    resp = bearer("GET", "/user", session["access_token"])
    assert_error(resp, 403, "user_banned", "User is banned")


def test_unbanned_user_is_served_again(sign_in, bearer, admin):
    session = sign_in()
    admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "24h"})
    admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "none"})
    assert bearer("GET", "/user", session["access_token"]).status_code == 200
