"""The account page: identities, linking and unlinking, GitHub data, sessions elsewhere."""

from __future__ import annotations

import html
import re
import time

import httpx
import pytest

import auth
from tests.helpers import SITE_URL, Browser, csrf_token, move_app_clock, moving_on


def account_page(client) -> str:
    response = client.get("/account")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


@pytest.fixture
def link(github_account):
    """Press "Link <provider>" on /account and approve as a new account of that provider."""

    def press(browser: Browser, provider: str):
        login = github_account(provider=provider)
        token = csrf_token(account_page(browser.client))
        consent = browser.start(f"/account/link/{provider}", data={"csrf_token": token})
        return browser.approve(login, consent)

    return press


def identity_ids(page: str) -> list[str]:
    return re.findall(r'/account/unlink/([0-9a-f-]{36})"', page)


def test_account_shows_the_github_profile(client, signed_in):
    page = account_page(client)
    assert f">{signed_in}</a>" in page
    assert re.search(r"<dt>Public repositories</dt><dd>\d+</dd>", page)


def test_linking_another_provider(client, browser, signed_in, link):
    response = link(browser, "gitlab")
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    page = account_page(client)
    assert "GitLab is now linked to your account." in page
    assert "<td>GitLab</td>" in page and "<td>GitHub</td>" in page
    assert "Link GitLab" not in page and "Link Google" in page
    # The GitHub token is kept: the GitLab exchange returned GitLab's token, not GitHub's.
    assert re.search(r"<dt>Public repositories</dt><dd>\d+</dd>", page)


def test_linking_when_the_project_has_manual_linking_off(make_app, github_account):
    from emulator.serve import start_background

    emulator = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL,
                                 "PROVIDERS": "github,gitlab", "MANUAL_LINKING": False})
    browser = Browser(make_app(SUPABASE_URL=emulator.url, SUPABASE_KEY=emulator.anon_key,
                               AUTH_PROVIDERS="github,gitlab").test_client(), emulator.url)
    try:
        browser.sign_in("octocat")
        token = csrf_token(account_page(browser.client))
        response = browser.client.post("/account/link/gitlab", data={"csrf_token": token})
        page = account_page(browser.client)
        with browser.client.session_transaction() as stored:
            leftovers = [key for key in stored if key.endswith("-code-verifier")]
    finally:
        browser.close()
        emulator.stop()
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    assert "Manual Linking" in page
    assert leftovers == []  # the failed call's PKCE verifier does not stay in the cookie


def test_unlink_asks_first_then_unlinks(client, browser, signed_in, link):
    link(browser, "gitlab")
    page = account_page(client)
    confirmations = {i: client.get(f"/account/unlink/{i}").get_data(as_text=True)
                     for i in identity_ids(page)}
    gitlab_id = next(i for i, text in confirmations.items() if "Unlink GitLab?" in text)
    confirm = client.get(f"/account/unlink/{gitlab_id}").get_data(as_text=True)
    response = client.post(f"/account/unlink/{gitlab_id}",
                           data={"csrf_token": csrf_token(confirm)})
    assert response.status_code == 302
    page = account_page(client)
    assert "GitLab is no longer linked." in page
    assert "<td>GitLab</td>" not in page and "<td>GitHub</td>" in page


