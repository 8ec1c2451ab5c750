"""The app through a signing-key rotation and a revocation of the old key, as teams do them."""

from __future__ import annotations

import httpx
import jwt
import pytest
from supabase_auth.constants import STORAGE_KEY

from tests.helpers import SITE_URL, Browser, move_app_clock

PEOPLE = 6
REVALIDATE = 60


@pytest.fixture
def rotating_emulator():
    """An emulator of its own: rotating keys must not touch the other tests' tokens."""
    from emulator.serve import start_background

    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL})
    yield running
    running.stop()


@pytest.fixture
def crowd(make_app, rotating_emulator):
    """PEOPLE browsers signed in to one app (one process, as a gunicorn worker would be)."""
    emulator = rotating_emulator
    app = make_app(SUPABASE_URL=emulator.url, SUPABASE_KEY=emulator.publishable_key,
                   GITHUB_API_URL=f"{emulator.url}/github/api/v3",
                   AUTH_REVALIDATE_SECONDS=REVALIDATE)
    browsers = [Browser(app.test_client(), emulator.url) for _ in range(PEOPLE)]
    try:
        for number, browser in enumerate(browsers):
            assert browser.sign_in(account(emulator, f"rotator{number}")).status_code == 302
        yield browsers
    finally:
        for browser in browsers:
            browser.close()


def account(emulator, login: str) -> str:
    response = httpx.post(f"{emulator.url}/github/_accounts", timeout=5, json={
        "login": login, "name": login.title(), "email": f"{login}@example.com",
        "verified": True})
    assert response.status_code in (200, 201)
    return login


def admin(emulator, method: str, path: str):
    key = emulator.secret_key
    response = httpx.request(method, f"{emulator.url}/auth/v1/admin/signing-keys{path}",
                             headers={"apikey": key}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def kid_of(browser: Browser) -> str:
    with browser.client.session_transaction() as stored:
        return jwt.get_unverified_header(stored[STORAGE_KEY]["access_token"])["kid"]


def pages(browsers: list[Browser]) -> list[tuple[int, bool]]:
    """Every person opens a page: (status, still signed in)."""
    results = []
    for browser in browsers:
        response = browser.client.get("/")
        results.append((response.status_code, "Hello," in response.get_data(as_text=True)))
    return results


def test_after_a_rotation_nobody_is_signed_out_and_old_tokens_still_work(
        crowd, rotating_emulator, monkeypatch):
    old = {kid_of(browser) for browser in crowd}
    admin(rotating_emulator, "POST", "/rotate")
    assert pages(crowd) == [(200, True)] * PEOPLE
    assert {kid_of(browser) for browser in crowd} == old  # no refresh was needed
    move_app_clock(monkeypatch, REVALIDATE + 1)  # GET /user accepts the previously used key
    assert pages(crowd) == [(200, True)] * PEOPLE
    assert {kid_of(browser) for browser in crowd} == old


def test_after_the_old_key_is_revoked_people_are_carried_onto_new_tokens(
        crowd, rotating_emulator, monkeypatch):
    [old] = {kid_of(browser) for browser in crowd}
    admin(rotating_emulator, "POST", "/rotate")
    admin(rotating_emulator, "POST", f"/{old}/revoke")
    # Within the check window the app still trusts what it verified; at the next check,
    # Supabase calls the token invalid and a refresh carries the person onto the new key.
    move_app_clock(monkeypatch, REVALIDATE + 1)
    assert pages(crowd) == [(200, True)] * PEOPLE
    new = {kid_of(browser) for browser in crowd}
    assert len(new) == 1 and old not in new


def test_a_new_process_after_the_revocation_refreshes_rather_than_signs_out(
        crowd, rotating_emulator, make_app):
    [old] = {kid_of(browser) for browser in crowd}
    admin(rotating_emulator, "POST", "/rotate")
    admin(rotating_emulator, "POST", f"/{old}/revoke")
    # A freshly started worker: its JWKS no longer lists the old key at all.
    fresh = make_app(SUPABASE_URL=rotating_emulator.url,
                     SUPABASE_KEY=rotating_emulator.publishable_key)
    for browser in crowd:
        browser.client = _same_cookie_on(fresh, browser)
    assert pages(crowd) == [(200, True)] * PEOPLE
    assert old not in {kid_of(browser) for browser in crowd}


def _same_cookie_on(app, browser: Browser):
    client = app.test_client()
    client.set_cookie("session", browser.client.get_cookie("session").value)
    return client


def test_the_account_page_right_after_a_revocation_refreshes_rather_than_signs_out(
        crowd, rotating_emulator):
    """/account asks Supabase for the user itself: an old token there is refreshed first."""
    [old] = {kid_of(browser) for browser in crowd}
    admin(rotating_emulator, "POST", "/rotate")
    admin(rotating_emulator, "POST", f"/{old}/revoke")
    for browser in crowd:
        response = browser.client.get("/account")
        assert response.status_code == 200 and "Linked identities" in response.get_data(
            as_text=True)
        assert kid_of(browser) != old
