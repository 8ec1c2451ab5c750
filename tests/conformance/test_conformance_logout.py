"""POST /logout?scope=… (§6): which sessions go, and the answers."""

import pytest

from tests.conformance.support import assert_error

# which of three sessions (the caller is session 0) survive each scope
SURVIVORS = {
    None: [False, False, False],
    "global": [False, False, False],
    "local": [False, True, True],
    "others": [True, False, False],
}


@pytest.mark.parametrize("scope", list(SURVIVORS), ids=str)
def test_scope_deletes_the_right_sessions(sign_in, stand_in, bearer, refresh, scope):
    account = stand_in.create_account()
    sessions = [sign_in(account) for _ in range(3)]
    params = {} if scope is None else {"scope": scope}
    resp = bearer("POST", "/logout", sessions[0]["access_token"], params=params)
    assert resp.status_code == 204, resp.text
    alive = [refresh(s["refresh_token"]).status_code == 200 for s in sessions]
    assert alive == SURVIVORS[scope]


def test_logout_does_not_touch_other_users(sign_in, bearer, refresh):
    mine, theirs = sign_in(), sign_in()
    bearer("POST", "/logout", mine["access_token"], params={"scope": "global"})
    assert refresh(theirs["refresh_token"]).status_code == 200


def test_logout_answers_204_with_empty_body(sign_in, bearer):
    resp = bearer("POST", "/logout", sign_in()["access_token"])
    assert resp.status_code == 204
    assert resp.content == b""


@pytest.mark.parametrize("scope", ["bogus", "GLOBAL", "all"])
def test_unknown_scope_is_validation_failed(sign_in, bearer, scope):
    resp = bearer("POST", "/logout", sign_in()["access_token"], params={"scope": scope})
    assert_error(resp, 400, "validation_failed", f'Unsupported logout scope "{scope}"')


def test_second_logout_is_session_not_found(sign_in, bearer):
    token = sign_in()["access_token"]
    bearer("POST", "/logout", token)
    resp = bearer("POST", "/logout", token)
    assert_error(resp, 403, "session_not_found",
                 "Session from session_id claim in JWT does not exist")


def test_logout_without_token_is_no_authorization(http):
    assert_error(http.post("/logout"), 401, "no_authorization")


def test_banned_user_cannot_logout(sign_in, bearer, admin):
    session = sign_in()
    admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "24h"})
    resp = bearer("POST", "/logout", session["access_token"])
    assert_error(resp, 403, "user_banned", "User is banned")


def test_real_client_sign_out_ends_the_session(gotrue, client_sign_in, refresh):
    session = client_sign_in()
    gotrue.sign_out()
    assert_error(refresh(session.refresh_token), 400, "refresh_token_not_found")
