"""Refresh-token rotation, reuse detection and concurrency (grant_type=refresh_token)."""

import re
import threading

import pytest

from emulator import keys

REFRESH = "/auth/v1/token?grant_type=refresh_token"


def refresh(client, token, **headers):
    return client.post(REFRESH, headers={"apikey": keys.ANON_KEY, **headers},
                       json={"refresh_token": token})


def test_tokens_are_twelve_base32_characters(sign_in):
    assert re.fullmatch(r"[a-z2-7]{12}", sign_in()["refresh_token"])


def test_rotation_issues_a_child(client, sign_in):
    first = sign_in()["refresh_token"]
    response = refresh(client, first)
    assert response.status_code == 200
    assert response.json["refresh_token"] != first
    assert "provider_token" not in response.json


def test_parent_of_active_token_returns_active_token_any_time_later(client, sign_in, clock):
    first = sign_in()["refresh_token"]
    second = refresh(client, first).json["refresh_token"]
    clock.now += 3600
    assert refresh(client, first).json["refresh_token"] == second


def rotated_twice(client, sign_in) -> tuple[str, str, str]:
    """Sign in and refresh twice; return the three tokens of the chain."""
    first = sign_in()["refresh_token"]
    second = refresh(client, first).json["refresh_token"]
    return first, second, refresh(client, second).json["refresh_token"]


def test_older_token_inside_interval_gets_new_child(client, sign_in, clock):
    first, second, third = rotated_twice(client, sign_in)
    clock.now += 5
    reused = refresh(client, first)
    assert reused.status_code == 200
    assert reused.json["refresh_token"] not in {first, second, third}


def test_reuse_outside_interval_revokes_the_family(client, sign_in, clock):
    first, _, third = rotated_twice(client, sign_in)
    clock.now += 11
    response = refresh(client, first)
    assert (response.status_code, response.json["error_code"]) == \
        (400, "refresh_token_already_used")
    clock.now += 11  # the family revocation touched updated_at, as the real server does
    assert refresh(client, third).json["error_code"] == "refresh_token_already_used"


def test_reuse_interval_is_configurable(make_app, clock):
    client = make_app(REFRESH_TOKEN_REUSE_INTERVAL=0).test_client()
    from tests.emulator.emulator_helpers import VERIFIER, auth_code

    session = client.post("/auth/v1/token?grant_type=pkce", headers={"apikey": keys.ANON_KEY},
                          json={"auth_code": auth_code(client), "code_verifier": VERIFIER}).json
    first = session["refresh_token"]
    second = refresh(client, first).json["refresh_token"]
    refresh(client, second)
    clock.now += 1
    assert refresh(client, first).json["error_code"] == "refresh_token_already_used"


@pytest.mark.parametrize("token", ["", "short", "ABCDEFGHIJKL", "a" * 13, 12])
def test_format_errors(client, token):
    response = refresh(client, token)
    assert response.status_code == 400
    assert response.json["error_code"] in {"validation_failed", "bad_json"}


def test_unknown_token(client):
    response = refresh(client, "abcdefghijkl", **{"X-Supabase-Api-Version": "2024-01-01"})
    assert response.json == {"code": "refresh_token_not_found",
                             "message": "Invalid Refresh Token: Refresh Token Not Found"}


def test_banned_and_deleted_users(client, admin, sign_in):
    session = sign_in()
    user_id = session["user"]["id"]
    client.put(f"/auth/v1/admin/users/{user_id}", headers=admin, json={"ban_duration": "1h"})
    assert refresh(client, session["refresh_token"]).json["error_code"] == "user_banned"
    client.delete(f"/auth/v1/admin/users/{user_id}", headers=admin)
    assert refresh(client, session["refresh_token"]).json["error_code"] == \
        "refresh_token_not_found"


def test_concurrent_refreshes_of_one_token_all_succeed_with_one_session(app, sign_in):
    token = sign_in()["refresh_token"]
    results = []

    def worker():
        with app.test_client() as client:
            response = refresh(client, token)
            results.append((response.status_code, response.json["refresh_token"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in results} == {200}
    assert len({token for _, token in results}) == 1  # all got the same active child
    db = app.extensions["emulator.db"]
    assert db.one("SELECT count(*) FROM sessions")[0] == 1
    assert db.one("SELECT count(*) FROM refresh_tokens WHERE revoked = 0")[0] == 1
