"""The app with either generation of project key: publishable (sb_publishable_…) or anon JWT."""

from __future__ import annotations

import logging

import pytest
from supabase_auth.constants import STORAGE_KEY

import supabase_errors
from tests.helpers import Browser, csrf_token, move_app_clock

KEY_KINDS = ["publishable", "legacy-anon"]


def key_of(emulator, kind: str) -> str:
    return emulator.publishable_key if kind == "publishable" else emulator.anon_key


def tokens_of(client) -> dict:
    with client.session_transaction() as stored:
        return dict(stored.get(STORAGE_KEY) or {})


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_the_main_flow_works_with_either_key(make_app, emulator, github_account, monkeypatch,
                                             kind):
    """Sign in, /account, a refresh, linking GitLab, and signing out."""
    browser = Browser(make_app(SUPABASE_KEY=key_of(emulator, kind)).test_client(), emulator.url)
    client = browser.client
    try:
        assert browser.sign_in(github_account()).status_code == 302
        page = client.get("/account").get_data(as_text=True)
        assert "Linked identities" in page

        before = tokens_of(client)
        move_app_clock(monkeypatch, 3601)
        assert "Hello," in client.get("/").get_data(as_text=True)
        assert tokens_of(client)["refresh_token"] != before["refresh_token"]
        monkeypatch.undo()

        gitlab = github_account(provider="gitlab")
        consent = browser.start("/account/link/gitlab", data={"csrf_token": csrf_token(page)})
        assert browser.approve(gitlab, consent).headers["Location"] == "/account"
        page = client.get("/account").get_data(as_text=True)
        assert "<td>GitLab</td>" in page

        signed_out = client.post("/signout", data={"csrf_token": csrf_token(page)})
        assert signed_out.status_code == 302
        assert tokens_of(client) == {}
    finally:
        browser.close()


WRONG_KEYS = {
    "another-project-publishable": "sb_publishable_Zz9YyXxWwVvUuTtSsRrQq_0123456789ab",
    "another-project-anon-jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJhbm9uIn0."
        "c2lnbmVkLXdpdGgtYW5vdGhlci1wcm9qZWN0cy1zZWNyZXQ"),
}


@pytest.mark.parametrize("wrong", list(WRONG_KEYS))
def test_a_key_of_another_project_keeps_people_signed_in_and_says_what_to_check(
        make_app, browser, signed_in, monkeypatch, caplog, wrong):
    """After a key change gone wrong the gateway answers 401: a configuration error."""
    monkeypatch.setattr(supabase_errors, "_reported", set())
    misconfigured = make_app(SUPABASE_KEY=WRONG_KEYS[wrong]).test_client()
    misconfigured.set_cookie("session", browser.client.get_cookie("session").value)
    move_app_clock(monkeypatch, 61)  # due for a check with GET /user, which the gateway refuses
    with caplog.at_level(logging.ERROR):
        page = misconfigured.get("/")
    assert page.status_code == 200 and "Hello," in page.get_data(as_text=True)
    assert any("SUPABASE_KEY" in record.getMessage() for record in caplog.records)
    move_app_clock(monkeypatch, 3601)  # expired: nothing valid is left, so a 503, not a sign-out
    expired = misconfigured.get("/")
    assert expired.status_code == 503
    assert tokens_of(misconfigured)["refresh_token"] == tokens_of(browser.client)["refresh_token"]


def test_a_sign_in_with_a_key_of_another_project_is_a_503_page(make_app, emulator,
                                                                github_account):
    browser = Browser(make_app(SUPABASE_KEY=WRONG_KEYS["another-project-publishable"])
                      .test_client(), emulator.url)
    try:
        response = browser.sign_in(github_account())
    finally:
        browser.close()
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
