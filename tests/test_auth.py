"""Sign-in, callback, sign-out and the current user, against the emulator over real HTTP."""

from __future__ import annotations

import html
import logging
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

import auth
from tests.helpers import SITE_URL, Browser, csrf_token, move_app_clock


def session_of(client) -> dict:
    with client.session_transaction() as sess:
        return dict(sess)




def test_home_signed_out_offers_github(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Sign in with GitHub" in page
    assert 'data-leaving-text="Redirecting to GitHub…"' in page


def test_signin_unknown_provider_is_404(client):
    response = client.get("/signin/myspace")
    assert response.status_code == 404
    assert "not available" in response.get_data(as_text=True)


def test_signin_redirects_to_supabase_with_pkce(client, emulator):
    response = client.get("/signin/github")
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == emulator.url
    assert location.path == "/auth/v1/authorize"
    query = parse_qs(location.query)
    assert query["provider"] == ["github"]
    assert query["code_challenge_method"] == ["s256"]
    assert len(query["code_challenge"][0]) == 43
    flows = session_of(client)[auth.FLOWS_KEY]
    assert len(flows) == 1 and len(flows[0]["verifier"]) >= 43
    # The flow's id comes back with the code, so the callback picks its verifier at once.
    assert query["redirect_to"] == [f"{SITE_URL}/callback?flow={flows[0]['id']}"]


def test_the_callback_renews_a_planted_session(client, browser, github_account):
    consent = browser.start()
    with client.session_transaction() as sess:
        sess["planted"] = "by someone else"
    assert browser.approve(github_account(), consent).status_code == 302
    session = session_of(client)
    assert "planted" not in session
    assert set(session) <= {STORAGE_KEY, "_flashes", "_permanent", "csrf_token",
                            auth.SIGNED_IN_KEY}


def test_a_link_to_sign_in_from_another_site_signs_nobody_out(client, signed_in):
    before = session_of(client)[STORAGE_KEY]
    assert client.get("/signin/github",
                      headers={"Referer": "https://evil.example/"}).status_code == 303
    assert session_of(client)[STORAGE_KEY] == before
    assert "Hello," in client.get("/").get_data(as_text=True)


def test_sign_in_round_trip_lands_signed_in(browser, client, github_account):
    login = github_account(name="Mona Lisa")
    response = browser.sign_in(login)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "Hello, Mona Lisa" in page
    assert f"{login}@example.com" in page
    assert "Signed in as Mona Lisa." in page
    assert 'action="/signout"' in page


def test_session_cookie_keeps_tokens_not_the_user(browser, client, github_account):
    browser.sign_in(github_account())
    stored = session_of(client)[STORAGE_KEY]
    assert set(stored) == {"access_token", "refresh_token", "expires_at", "provider_token",
                           "user_created_at", "app_metadata_digest"}
    # kept as GitHub gave it: the whole cookie is sealed (tests/test_flask_storage.py)
    assert stored["provider_token"].startswith("gho_")
    assert auth.FLOWS_KEY not in session_of(client)


@pytest.mark.parametrize("next_path", ["/account", "/account?tab=identities"])
def test_next_survives_the_round_trip(client, browser, github_account, next_path):
    consent = browser.start(f"/signin/github?{httpx.QueryParams({'next': next_path})}")
    response = browser.approve(github_account(), consent)
    assert response.headers["Location"] == next_path


@pytest.mark.parametrize("next_path", [
    "//evil.example", "/\\evil.example", "https://evil.example/", "javascript:alert(1)",
    "/\r\nSet-Cookie:x=1", "account", "/\tevil", "/ok\nLocation: https://evil.example",
])
def test_unsafe_next_is_ignored(client, browser, github_account, next_path):
    consent = browser.start("/signin/github?" + httpx.QueryParams({"next": next_path}).__str__())
    response = browser.approve(github_account(), consent)
    assert response.headers["Location"] == "/"


def test_login_required_sends_to_signin_with_next(client):
    response = client.get("/account?tab=x")
    assert response.status_code == 302
    assert response.headers["Location"] == "/signin?next=/account?tab%3Dx"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Please sign in to open that page." in page
    assert "/signin/github?next=/account?tab%3Dx" in page


def test_cancel_on_consent_page_explains(browser):
    response = browser.cancel()
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "Sign-in was cancelled" in page
    assert "Try again" in page


def test_banned_user_is_told_why(browser, github_account, admin):
    login = github_account()
    browser.sign_in(login)
    user_id = decode_jwt(session_of(browser.client)[STORAGE_KEY]["access_token"])[
        "payload"]["sub"]
    assert admin.put(f"/admin/users/{user_id}", json={"ban_duration": "24h"}).status_code == 200
    browser.client.post("/signout", data={"csrf_token": csrf_token(
        browser.client.get("/").get_data(as_text=True))})
    response = browser.sign_in(login)
    assert response.status_code == 403
    assert "suspended" in response.get_data(as_text=True)


def test_unverified_email_is_explained(browser, github_account):
    response = browser.sign_in(github_account(verified=False))
    assert response.status_code == 403
    assert "not verified" in response.get_data(as_text=True)


def test_callback_without_verifier_is_a_clear_400(make_app, browser, github_account):
    consent = browser.start()
    other_browser = make_app().test_client()  # the link opened in another browser
    browser.client = other_browser
    response = browser.approve(github_account(), consent)
    assert response.status_code == 400
    assert "another browser" in response.get_data(as_text=True)


def test_callback_with_a_wrong_verifier_is_a_clear_400(client, browser, github_account):
    consent = browser.start()
    with client.session_transaction() as sess:
        sess[auth.FLOWS_KEY] = [{**sess[auth.FLOWS_KEY][0], "verifier": "x" * 50}]
    response = browser.approve(github_account(), consent)
    assert response.status_code == 400
    assert "another sign-in attempt" in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["", "code=", "code=" + "a" * 300, "code=not-a-code"])