def test_the_last_identity_cannot_be_unlinked(client, signed_in, admin):
    page = account_page(client)
    assert identity_ids(page) == []  # no Unlink link next to the only identity
    user_id = _user_id_of(client)
    only = admin.get(f"/admin/users/{user_id}").json()["identities"][0]["identity_id"]
    assert "only way to sign in" in client.get(f"/account/unlink/{only}").get_data(as_text=True)
    response = client.post(f"/account/unlink/{only}", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert "only way to sign in" in account_page(client)
    assert len(admin.get(f"/admin/users/{user_id}").json()["identities"]) == 1


def test_unlinking_an_unknown_identity_is_404(client, signed_in):
    token = csrf_token(account_page(client))
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/account/unlink/{unknown}").status_code == 404
    assert client.post(f"/account/unlink/{unknown}", data={"csrf_token": token}).status_code == 404


def _user_id_of(client) -> str:
    from supabase_auth.constants import STORAGE_KEY
    from supabase_auth.helpers import decode_jwt

    with client.session_transaction() as stored:
        return decode_jwt(stored[STORAGE_KEY]["access_token"])["payload"]["sub"]


def test_a_revoked_github_token_offers_reconnect(client, browser, signed_in, emulator):
    config = emulator.app.config
    token = _provider_token_of(client)
    revoked = httpx.request(
        "DELETE", f"{emulator.url}/github/applications/{config['GITHUB_CLIENT_ID']}/token",
        auth=(config["GITHUB_CLIENT_ID"], config["GITHUB_CLIENT_SECRET"]),
        json={"access_token": token}, timeout=5)
    assert revoked.status_code == 204
    page = account_page(client)
    assert "Reconnect GitHub" in page
    consent = browser.start("/signin/github?next=/account")
    assert browser.approve(signed_in, consent).headers["Location"] == "/account"
    assert re.search(r"<dt>Public repositories</dt><dd>\d+</dd>", account_page(client))


def _provider_token_of(client) -> str:
    from flask_storage import provider_token

    cookie = f"session={client.get_cookie('session').value}"
    with client.application.test_request_context(headers={"Cookie": cookie}):
        return provider_token()


def test_a_provider_disabled_in_the_project_is_explained(make_app):
    client = make_app(AUTH_PROVIDERS="github,twitter").test_client()
    response = client.get("/signin/twitter")
    assert response.status_code == 404
    assert "not enabled for this site" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/account", "/account/unlink/x", "/account/sign-out-everywhere"])
def test_account_pages_need_a_signed_in_person(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin?next=/account")


def test_linking_starts_only_from_a_post_with_the_csrf_token(client, signed_in):
    assert client.get("/account/link/gitlab").status_code == 405
    refused = client.post("/account/link/gitlab")
    assert refused.status_code == 400
    with client.session_transaction() as stored:
        assert not any(key.endswith("-code-verifier") for key in stored)
        assert auth.FLOWS_KEY not in stored


def test_linking_moves_on_to_the_provider_from_a_page_not_a_redirect(client, signed_in,
                                                                     emulator):
    """Chrome applies CSP form-action to every redirect after a POST, the provider's included."""
    response = client.post("/account/link/gitlab",
                           data={"csrf_token": csrf_token(account_page(client))})
    assert response.status_code == 200
    assert moving_on(response).startswith(f"{emulator.url}/gitlab/oauth/authorize?")
    assert "Continue to GitLab" in response.get_data(as_text=True)


def test_unlinking_needs_a_recent_sign_in(client, browser, signed_in, link, monkeypatch):
    link(browser, "gitlab")
    gitlab_id = next(i for i in identity_ids(account_page(client))
                     if "Unlink GitLab?" in client.get(f"/account/unlink/{i}").get_data(
                         as_text=True))
    confirm = client.get(f"/account/unlink/{gitlab_id}").get_data(as_text=True)
    move_app_clock(monkeypatch, client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"] + 1)
    asked = client.post(f"/account/unlink/{gitlab_id}", data={"csrf_token": csrf_token(confirm)})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Confirm it is you" in page
    assert "<td>GitLab</td>" in account_page(client)  # nothing unlinked yet
    # Signing in again (here, as the same person) comes back to finish the action.
    again = re.search(r'href="(/signin/github\?next=[^"]+)"', page).group(1)
    monkeypatch.undo()
    back = browser.approve(signed_in, browser.start(html.unescape(again)))
    assert back.headers["Location"] == f"/account/unlink/{gitlab_id}"
    confirm = client.get(back.headers["Location"]).get_data(as_text=True)
    client.post(f"/account/unlink/{gitlab_id}", data={"csrf_token": csrf_token(confirm)})
    assert "<td>GitLab</td>" not in account_page(client)


def test_a_failed_link_leaves_no_pkce_verifier(make_app, browser, signed_in):
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    down = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(refuse)).test_client()
    down.set_cookie("session", browser.client.get_cookie("session").value)
    token = csrf_token(browser.client.get("/").get_data(as_text=True))
    with down.session_transaction() as stored:
        stored["csrf_token"] = _session_csrf(browser.client)
    response = down.post("/account/link/gitlab", data={"csrf_token": token})
    assert response.status_code == 503
    with down.session_transaction() as stored:
        assert not any(key.endswith("-code-verifier") for key in stored)


def _session_csrf(client) -> str:
    with client.session_transaction() as stored:
        return stored["csrf_token"]


def _age_the_sign_in(client, seconds: int) -> None:
    """Make the app's record of the last sign-in ``seconds`` old (the token and its amr stay)."""
    import time

    with client.session_transaction() as stored:
        stored[auth.SIGNED_IN_KEY] = {**stored[auth.SIGNED_IN_KEY],
                                      "at": int(time.time()) - seconds}


def _gitlab_identity(client) -> str:
    return next(i for i in identity_ids(account_page(client))
                if "Unlink GitLab?" in client.get(f"/account/unlink/{i}").get_data(as_text=True))


def test_linking_needs_a_recent_sign_in(client, browser, signed_in, link, monkeypatch):
    window = client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"]
    move_app_clock(monkeypatch, window + 1)
    token = csrf_token(account_page(client))
    asked = client.post("/account/link/gitlab", data={"csrf_token": token})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Confirm it is you" in page
    assert "To link GitLab, please sign in again" in page
    with client.session_transaction() as stored:
        assert auth.FLOWS_KEY not in stored  # nothing started at Supabase
    again = html.unescape(re.search(r'href="(/signin/github\?next=[^"]+)"', page).group(1))
    monkeypatch.undo()
    assert browser.approve(signed_in, browser.start(again)).headers["Location"] == "/account"
    assert link(browser, "gitlab").headers["Location"] == "/account"
    assert "<td>GitLab</td>" in account_page(client)


def test_a_fresh_amr_entry_is_not_a_recent_sign_in(client, browser, signed_in, link):
    """Only the app's own record counts: the token's amr says "oauth, just now"."""
    link(browser, "gitlab")
    gitlab_id = _gitlab_identity(client)
    _age_the_sign_in(client, client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"] + 1)
    confirm = client.get(f"/account/unlink/{gitlab_id}").get_data(as_text=True)
    asked = client.post(f"/account/unlink/{gitlab_id}", data={"csrf_token": csrf_token(confirm)})
    assert "Confirm it is you" in asked.get_data(as_text=True)
    assert "<td>GitLab</td>" in account_page(client)


def test_linking_does_not_renew_the_recent_sign_in(client, browser, signed_in, link,
                                                   monkeypatch):
    """Issue 17: a link wrote a fresh oauth entry in amr, which then allowed unlinking."""
    window = client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"]
    _age_the_sign_in(client, window - 100)  # still recent enough to link
    link(browser, "gitlab")
    gitlab_id = _gitlab_identity(client)
    confirm = client.get(f"/account/unlink/{gitlab_id}").get_data(as_text=True)
    move_app_clock(monkeypatch, 150)  # the sign-in is now older than the window; the link not
    asked = client.post(f"/account/unlink/{gitlab_id}", data={"csrf_token": csrf_token(confirm)})
    assert "Confirm it is you" in asked.get_data(as_text=True)
    monkeypatch.undo()
    assert "<td>GitLab</td>" in account_page(client)


def test_a_recent_sign_in_of_another_session_does_not_count(client, signed_in):
    """The record names the Supabase session it was made for."""
    page = account_page(client)
    with client.session_transaction() as stored:
        stored[auth.SIGNED_IN_KEY] = {**stored[auth.SIGNED_IN_KEY], "session": "another"}
    asked = client.post("/account/link/gitlab", data={"csrf_token": csrf_token(page)})
    assert "Confirm it is you" in asked.get_data(as_text=True)


# --- while Supabase cannot be reached ---------------------------------------------------------


@pytest.fixture
def network():
    from tests.test_faults import Blackhole, FaultyNetwork

    hole = Blackhole()
    faulty = FaultyNetwork(hole.port)
    yield faulty
    faulty.close()
    hole.close()


def words(page: str) -> str:
    """The page with its whitespace runs made single spaces, as a person reads it."""
    return " ".join(page.split())


@pytest.fixture
def unreachable(make_app, network, browser, signed_in):
    """A client of an app whose GET /user cannot reach Supabase, signed in as ``signed_in``."""
    client = make_app(SUPABASE_TRANSPORT=network, SUPABASE_TIMEOUT=0.5).test_client()
    client.set_cookie("session", browser.client.get_cookie("session").value)
    return client


@pytest.mark.parametrize("fault", ["refused", "slow", "503", "502-html", "malformed-json"])
def test_account_is_served_from_the_token_while_supabase_is_unreachable(
        unreachable, network, signed_in, fault):
    network.faults["user"] = fault
    response = unreachable.get("/account")
    page = words(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "Some details of your account could not be loaded" in page
    assert f"<h1 id=\"account-title\">{signed_in.title()}</h1>" in page
    assert f"<dd>{signed_in}@example.com</dd>" in page
    assert "<li>GitHub</li>" in page
    assert "<dt>Last sign-in</dt><dd>Could not be loaded</dd>" in page
    assert re.search(r"<dt>Member since</dt><dd>\d\d \w+ \d{4}", page)


def test_account_actions_that_need_supabase_say_they_are_unavailable(unreachable, network):
    network.faults["user"] = "refused"
    page = words(unreachable.get("/account").get_data(as_text=True))
    assert "Linking and unlinking are unavailable" in page
    assert "Adding or removing one is" in page
    assert "Signing out of other devices, or everywhere, is unavailable" in page
    assert "/account/link/" not in page and "/account/unlink/" not in page
    assert 'value="others"' not in page and "/account/sign-out-everywhere" not in page
    assert 'action="/signout"' in page  # signing out here still works


def test_account_keeps_showing_the_github_profile_while_supabase_is_unreachable(
        unreachable, network, signed_in):
    network.faults["user"] = "refused"
    page = unreachable.get("/account").get_data(as_text=True)
    assert f">{signed_in}</a>" in page  # GitHub's API is not Supabase


def test_account_during_the_back_off_asks_supabase_nothing(unreachable, network):
    network.faults["user"] = "slow"
    unreachable.get("/account")
    network.calls.clear()
    response = unreachable.get("/account")
    assert response.status_code == 200
    assert "could not be loaded" in response.get_data(as_text=True)
    assert "user" not in network.calls


def test_account_is_whole_again_once_supabase_answers(unreachable, network):
    network.faults["user"] = "refused"
    unreachable.get("/account")
    network.faults.clear()
    time.sleep(1.1)  # the back-off's first pause
    page = unreachable.get("/account").get_data(as_text=True)
    assert "could not be loaded" not in page
    assert "/account/sign-out-everywhere" in page


def test_account_from_the_token_shows_the_two_factor_level(make_app, network, browser, signed_in):
    from tests.helpers import set_up_authenticator

    set_up_authenticator(browser.client)
    client = make_app(SUPABASE_TRANSPORT=network).test_client()
    client.set_cookie("session", browser.client.get_cookie("session").value)
    network.faults["user"] = "refused"
    page = words(client.get("/account").get_data(as_text=True))
    assert "On: 1 authenticator app. This session is verified with a code." in page


def test_unlinking_during_the_back_off_is_unavailable_at_once(unreachable, network):
    network.faults["user"] = "slow"
    unreachable.get("/account")
    started = time.monotonic()
    response = unreachable.get("/account/unlink/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 503
    assert time.monotonic() - started < 0.5  # no call: SUPABASE_TIMEOUT is 0.5 s
    assert "You are still signed in" in response.get_data(as_text=True)
