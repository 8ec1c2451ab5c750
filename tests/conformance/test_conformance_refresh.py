"""POST /token?grant_type=refresh_token (§5): formats, rotation, reuse and revocation."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conformance.support import REFRESH_TOKEN_RE, REUSE_INTERVAL, assert_error, jwt_parts

NOT_VALID = "Refresh token is not valid"  # the real server's casing (token_refresh.go)
NOT_FOUND = "Invalid Refresh Token: Refresh Token Not Found"
ALREADY_USED = "Invalid Refresh Token: Already Used"
BANNED = "Invalid Refresh Token: User Banned"


def test_rotation_issues_a_new_token(sign_in, refresh):
    old = sign_in()["refresh_token"]
    resp = refresh(old)
    assert resp.status_code == 200, resp.text
    new = resp.json()["refresh_token"]
    assert REFRESH_TOKEN_RE.match(new)
    assert new != old


def test_refresh_response_shape(sign_in, refresh):
    body = refresh(sign_in()["refresh_token"]).json()
    assert list(body) == ["access_token", "token_type", "expires_in", "expires_at",
                          "refresh_token", "user"]
    assert body["token_type"] == "bearer"
    assert [i["provider"] for i in body["user"]["identities"]] == ["github"]


def test_refresh_keeps_session_and_amr(sign_in, refresh):
    session = sign_in()
    before = jwt_parts(session["access_token"])[1]
    after = jwt_parts(refresh(session["refresh_token"]).json()["access_token"])[1]
    assert after["session_id"] == before["session_id"]
    assert after["amr"] == before["amr"]


def test_immediate_parent_returns_current_token(sign_in, refresh):
    parent = sign_in()["refresh_token"]
    current = refresh(parent).json()["refresh_token"]
    resp = refresh(parent)
    assert resp.status_code == 200, resp.text
    assert resp.json()["refresh_token"] == current


def test_older_token_inside_reuse_interval_gets_new_child(sign_in, refresh):
    t0 = sign_in()["refresh_token"]
    t1 = refresh(t0).json()["refresh_token"]
    t2 = refresh(t1).json()["refresh_token"]
    resp = refresh(t0)
    assert resp.status_code == 200, resp.text
    assert resp.json()["refresh_token"] not in {t0, t1, t2}


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the reuse interval")
def test_older_token_outside_reuse_interval_is_already_used(sign_in, refresh, clock):
    t0 = sign_in()["refresh_token"]
    t1 = refresh(t0).json()["refresh_token"]
    refresh(t1)
    clock.advance(REUSE_INTERVAL + 1)
    assert_error(refresh(t0), 400, "refresh_token_already_used", ALREADY_USED)


def reuse_oldest_token_past_the_window(sign_in, refresh, clock) -> str:
    """Rotate twice, then reuse the first token after the reuse interval; the newest token."""
    t0 = sign_in()["refresh_token"]
    t1 = refresh(t0).json()["refresh_token"]
    t2 = refresh(t1).json()["refresh_token"]
    clock.advance(REUSE_INTERVAL + 1)
    refresh(t0)
    return t2


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the reuse interval")
def test_reuse_detection_revokes_the_family(sign_in, refresh, clock):
    t2 = reuse_oldest_token_past_the_window(sign_in, refresh, clock)
    # RevokeTokenFamily stamps updated_at, so t2 is only refused once its own window has passed
    clock.advance(REUSE_INTERVAL + 1)
    assert_error(refresh(t2), 400, "refresh_token_already_used", ALREADY_USED)


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the reuse interval")
def test_parent_of_current_token_is_returned_whatever_the_time(sign_in, refresh, clock):
    parent = sign_in()["refresh_token"]
    current = refresh(parent).json()["refresh_token"]
    clock.advance(REUSE_INTERVAL * 100)
    resp = refresh(parent)
    assert resp.status_code == 200, resp.text
    assert resp.json()["refresh_token"] == current


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the reuse interval")
def test_access_token_survives_family_revocation(sign_in, refresh, bearer, clock):
    session = sign_in()
    t1 = refresh(session["refresh_token"]).json()["refresh_token"]
    refresh(t1)
    clock.advance(REUSE_INTERVAL + 1)
    refresh(session["refresh_token"])
    # v1: the session row stays, so the access token still works until it expires
    assert bearer("GET", "/user", session["access_token"]).status_code == 200


@pytest.mark.parametrize("token", [
    "",
    "short",
    "abcdefghijk",            # 11 chars
    "ABCDEFGHIJKL",           # 12 chars, upper case
    "abcdefghijk!",           # 12 chars, punctuation
    "abcdefghijklmnopqrstuvwxyz",  # long, not a v2 token
])
def test_malformed_token_is_validation_failed(refresh, token):
    assert_error(refresh(token), 400, "validation_failed", NOT_VALID)


def test_unknown_token_is_not_found(refresh):
    assert_error(refresh("abcdefghijkl"), 400, "refresh_token_not_found", NOT_FOUND)


def test_banned_user_cannot_refresh(sign_in, refresh, admin):
    session = sign_in()
    admin.put(f"/admin/users/{session['user']['id']}", json={"ban_duration": "24h"})
    assert_error(refresh(session["refresh_token"]), 400, "user_banned", BANNED)


def test_deleted_user_token_is_not_found(sign_in, refresh, admin):
    session = sign_in()
    admin.delete(f"/admin/users/{session['user']['id']}")
    assert_error(refresh(session["refresh_token"]), 400, "refresh_token_not_found", NOT_FOUND)


def test_logged_out_token_is_not_found(sign_in, refresh, bearer):
    session = sign_in()
    bearer("POST", "/logout", session["access_token"])
    assert_error(refresh(session["refresh_token"]), 400, "refresh_token_not_found", NOT_FOUND)


def test_concurrent_refreshes_of_one_token_all_succeed(sign_in, refresh):
    token = sign_in()["refresh_token"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: refresh(token), range(20)))
    assert [r.status_code for r in responses] == [200] * 20


def test_session_works_after_concurrent_refreshes(sign_in, refresh, bearer):
    token = sign_in()["refresh_token"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        bodies = [r.json() for r in pool.map(lambda _: refresh(token), range(20))]
    latest = bodies[-1]
    assert bearer("GET", "/user", latest["access_token"]).status_code == 200
    assert refresh(latest["refresh_token"]).status_code == 200



@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the reuse interval")
def test_family_revocation_restarts_the_reuse_window(sign_in, refresh, clock):
    """RevokeTokenFamily sets updated_at = now(), so a revoked token is briefly reusable."""
    t2 = reuse_oldest_token_past_the_window(sign_in, refresh, clock)
    assert refresh(t2).status_code == 200