def test_callback_garbage_is_a_4xx_page(client, query):
    client.get("/signin/github")
    response = client.get(f"/callback?{query}")
    assert response.status_code == 400
    assert "Try again" in response.get_data(as_text=True)


def test_second_hit_on_the_callback_lands_signed_in(client, browser, github_account):
    assert browser.sign_in(github_account()).status_code == 302
    again = client.get(browser.last_callback)
    assert again.status_code == 302 and again.headers["Location"] == "/"
    assert "Hello," in client.get("/").get_data(as_text=True)


def test_two_tabs_signing_in_at_once_both_land(client, browser, github_account):
    login = github_account()
    consent_a = browser.start()
    consent_b = browser.start()
    assert browser.approve(login, consent_a).status_code == 302
    assert browser.approve(login, consent_b).status_code == 302
    assert "Hello," in client.get("/").get_data(as_text=True)


def test_code_arriving_at_home_is_handled_and_logged(make_app, emulator, github_account, caplog):
    # A callback URL the project does not allow: Supabase falls back to its SITE_URL, "/".
    app = make_app(SITE_URL="http://localhost:5999")  # not on the project's allow-list
    browser = Browser(app.test_client(), emulator.url)
    try:
        with caplog.at_level(logging.WARNING, logger="app"):
            response = browser.sign_in(github_account())
        page = browser.client.get("/").get_data(as_text=True)
    finally:
        browser.close()
    assert browser.last_callback.startswith("/?code=")
    assert response.status_code == 302
    assert "http://localhost:5999/callback?flow=* to the Redirect URLs" in caplog.text
    assert "Hello," in page


