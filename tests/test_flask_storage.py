"""FlaskSessionStorage: supabase_auth's items in the Flask session, small enough for a cookie."""

from __future__ import annotations

import json
import os

import pytest
from flask import session
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.types import Session

from flask_storage import (
    FlaskSessionStorage,
    app_metadata_digest,
    forget_provider_token,
    provider_token,
    stored_tokens,
)

ACCESS_TOKEN = (  # header {"alg":"HS256"}; payload below; signature irrelevant to storage
    "eyJhbGciOiJIUzI1NiJ9."
    "eyJzdWIiOiJ1LTEiLCJhdWQiOiJhdXRoZW50aWNhdGVkIiwicm9sZSI6ImF1dGhlbnRpY2F0ZWQiLCJlbWFpbCI6Im"
    "1vbmFAZXhhbXBsZS5jb20iLCJwaG9uZSI6IiIsImlhdCI6MTAwMCwiZXhwIjo0NjAwLCJhcHBfbWV0YWRhdGEiOnsi"
    "cHJvdmlkZXIiOiJnaXRodWIifSwidXNlcl9tZXRhZGF0YSI6eyJ1c2VyX25hbWUiOiJtb25hIn0sImlzX2Fub255bW"
    "91cyI6ZmFsc2V9.c2ln"
)
FULL_SESSION = {
    "access_token": ACCESS_TOKEN,
    "refresh_token": "abcdefghijkl",
    "expires_in": 3600,
    "expires_at": 4600,
    "token_type": "bearer",
    "provider_token": "gho_" + "x" * 36,
    "user": {"id": "u-1", "aud": "authenticated", "app_metadata": {"provider": "github"},
             "user_metadata": {"user_name": "mona", "bio": "b" * 2000},
             "identities": [{"id": "1", "provider": "github", "identity_data": {"a": "b" * 500}}],
             "created_at": "2026-11-01T10:00:00.000000Z"},
}


@pytest.fixture
def storage(app):
    with app.test_request_context():
        yield FlaskSessionStorage()


def test_plain_items_round_trip(storage):
    storage.set_item("supabase.auth.token-code-verifier", "v" * 43)
    assert storage.get_item("supabase.auth.token-code-verifier") == "v" * 43
    storage.remove_item("supabase.auth.token-code-verifier")
    assert storage.get_item("supabase.auth.token-code-verifier") is None


def test_removing_a_missing_item_is_fine(storage):
    storage.remove_item("never-set")
    assert storage.get_item("never-set") is None


def test_a_session_is_stored_without_the_user(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    stored = dict(session[STORAGE_KEY])
    assert stored.pop("provider_token")
    assert stored.pop("app_metadata_digest") == app_metadata_digest(
        FULL_SESSION["user"]["app_metadata"])
    assert stored == {"access_token": ACCESS_TOKEN, "refresh_token": "abcdefghijkl",
                      "expires_at": 4600, "user_created_at": "2026-11-01T10:00:00.000000Z"}


def test_the_app_metadata_digest_follows_the_token_response_not_the_token(storage):
    """What Supabase says about the user is the reference; the token's claims may be a hook's."""
    changed = {**FULL_SESSION, "user": {**FULL_SESSION["user"],
                                        "app_metadata": {"provider": "github", "role": "admin"}}}
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    before = session[STORAGE_KEY]["app_metadata_digest"]
    storage.set_item(STORAGE_KEY, json.dumps(changed))
    after = session[STORAGE_KEY]["app_metadata_digest"]
    assert before != after == app_metadata_digest({"role": "admin", "provider": "github"})
    assert len(after) == 16


def test_the_provider_token_is_stored_encrypted(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    assert "gho_" not in json.dumps(dict(session))
    assert provider_token() == "gho_" + "x" * 36


def test_a_refresh_keeps_the_provider_token(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    refreshed = {**FULL_SESSION, "refresh_token": "mnopqrstuvwx", "provider_token": None}
    storage.set_item(STORAGE_KEY, json.dumps(refreshed))
    assert session[STORAGE_KEY]["refresh_token"] == "mnopqrstuvwx"
    assert provider_token() == "gho_" + "x" * 36


def test_another_users_session_does_not_inherit_the_provider_token(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    other = {**FULL_SESSION, "provider_token": None,
             "user": {**FULL_SESSION["user"], "id": "u-2"}}
    storage.set_item(STORAGE_KEY, json.dumps(other))
    assert provider_token() is None


def test_a_provider_token_sealed_under_another_secret_reads_as_absent(storage, app):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    app.secret_key = "another-secret-key-0123456789-abcdefghijkl"
    assert provider_token() is None


def test_forgetting_the_provider_token(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    forget_provider_token()
    assert provider_token() is None and stored_tokens()["refresh_token"] == "abcdefghijkl"


def test_the_stored_session_reads_back_as_a_supabase_session(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
    restored = Session.model_validate_json(storage.get_item(STORAGE_KEY))
    assert restored.access_token == ACCESS_TOKEN
    assert restored.refresh_token == "abcdefghijkl"
    assert restored.expires_at == 4600 and restored.expires_in == 3600
    assert restored.provider_token is None  # supabase_auth never needs it back
    assert restored.user.id == "u-1"
    assert restored.user.email == "mona@example.com"
    assert restored.user.user_metadata == {"user_name": "mona"}


@pytest.mark.parametrize("value", [None, "text", [], {"access_token": "a"},
                                   {"access_token": "a", "refresh_token": "b", "expires_at": "1"}])
def test_unexpected_shapes_read_as_signed_out(storage, value):
    session[STORAGE_KEY] = value
    assert stored_tokens() is None
    assert storage.get_item(STORAGE_KEY) is None


def cookie_size(client) -> int:
    return len(client.get_cookie("session").value)


def test_cookie_of_a_typical_github_user_is_small(browser, client, github_account):
    browser.sign_in(github_account(name="Mona Lisa Octocat"))
    client.get("/")  # the sign-in flash is shown and leaves the cookie
    print("typical cookie bytes:", cookie_size(client))
    assert cookie_size(client) <= 2000


def test_cookie_stays_under_4096_for_three_identities_and_large_metadata(
        browser, client, github_account, admin):
    login = github_account()
    created = admin.post("/admin/users", json={
        "email": f"{login}@example.com", "email_confirm": True,
        "phone": "15555550100", "phone_confirm": True,
        "user_metadata": {"bio": os.urandom(512).hex(), "company": "Example Ltd"},
        "app_metadata": {"role": "editor", "teams": ["alpha", "beta", "gamma"]},
    })
    assert created.status_code == 200, created.text
    browser.sign_in(login)
    user = admin.get(f"/admin/users/{created.json()['id']}").json()
    assert len(user["identities"]) == 3
    client.get("/")
    print("worst-case cookie bytes:", cookie_size(client))
    assert cookie_size(client) <= 4096
