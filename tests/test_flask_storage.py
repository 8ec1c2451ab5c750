"""FlaskSessionStorage: supabase_auth's items in the Flask session, small enough for a cookie."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
import zlib

import pytest
from cryptography.fernet import Fernet
from flask import request, session
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.types import Session

from flask_storage import (
    FlaskSessionStorage,
    SealedSession,
    UnreadableCookie,
    app_metadata_digest,
    forget_provider_token,
    provider_token,
    stored_tokens,
)
from tests.helpers import SECRET
from tests.processes import read_session, write_session

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


def readable_without_key(cookie: str) -> bytes:
    """Whatever anyone can read from a cookie: each dot-separated part, unbase64ed, inflated."""
    readable = b""
    for part in cookie.split("."):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        readable += raw
    return readable


def test_the_provider_token_is_kept_with_the_session(storage):
    storage.set_item(STORAGE_KEY, json.dumps(FULL_SESSION))
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


# --- the cookie is sealed ------------------------------------------------------------------


def signed_in_cookie(browser, client, github_account) -> str:
    browser.sign_in(github_account())
    client.get("/")
    return client.get_cookie("session").value


def test_the_cookie_reveals_no_token(browser, client, github_account):
    cookie = signed_in_cookie(browser, client, github_account)
    tokens = read_session(cookie, SECRET)[STORAGE_KEY]
    readable = readable_without_key(cookie)
    for name in ("access_token", "refresh_token", "provider_token"):
        assert tokens[name].encode() not in readable, name
        # not even a piece of it: the JWT's claims are no more readable than its signature
        assert tokens[name].encode()[10:30] not in readable, name


def test_a_cookie_sealed_with_a_fallback_key_still_opens(browser, client, github_account,
                                                         make_app):
    cookie = signed_in_cookie(browser, client, github_account)
    rotated = make_app(SECRET_KEY="a-new-secret-key-" + "k" * 32, SECRET_KEY_FALLBACKS=[SECRET])
    with rotated.test_client() as later:
        later.set_cookie("session", cookie)
        assert "Hello," in later.get("/").get_data(as_text=True)


def test_a_cookie_of_another_key_opens_nothing(browser, client, github_account, make_app):
    cookie = signed_in_cookie(browser, client, github_account)
    other = make_app(SECRET_KEY="a-new-secret-key-" + "k" * 32)
    with other.test_client() as later:
        later.set_cookie("session", cookie)
        assert "Hello," not in later.get("/").get_data(as_text=True)


def legacy_provider_seal(token: str, secret: str) -> str:
    """How releases before the sealed cookie encrypted the provider token on its own."""
    key = base64.urlsafe_b64encode(hashlib.sha256(
        b"flask_storage.provider_token\0" + secret.encode()).digest())
    return Fernet(key).encrypt(token.encode()).decode()


@pytest.mark.parametrize("seal_secret", [SECRET, "an-older-secret-" + "o" * 32])
def test_a_signed_cookie_from_before_is_read_once_and_rewritten_sealed(
        app, browser, client, github_account, seal_secret):
    data = read_session(signed_in_cookie(browser, client, github_account), SECRET)
    github_token = data[STORAGE_KEY]["provider_token"]
    data[STORAGE_KEY]["provider_token"] = legacy_provider_seal(github_token, seal_secret)
    signed = app.session_interface.legacy_serializer(app).dumps(data)
    with app.test_client() as upgraded:
        upgraded.set_cookie("session", signed)
        response = upgraded.get("/")
        assert "Hello," in response.get_data(as_text=True)  # nobody is signed out
        rewritten = upgraded.get_cookie("session").value
    assert rewritten != signed and "session=" in response.headers["Set-Cookie"]
    tokens = read_session(rewritten, SECRET)[STORAGE_KEY]
    assert tokens["refresh_token"] == data[STORAGE_KEY]["refresh_token"]
    # The old seal opens with the secret keys; one sealed under a forgotten key is dropped.
    assert tokens.get("provider_token") == (github_token if seal_secret == SECRET else None)


def test_what_a_request_chooses_is_not_compressed_with_the_tokens(app):
    """A sign-in's ``next`` is chosen by whoever links to it; its guess must not shrink the cookie.

    Were the tokens and ``next`` compressed together, a ``next`` repeating the tokens would
    seal shorter than one of the same length that does not (the CRIME attack on length).
    """
    tokens = {"access_token": ACCESS_TOKEN, "refresh_token": "abcdefghijkl", "expires_at": 4600}
    guess, other = "/" + ACCESS_TOKEN, "/" + os.urandom(len(ACCESS_TOKEN)).hex()[:len(ACCESS_TOKEN)]

    def sealed_length(next_path: str) -> int:
        return len(write_session({STORAGE_KEY: tokens, "flows": [{"next": next_path}]}, SECRET))

    assert sealed_length(guess) == sealed_length(other)


def test_the_sealed_cookie_round_trips_any_session(app):
    data = {"_flashes": [("success", "Signed in.")], "csrf_token": "c" * 40,
            STORAGE_KEY: {"access_token": ACCESS_TOKEN, "refresh_token": "r", "expires_at": 1}}
    assert read_session(write_session(data, SECRET), SECRET) == data


def test_a_cookie_older_than_the_session_lifetime_opens_nothing(monkeypatch):
    sealer = SealedSession([SECRET])
    cookie = sealer.dumps({"csrf_token": "c"})
    sealed_at = sealer.loads(cookie)[1]
    assert abs(sealed_at - time.time()) < 5  # the cookie's age counts from its sealing
    monkeypatch.setattr(time, "time", lambda: sealed_at + 3600 + 1)
    with pytest.raises(UnreadableCookie):
        sealer.loads(cookie, max_age=3600)
    assert sealer.loads(cookie, max_age=7200)[0] == {"csrf_token": "c"}


@pytest.mark.parametrize("value", ["", "AQ", "AQAAAA", "A" * 40, "AQ" + "A" * 37, "a=b", "é",
                                   "AQ" * 30 + "="])
def test_a_cookie_of_any_bytes_is_unreadable_not_an_error(value):
    with pytest.raises(UnreadableCookie):
        SealedSession([SECRET]).loads(value)


def test_a_session_written_back_unchanged_keeps_its_cookie(app):
    """A sealed cookie never repeats, so a needless rewrite would cost the next request."""
    interface = app.session_interface
    cookie = write_session({"csrf_token": "c", "_permanent": True}, SECRET)
    with app.test_request_context(
            headers={"Cookie": f"{interface.get_cookie_name(app)}={cookie}"}):
        opened = interface.open_session(app, request)
        opened.modified = True  # as when a view stores the same value again
        assert not interface.should_set_cookie(app, opened)
        opened["csrf_token"] = "d"
        assert interface.should_set_cookie(app, opened)