def test_sign_out_clears_the_session(client, signed_in):
    page = client.get("/").get_data(as_text=True)
    response = client.post("/signout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert STORAGE_KEY not in session_of(client)
    assert "You have been signed out." in client.get("/").get_data(as_text=True)


def test_sign_out_needs_csrf(client, signed_in):
    response = client.post("/signout")
    assert response.status_code == 400
    assert STORAGE_KEY in session_of(client)


def test_sign_out_by_get_is_not_allowed(client, signed_in):
    assert client.get("/signout").status_code == 405
    assert STORAGE_KEY in session_of(client)


@pytest.mark.parametrize("scope, this_browser_sees", [
    ("global", "You have been signed out everywhere: every browser and device"),
    ("others", "Signed out of your other devices. This one stays signed in."),
])
def test_sign_out_scopes_end_other_browsers(make_app, client, browser, github_account, scope,
                                            this_browser_sees):
    login = github_account()
    browser.sign_in(login)
    other = Browser(make_app(AUTH_REVALIDATE_SECONDS=0).test_client(), browser.emulator_url)
    try:
        other.sign_in(login)
        page = client.get("/account").get_data(as_text=True)
        response = client.post("/signout", data={"csrf_token": csrf_token(page), "scope": scope})
        here = client.get(response.headers["Location"]).get_data(as_text=True)
        after = other.client.get("/").get_data(as_text=True)
    finally:
        other.close()
    assert this_browser_sees in here
    assert ("Sign in with GitHub" in here) is (scope == "global")
    assert "Sign in with GitHub" in after
    assert "Your session has ended" in after


@pytest.mark.parametrize("scope", ["global", "others"])
def test_signing_out_elsewhere_unreached_changes_nothing_and_says_so(make_app, browser,
                                                                      github_account, scope):
    browser.sign_in(github_account())
    page = browser.client.get("/").get_data(as_text=True)
    cookie = browser.client.get_cookie("session")
    down = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(refuse)).test_client()
    down.set_cookie("session", cookie.value)
    response = down.post("/signout", data={"csrf_token": csrf_token(page), "scope": scope})
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    assert STORAGE_KEY in session_of(down)
    with down.session_transaction() as sess:
        told = " ".join(message for _, message in sess["_flashes"])
    assert "Nothing changed" in told
    assert "You are still signed in everywhere" in told


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize("change, message", [
    ({"ban_duration": "24h"}, "suspended"),
    (None, "no longer exists"),
])
def test_dashboard_changes_sign_the_person_out_on_revalidation(
        make_app, emulator, admin, github_account, change, message):
    app = make_app(AUTH_REVALIDATE_SECONDS=0)
    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        user_id = decode_jwt(session_of(browser.client)[STORAGE_KEY]["access_token"])[
            "payload"]["sub"]
        if change is None:
            assert admin.delete(f"/admin/users/{user_id}").status_code == 200
        else:
            assert admin.put(f"/admin/users/{user_id}", json=change).status_code == 200
        page = browser.client.get("/").get_data(as_text=True)
    finally:
        browser.close()
    assert message in page
    assert "Sign in with GitHub" in page


def test_role_set_in_the_dashboard_reaches_the_app(make_app, emulator, admin, github_account):
    browser = Browser(make_app(AUTH_REVALIDATE_SECONDS=0).test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        user_id = decode_jwt(session_of(browser.client)[STORAGE_KEY]["access_token"])[
            "payload"]["sub"]
        admin.put(f"/admin/users/{user_id}", json={"app_metadata": {"role": "editor"}})
        page = browser.client.get("/account").get_data(as_text=True)
    finally:
        browser.close()
    assert "<dt>Role</dt><dd>editor</dd>" in page


def test_no_revalidation_inside_the_window(client, signed_in):
    before = session_of(client)[STORAGE_KEY]["refresh_token"]
    client.get("/")
    assert session_of(client)[STORAGE_KEY]["refresh_token"] == before


def test_expired_token_is_refreshed_before_the_view(client, signed_in, monkeypatch):
    before = session_of(client)[STORAGE_KEY]
    move_app_clock(monkeypatch, 3601)
    response = client.get("/")
    after = session_of(client)[STORAGE_KEY]
    assert response.status_code == 200 and "Hello," in response.get_data(as_text=True)
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]


def test_unreachable_supabase_keeps_the_session(make_app, browser, signed_in, monkeypatch):
    tokens = session_of(browser.client)[STORAGE_KEY]
    down = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(refuse)).test_client()
    down.set_cookie("session", browser.client.get_cookie("session").value)
    move_app_clock(monkeypatch, 3601)
    response = down.get("/")
    assert response.status_code == 503
    assert "try again" in response.get_data(as_text=True).lower()
    assert session_of(down)[STORAGE_KEY] == tokens


def test_try_again_after_a_failed_exchange_keeps_the_code(make_app, browser, github_account):
    consent = browser.start()
    cookie = browser.client.get_cookie("session").value
    browser.client = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(refuse)).test_client()
    browser.client.set_cookie("session", cookie)
    response = browser.approve(github_account(), consent)
    assert response.status_code == 503
    assert f'href="{html.escape(browser.last_callback)}"' in response.get_data(as_text=True)


def test_account_lists_identities(client, signed_in):
    response = client.get("/account")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<td>GitHub</td>" in page
    assert f"<td>{signed_in}</td>" in page
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("cookie", ["garbage", "eyJ4IjoxfQ.bad.signature", "a" * 4000, ""])
def test_tampered_cookie_reads_as_signed_out_and_is_cleared(client, cookie):
    client.set_cookie("session", cookie)
    response = client.get("/")
    assert response.status_code == 200
    assert "Sign in with GitHub" in response.get_data(as_text=True)
    if cookie:
        assert "session=;" in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("stored", [
    "not a dict",
    {"access_token": "a.b.c", "refresh_token": "r", "expires_at": 1},
    {"access_token": 1, "refresh_token": "r", "expires_at": 1},
])
def test_well_signed_cookie_with_bad_tokens_is_signed_out(client, stored):
    with client.session_transaction() as sess:
        sess[STORAGE_KEY] = stored
    response = client.get("/")
    assert response.status_code == 200
    assert "Sign in with GitHub" in response.get_data(as_text=True)
    assert STORAGE_KEY not in session_of(client)


def test_two_users_never_see_each_other(make_app, emulator, github_account):
    app = make_app()
    first, second = (Browser(app.test_client(), emulator.url) for _ in range(2))
    try:
        first.sign_in(github_account(name="Alice Example"))
        second.sign_in(github_account(name="Bob Example"))
        first_page = first.client.get("/").get_data(as_text=True)
        second_page = second.client.get("/").get_data(as_text=True)
    finally:
        first.close()
        second.close()
    assert "Alice Example" in first_page and "Bob Example" not in first_page
    assert "Bob Example" in second_page and "Alice Example" not in second_page


def test_signing_out_everywhere_needs_a_recent_sign_in(client, browser, github_account,
                                                       monkeypatch):
    login = github_account()
    browser.sign_in(login)
    token = csrf_token(client.get("/account/sign-out-everywhere").get_data(as_text=True))
    move_app_clock(monkeypatch, client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"] + 1)
    asked = client.post("/signout", data={"csrf_token": token, "scope": "global"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Confirm it is you" in page
    assert "Hello," in client.get("/").get_data(as_text=True)  # still signed in everywhere
    again = html.unescape(re.search(r'href="(/signin/github\?next=[^"]+)"', page).group(1))
    monkeypatch.undo()
    back = browser.approve(login, browser.start(again))
    assert back.headers["Location"] == "/account/sign-out-everywhere"
    token = csrf_token(client.get("/account/sign-out-everywhere").get_data(as_text=True))
    done = client.post("/signout", data={"csrf_token": token, "scope": "global"})
    assert done.status_code == 302
    assert "Sign in with GitHub" in client.get(done.headers["Location"]).get_data(as_text=True)


def test_current_user_comes_through_flask_logins_public_request_loader(client, signed_in):
    from flask_login import user_loaded_from_request

    loaded = []
    with user_loaded_from_request.connected_to(lambda _app, user: loaded.append(user),
                                               client.application):
        assert "Hello," in client.get("/").get_data(as_text=True)
    assert len(loaded) == 1 and loaded[0].is_authenticated


def test_the_favicon_is_served_and_linked(client):
    with client.get("/favicon.ico") as icon:
        assert icon.status_code == 200 and icon.data[:4] == b"\x00\x00\x01\x00"
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


def test_someone_elses_sign_in_does_not_inherit_the_github_provider_token(
        client, browser, github_account):
    browser.sign_in(github_account())
    assert _sealed_provider_token(client) is not None
    # Another tab of the same browser signs in with GitLab, as a different person.
    other = github_account(provider="gitlab")
    assert browser.approve(other, browser.start("/signin/gitlab")).status_code == 302
    assert _sealed_provider_token(client) is None


def _sealed_provider_token(client) -> str | None:
    return session_of(client)[STORAGE_KEY].get("provider_token")


def test_signing_out_other_devices_needs_a_recent_sign_in(client, browser, make_app, emulator,
                                                          github_account, monkeypatch):
    """Issue 17: scope=others signed the owner out everywhere while the stale session stayed."""
    login = github_account()
    browser.sign_in(login)
    other = Browser(make_app().test_client(), emulator.url)  # the owner's other device
    try:
        other.sign_in(login)
        token = csrf_token(client.get("/account").get_data(as_text=True))
        move_app_clock(monkeypatch, client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"] + 1)
        asked = client.post("/signout", data={"csrf_token": token, "scope": "others"})
        page = asked.get_data(as_text=True)
        assert asked.status_code == 200 and "Confirm it is you" in page
        assert "To sign out your other devices, please sign in again" in page
        header = page[page.index("<header"):page.index("</header>")]
        assert ">Account</a>" in header and ">Sign in</a>" not in header
        monkeypatch.undo()
        other.client.application.config["AUTH_REVALIDATE_SECONDS"] = 0
        assert "Hello," in other.client.get("/").get_data(as_text=True)  # still signed in
        again = html.unescape(re.search(r'href="(/signin/github\?next=[^"]+)"', page).group(1))
        assert browser.approve(login, browser.start(again)).headers["Location"] == "/account"
        token = csrf_token(client.get("/account").get_data(as_text=True))
        done = client.post("/signout", data={"csrf_token": token, "scope": "others"})
        assert done.headers["Location"] == "/account"
        assert "Hello," not in other.client.get("/").get_data(as_text=True)
    finally:
        other.close()


def test_the_recent_sign_in_window_is_a_setting(make_app, emulator, github_account,
                                                monkeypatch):
    app = make_app(AUTH_RECENT_SIGN_IN_SECONDS=120)
    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        client = browser.client
        token = csrf_token(client.get("/account/sign-out-everywhere").get_data(as_text=True))
        move_app_clock(monkeypatch, 121)
        asked = client.post("/signout", data={"csrf_token": token, "scope": "global"})
        assert "more than 2 minutes since you last did" in " ".join(
            asked.get_data(as_text=True).split())
        move_app_clock(monkeypatch, 60)
        done = client.post("/signout", data={"csrf_token": token, "scope": "global"})
        assert done.headers["Location"] == "/"
    finally:
        browser.close()


def test_a_recent_sign_in_is_recorded_by_the_callback_not_read_from_amr(client, signed_in):
    with client.session_transaction() as stored:
        record = stored[auth.SIGNED_IN_KEY]
        claims = decode_jwt(stored[STORAGE_KEY]["access_token"])["payload"]
    assert record["session"] == claims["session_id"]
    assert abs(record["at"] - time.time()) < 60
