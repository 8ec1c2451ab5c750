"""Passkeys in the app, with the software authenticator against the emulator's passkey API:
signing in (one token-issuing call, none to GitHub), every refusal's page, adding, renaming and
removing on /account, the two-factor rule, the enrolment offer, and PASSKEYS_ENABLED."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

import passkeys
from tests.helpers import (
    SITE_URL,
    Browser,
    csrf_token,
    move_app_clock,
    set_up_authenticator,
)
from tests.webauthn_authenticator import Authenticator

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ORIGIN = "http://localhost:5000"  # the site as the browser sees it (WebAuthn needs a name)
TOKEN_ISSUING = ("/auth/v1/token", "/auth/v1/passkeys/authentication/verify")


class Clock:
    """The emulator's CLOCK: real time plus an offset a test moves (and the fixture resets)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Recorder(httpx.BaseTransport):
    """The app's way to Supabase: every call recorded; a path can be given a canned answer
    (a status and JSON body) or be unreachable."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.calls: list[httpx.Request] = []
        self.answers: dict[str, tuple[int, dict] | str] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.answers.get(request.url.path)
        if answer == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if answer is not None:
            status, body = answer
            # As Supabase answers: the API version says the error code is in "code".
            return httpx.Response(status, json=body, request=request,
                                  headers={"X-Supabase-Api-Version": "2024-01-01"})
        return self.real.handle_request(request)

    def close(self) -> None:
        """The app closes its HTTP client, and with it this transport's connections."""
        self.real.close()

    def paths(self, *prefixes: str) -> list[str]:
        return [r.url.path for r in self.calls if r.url.path.startswith(prefixes)]


@pytest.fixture(scope="module")
def emulator_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def emulator(emulator_clock):
    """This module's emulator: passkeys on for the site's origin, a movable clock."""
    from emulator.serve import start_background

    running = start_background({
        "DATABASE": ":memory:", "SITE_URL": SITE_URL, "PROVIDERS": "github,gitlab",
        "CLOCK": emulator_clock, "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000,
        "MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY": 1_000_000_000, "RATE_LIMIT_PASSKEY": 1_000_000,
        "PASSKEY_ENABLED": True, "WEBAUTHN_RP_ID": "localhost",
        "WEBAUTHN_RP_DISPLAY_NAME": "Flask + Supabase Auth", "WEBAUTHN_RP_ORIGINS": ORIGIN})
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def real_time(emulator_clock):
    yield
    emulator_clock.offset = 0.0


@pytest.fixture
def network() -> Recorder:
    return Recorder()


@pytest.fixture
def app(make_app, network):
    return make_app(SUPABASE_TRANSPORT=network)


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(ORIGIN)


# --- what a browser does -------------------------------------------------------------------


def token_of(client, path: str = "/account") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def registration_options(client, token: str):
    return client.post("/account/passkeys/options", json={}, headers={"X-CSRFToken": token})


def add_passkey(client, authenticator: Authenticator, **create) -> httpx.Response:
    """Press "Add a passkey" on /account and approve; the app's answer to the form."""
    token = token_of(client)
    answer = registration_options(client, token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    credential = authenticator.create(answer.get_json()["options"], **create)
    return client.post("/account/passkeys",
                       data={"csrf_token": token, "credential": json.dumps(credential)})


def sign_in_options(client) -> tuple[str, dict]:
    token = token_of(client, "/")
    answer = client.post("/passkeys/signin/options", json={}, headers={"X-CSRFToken": token})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return token, answer.get_json()["options"]


def post_assertion(client, token: str, assertion: dict, next_path: str | None = None):
    data = {"csrf_token": token, "credential": json.dumps(assertion)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/passkeys/signin", data=data)


def sign_in_with_passkey(client, authenticator: Authenticator, next_path: str | None = None,
                         **get):
    token, options = sign_in_options(client)
    return post_assertion(client, token, authenticator.get(options, **get), next_path)


def sign_out(client) -> None:
    response = client.post("/signout", data={"csrf_token": token_of(client, "/")})
    assert response.status_code == 302


def claims_of(client) -> dict:
    with client.session_transaction() as stored:
        tokens = stored.get(STORAGE_KEY)
    return decode_jwt(tokens["access_token"])["payload"] if tokens else {}


def text(response) -> str:
    return response.get_data(as_text=True)


def sign_in_with_github(client, emulator, login: str) -> None:
    """Another browser (its own client) signs in with GitHub."""
    browser = Browser(client, emulator.url)
    try:
        assert browser.sign_in(login).status_code == 302
    finally:
        browser.close()


def passkey_ids(client) -> list[str]:
    return re.findall(r"/account/passkeys/([0-9a-f-]{36})/remove", text(client.get("/account")))


@pytest.fixture
def with_passkey(client, signed_in, authenticator):
    """A person who signed in with GitHub and added a passkey, then signed out."""
    added = add_passkey(client, authenticator)
    assert added.status_code == 302, text(added)
    assert "Passkey added" in text(client.get("/account"))
    sign_out(client)
    return signed_in


# --- signing in ----------------------------------------------------------------------------


def test_sign_in_with_a_passkey_takes_one_token_call_and_none_to_github(
        client, with_passkey, authenticator, network):
    network.calls.clear()
    response = sign_in_with_passkey(client, authenticator)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert f"Hello, {with_passkey.title()}" in text(home)
    assert f"Signed in as {with_passkey.title()}." in text(home)
    assert len(network.paths(*TOKEN_ISSUING)) == 1
    assert network.paths("/github") == [] and network.paths("/auth/v1/authorize") == []
    claims = claims_of(client)
    assert claims["aal"] == "aal1" and [a["method"] for a in claims["amr"]] == ["passkey"]


def test_calls_carry_the_publishable_key_and_the_persons_address(
        client, with_passkey, authenticator, network, emulator):
    network.calls.clear()
    sign_in_with_passkey(client, authenticator)
    calls = [r for r in network.calls if r.url.path.startswith("/auth/v1/passkeys/")]
    assert [r.url.path for r in calls] == ["/auth/v1/passkeys/authentication/options",
                                           "/auth/v1/passkeys/authentication/verify"]
    for request in calls:
        assert request.headers["apikey"] == emulator.publishable_key
        assert request.headers["Sb-Forwarded-For"] == "127.0.0.1"
        assert "Authorization" not in request.headers


def test_no_challenge_id_or_token_reaches_the_page(client, with_passkey, authenticator):
    token = token_of(client, "/")
    options = client.post("/passkeys/signin/options", json={}, headers={"X-CSRFToken": token})
    assert set(options.get_json()) == {"options"}
    with client.session_transaction() as stored:
        [ceremony] = stored[passkeys.CEREMONIES_KEY]
    assert ceremony["id"] not in text(options)
    post_assertion(client, token, authenticator.get(options.get_json()["options"]))
    with client.session_transaction() as stored:
        tokens = stored[STORAGE_KEY]
    for page in ("/", "/account"):
        body = text(client.get(page))
        assert tokens["access_token"] not in body and tokens["refresh_token"] not in body


def test_a_passkey_sign_in_counts_as_a_recent_sign_in(client, with_passkey, authenticator):
    sign_in_with_passkey(client, authenticator)
    # Adding a second passkey needs a recent sign-in: the passkey's is one.
    assert registration_options(client, token_of(client)).status_code == 200


def test_the_session_is_stored_like_the_callbacks(client, with_passkey, authenticator):
    sign_in_with_passkey(client, authenticator)
    with client.session_transaction() as stored:
        tokens = dict(stored[STORAGE_KEY])
        assert passkeys.CEREMONIES_KEY not in stored  # used up
    assert set(tokens) >= {"access_token", "refresh_token", "expires_at", "user_created_at"}
    assert "user" not in tokens and "provider_token" not in tokens


@pytest.mark.parametrize("next_path, location", [
    ("/account", "/account"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
])
def test_sign_in_goes_on_to_a_same_site_next_only(client, with_passkey, authenticator,
                                                  next_path, location):
    response = sign_in_with_passkey(client, authenticator, next_path)
    assert response.headers["Location"] == location


def test_the_sign_in_page_offers_a_passkey_with_autofill(client):
    page = text(client.get("/signin"))
    assert 'action="/passkeys/signin"' in page and 'autocomplete="username webauthn"' in page
    assert "/static/passkeys.js" in page
    # Hidden until the script finds WebAuthn in the browser.
    assert re.search(r"<form[^>]*data-passkey-signin[^>]*hidden>", page)


# --- refusals ------------------------------------------------------------------------------


def test_an_unknown_passkey_is_refused_with_a_page(client, with_passkey, authenticator):
    stranger = authenticator.make_credential("localhost", b"someone-else")
    response = sign_in_with_passkey(client, authenticator, credential_id=stranger.credential_id)
    assert response.status_code == 401
    assert "This passkey is not registered with this site" in text(response)
    assert claims_of(client) == {}


def test_a_removed_passkey_is_refused_with_a_page(client, with_passkey, authenticator):
    sign_in_with_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    removed = client.post(f"/account/passkeys/{passkey_id}/remove",
                          data={"csrf_token": token_of(client)})
    assert removed.status_code == 302
    sign_out(client)
    response = sign_in_with_passkey(client, authenticator)
    assert response.status_code == 401
    assert "it was removed from your account" in text(response)


def test_an_expired_request_is_refused_with_a_page(client, with_passkey, authenticator,
                                                   emulator_clock):
    token, options = sign_in_options(client)
    emulator_clock.offset = 301  # challenges last five minutes
    response = post_assertion(client, token, authenticator.get(options))
    assert response.status_code == 400
    assert "The passkey request expired (it lasts five minutes)" in text(response)


def test_a_request_used_twice_is_refused_with_a_page(client, with_passkey, authenticator):
    token, options = sign_in_options(client)
    assertion = authenticator.get(options, user_verified=False, user_present=False)
    with client.session_transaction() as stored:
        before = dict(stored)
    first = post_assertion(client, token, assertion)
    assert first.status_code == 401
    again = post_assertion(client, token, assertion)
    assert again.status_code == 400 and "already used" in text(again)
    # A copy of the cookie from before the first try: Supabase refuses the challenge itself.
    with client.session_transaction() as stored:
        stored.update(before)
    replayed = post_assertion(client, token, authenticator.get(options))
    assert replayed.status_code == 400 and "already used" in text(replayed)


@pytest.mark.parametrize("credential", [
    "", "not json", "[]", '{"type": "public-key"}', "x" * 20_000,
    '{"type": "public-key", "id": "abc", "response": {"clientDataJSON": "%%%"}}',
])
def test_an_unreadable_credential_is_a_400_page(client, credential):
    token = token_of(client, "/signin")
    response = client.post("/passkeys/signin", data={"csrf_token": token,
                                                     "credential": credential})
    assert response.status_code == 400
    assert "Sign-in did not complete" in text(response)


hostile = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | hostile,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(hostile, inner, max_size=3), max_leaves=8)


@FUZZ
@given(response=st.dictionaries(st.sampled_from(["clientDataJSON", "authenticatorData",
                                                 "signature", "userHandle"]), json_values),
       credential_id=hostile)
def test_a_hostile_credential_is_a_page_never_a_500(client, with_passkey, authenticator,
                                                   response, credential_id):
    token, options = sign_in_options(client)
    assertion = authenticator.get(options)
    assertion["id"] = credential_id
    assertion["response"].update(response)
    answer = post_assertion(client, token, assertion)
    assert answer.status_code in (400, 401) and claims_of(client) == {}


@FUZZ
@given(name=hostile)
def test_any_name_is_saved_or_explained(client, signed_in, authenticator, name):
    if not passkey_ids(client):
        add_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    response = client.post(f"/account/passkeys/{passkey_id}/rename",
                           data={"csrf_token": token_of(client), "name": name})
    assert response.status_code in (302, 400)


def test_a_credential_for_options_never_given_here_is_refused(client, with_passkey,
                                                              authenticator):
    token, options = sign_in_options(client)
    assertion = authenticator.get(options, challenge="bm90LWdpdmVuLWhlcmU")
    response = post_assertion(client, token, assertion)
    assert response.status_code == 400 and "started in another browser" in text(response)


def test_sign_in_needs_the_csrf_token(client, with_passkey, authenticator):
    _token, options = sign_in_options(client)
    refused = client.post("/passkeys/signin/options", json={})
    assert refused.status_code == 400
    response = client.post("/passkeys/signin",
                           data={"credential": json.dumps(authenticator.get(options))})
    assert response.status_code == 400 and "did not come from this site" in text(response)
    assert claims_of(client) == {}


@pytest.mark.parametrize("answer, status, message", [
    ("down", 503, "We could not reach the sign-in service"),
    ((500, {"code": "unexpected_failure", "message": "Database error"}), 503,
     "We could not reach the sign-in service"),
    ((429, {"code": "over_request_rate_limit", "message": "Request rate limit reached"}), 429,
     "Too many passkey requests came from your network. Please try again in 10 seconds."),
    ((404, {"code": "passkey_disabled", "message": "Passkeys are disabled"}), 404,
     "Passkeys are turned off for this site right now"),
])
def test_options_refused_or_unanswered_say_why(client, network, answer, status, message):
    token = token_of(client, "/signin")
    network.answers["/auth/v1/passkeys/authentication/options"] = answer
    response = client.post("/passkeys/signin/options", json={}, headers={"X-CSRFToken": token})
    assert response.status_code == status
    assert message in response.get_json()["message"]
    assert "challenge" not in response.get_data(as_text=True)
    if status == 429:  # one more request every 10 s once the burst is spent
        assert response.headers["Retry-After"] == "10"


@pytest.mark.parametrize("answer, status, message", [
    ("down", 503, "We could not reach the sign-in service"),
    ((502, {"message": "bad gateway"}), 503, "We could not reach the sign-in service"),
    ((429, {"code": "over_request_rate_limit", "message": "Rate limit"}), 429,
     "The sign-in service is busy"),
    ((403, {"code": "unknown", "message": "Only staff may sign in"}), 403,
     "sign-in rules do not let this account in: Only staff may sign in."),
    ((403, {"code": "user_banned", "message": "User is banned"}), 403, "has been suspended"),
    ((404, {"code": "passkey_disabled", "message": "Passkeys are disabled"}), 404,
     "Passkeys are turned off"),
])
def test_verify_refused_or_unanswered_gets_a_page(client, with_passkey, authenticator, network,
                                                  answer, status, message):
    token, options = sign_in_options(client)
    network.answers["/auth/v1/passkeys/authentication/verify"] = answer
    response = post_assertion(client, token, authenticator.get(options))
    assert response.status_code == status
    assert message in text(response)
    assert claims_of(client) == {}


def test_a_banned_person_is_refused(client, with_passkey, authenticator, admin):
    user_id = next(u["id"] for u in admin.get("/admin/users").json()["users"]
                   if u["email"] == f"{with_passkey}@example.com")
    admin.put(f"/admin/users/{user_id}", json={"ban_duration": "24h"}).raise_for_status()
    response = sign_in_with_passkey(client, authenticator)
    assert response.status_code == 403 and "has been suspended" in text(response)


# --- the two-factor rule -------------------------------------------------------------------


def test_a_person_with_an_authenticator_app_still_enters_a_code(client, signed_in,
                                                                authenticator):
    set_up_authenticator(client)
    assert add_passkey(client, authenticator).status_code == 302
    sign_out(client)
    response = sign_in_with_passkey(client, authenticator, "/account")
    assert response.status_code == 302
    assert claims_of(client)["aal"] == "aal1"
    page = client.get("/account")
    assert page.status_code == 302 and page.headers["Location"].startswith("/two-factor")
    assert "Signed in as" not in text(client.get(page.headers["Location"]))


def test_a_factor_the_app_cannot_challenge_keeps_a_passkey_sign_in_at_the_challenge(
        client, with_passkey, authenticator, emulator):
    """A passkey is a first factor: it neither counts as nor stands in for an MFA factor."""
    from tests.test_two_factor import add_verified_factor

    sign_in_with_passkey(client, authenticator)
    add_verified_factor(emulator, client, "webauthn")
    sign_out(client)
    assert sign_in_with_passkey(client, authenticator).status_code == 302
    response = client.get("/account")
    assert response.headers["Location"].startswith("/two-factor")
    shown = client.get(response.headers["Location"])
    assert shown.status_code == 403
    assert "This site can only ask for a code from an authenticator app" in " ".join(
        text(shown).split())
    assert claims_of(client)["aal"] == "aal1"


# --- managing passkeys ---------------------------------------------------------------------


def test_add_list_rename_and_remove(client, signed_in, authenticator):
    added = add_passkey(client, authenticator)
    assert added.status_code == 302 and added.headers["Location"] == "/account#passkeys-title"
    page = text(client.get("/account"))
    assert "Passkey added (Passkey)." in page
    assert re.search(r"<td>Passkey</td>\s*<td>[^<]+UTC</td>\s*<td>Never</td>", page)
    [passkey_id] = passkey_ids(client)

    form = text(client.get(f"/account/passkeys/{passkey_id}/rename"))
    renamed = client.post(f"/account/passkeys/{passkey_id}/rename",
                          data={"csrf_token": csrf_token(form), "name": "  Work   laptop "})
    assert renamed.status_code == 302
    assert "<td>Work laptop</td>" in text(client.get("/account"))

    confirm = client.get(f"/account/passkeys/{passkey_id}/remove")
    assert "Remove the passkey “Work laptop”?" in text(confirm)
    removed = client.post(f"/account/passkeys/{passkey_id}/remove",
                          data={"csrf_token": csrf_token(text(confirm))})
    assert removed.status_code == 302
    page = text(client.get("/account"))
    assert "Passkey removed" in page and "No passkeys yet" in page


@pytest.mark.parametrize("answer, status, message", [
    ((422, {"code": "too_many_passkeys", "message": "Maximum number of passkeys reached"}),
     400, "You have as many passkeys as this site allows"),
    ((422, {"code": "validation_failed", "message": "SSO users cannot register passkeys"}),
     400, "single sign-on cannot add passkeys here"),
    ((403, {"code": "insufficient_aal", "message": "AAL2 session is required"}), 400,
     "Enter a code from your authenticator app first"),
    ((401, {"code": "session_not_found", "message": "Session not found"}), 401,
     "Your session has ended"),
    ((500, {"code": "unexpected_failure", "message": "Database error"}), 503,
     "We could not reach the sign-in service while adding a passkey"),
])
def test_adding_refused_or_unanswered_says_why(client, signed_in, network, answer, status,
                                               message):
    token = token_of(client)
    network.answers["/auth/v1/passkeys/registration/options"] = answer
    response = registration_options(client, token)
    assert response.status_code == status and message in response.get_json()["message"]


def test_last_used_is_shown_after_a_sign_in(client, with_passkey, authenticator):
    sign_in_with_passkey(client, authenticator, "/account")
    page = text(client.get("/account"))
    assert re.search(r"<td>Passkey</td>\s*<td>[^<]+UTC</td>\s*<td>[^<]+UTC</td>", page)


def test_adding_needs_a_recent_sign_in(client, signed_in, authenticator, monkeypatch):
    token = token_of(client)
    move_app_clock(monkeypatch, 601)
    answer = registration_options(client, token)
    assert answer.status_code == 403
    body = answer.get_json()
    assert "needs a sign-in from the last 10 minutes" in body["message"]
    assert body["href"] == "/account/passkeys/sign-in-again"
    again = text(client.get(body["href"]))
    assert "/signin/github?next=/account" in again
    form = client.post("/account/passkeys", data={"csrf_token": token, "credential": "{}"})
    assert form.status_code == 200 and "/signin/github?next=/account" in text(form)


def test_removing_needs_a_recent_sign_in(client, signed_in, authenticator, monkeypatch):
    add_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    move_app_clock(monkeypatch, 601)
    response = client.post(f"/account/passkeys/{passkey_id}/remove",
                           data={"csrf_token": token_of(client)})
    assert response.status_code == 200 and "remove a passkey" in text(response)
    assert passkey_ids(client) == [passkey_id]


def test_a_passkey_sign_in_is_the_recent_sign_in_removing_asks_for(
        client, with_passkey, authenticator, browser, monkeypatch):
    browser.sign_in(with_passkey)
    [passkey_id] = passkey_ids(client)
    move_app_clock(monkeypatch, 601)
    confirm = f"/account/passkeys/{passkey_id}/remove"
    asked = client.post(confirm, data={"csrf_token": token_of(client)})
    assert "Sign in with a passkey" in text(asked) and f'value="{confirm}"' in text(asked)
    again = sign_in_with_passkey(client, authenticator, confirm)
    assert again.headers["Location"] == confirm
    removed = client.post(confirm, data={"csrf_token": token_of(client, confirm)})
    assert removed.status_code == 302 and passkey_ids(client) == []


@pytest.mark.parametrize("action", ["rename", "remove"])
def test_changes_need_the_csrf_token(client, signed_in, authenticator, action):
    add_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    response = client.post(f"/account/passkeys/{passkey_id}/{action}", data={"name": "x"})
    assert response.status_code == 400
    assert registration_options(client, "wrong").status_code == 400
    assert passkey_ids(client) == [passkey_id] and "<td>Passkey</td>" in text(
        client.get("/account"))


@pytest.mark.parametrize("name, message", [
    ("   ", "Enter a name."),
    ("é" * 61, "That name is too long"),
])
def test_a_bad_name_is_explained(client, signed_in, authenticator, name, message):
    add_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    response = client.post(f"/account/passkeys/{passkey_id}/rename",
                           data={"csrf_token": token_of(client), "name": name})
    assert response.status_code == 400 and message in text(response)


@pytest.mark.parametrize("passkey_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
@pytest.mark.parametrize("page", ["rename", "remove"])
def test_an_unknown_passkey_is_a_404(client, signed_in, passkey_id, page):
    response = client.get(f"/account/passkeys/{passkey_id}/{page}")
    assert response.status_code == 404 and "That passkey was not found" in text(response)


def test_someone_elses_passkey_cannot_be_removed(client, make_app, signed_in, authenticator,
                                                 github_account, emulator):
    add_passkey(client, authenticator)
    [passkey_id] = passkey_ids(client)
    other = make_app().test_client()
    sign_in_with_github(other, emulator, github_account())
    response = other.post(f"/account/passkeys/{passkey_id}/remove",
                          data={"csrf_token": token_of(other)})
    assert response.status_code == 302
    assert "may have been removed already" in text(other.get("/account"))
    assert passkey_ids(client) == [passkey_id]


def test_adding_after_the_request_expired_is_explained(client, signed_in, authenticator,
                                                      emulator_clock):
    token = token_of(client)
    options = registration_options(client, token).get_json()["options"]
    emulator_clock.offset = 301
    response = client.post("/account/passkeys", data={
        "csrf_token": token, "credential": json.dumps(authenticator.create(options))})
    assert response.status_code == 302
    page = text(client.get("/account"))
    assert "Adding the passkey took too long" in page and "No passkeys yet" in page


def test_the_same_passkey_twice_is_explained(client, signed_in, authenticator):
    add_passkey(client, authenticator)
    credential = next(iter(authenticator.credentials.values()))
    again = add_passkey(client, authenticator, reuse=credential)
    assert again.status_code == 302
    assert "This passkey is already on your account." in text(client.get("/account"))


def test_a_server_error_while_saving_gets_a_page(client, signed_in, authenticator, network):
    # The real server (v2.196) answers a credential it already has with a 500.
    network.answers["/auth/v1/passkeys/registration/verify"] = (
        500, {"code": "unexpected_failure", "message": "Database error creating passkey"})
    response = add_passkey(client, authenticator)
    assert response.status_code == 502
    assert "The sign-in service had a problem while saving your passkey" in text(response)


def test_the_list_unavailable_keeps_the_account_page(client, signed_in, network):
    network.answers["/auth/v1/passkeys"] = "down"
    page = client.get("/account")
    assert page.status_code == 200
    assert "Your passkeys could not be loaded just now" in text(page)


# --- the enrolment offer -------------------------------------------------------------------


def offered(client) -> bool:
    return "Sign in faster next time" in text(client.get("/"))


def test_the_offer_is_made_once_after_a_github_sign_in(client, signed_in):
    assert offered(client)
    assert not offered(client)


def test_a_dismissed_offer_is_not_made_again(client, signed_in, browser):
    page = text(client.get("/"))
    dismissed = client.post("/account/passkeys/offer/dismiss",
                            data={"csrf_token": csrf_token(page)})
    assert dismissed.status_code == 302
    sign_out(client)
    browser.sign_in(signed_in)
    assert not offered(client)


def test_no_offer_to_someone_with_a_passkey(client, with_passkey, browser, authenticator):
    browser.sign_in(with_passkey)
    assert not offered(client)
    sign_out(client)
    sign_in_with_passkey(client, authenticator)
    assert not offered(client)


def test_a_new_github_sign_in_offers_again(client, signed_in, browser):
    assert offered(client)
    sign_out(client)
    browser.sign_in(signed_in)
    assert offered(client)


# --- PASSKEYS_ENABLED ----------------------------------------------------------------------


PASSKEY_PATHS = [("post", "/passkeys/signin/options"), ("post", "/passkeys/signin"),
                 ("post", "/account/passkeys/options"), ("post", "/account/passkeys"),
                 ("get", "/account/passkeys/00000000-0000-4000-8000-000000000000/rename"),
                 ("post", "/account/passkeys/offer/dismiss")]


def assert_passkeys_off(client) -> None:
    for path in ("/", "/signin", "/account"):
        assert "passkey" not in text(client.get(path)).lower(), path
    token = token_of(client, "/")
    for method, path in PASSKEY_PATHS:
        response = getattr(client, method)(path, data={"csrf_token": token})
        assert response.status_code == 404, (path, response.status_code)
        assert "Passkeys are turned off" in text(response)


def test_passkeys_enabled_false_hides_everything(make_app, github_account, emulator):
    client = make_app(PASSKEYS_ENABLED=False).test_client()
    sign_in_with_github(client, emulator, github_account())
    assert_passkeys_off(client)


def test_by_default_the_projects_settings_decide(make_app, network, emulator, github_account):
    on = make_app(SUPABASE_TRANSPORT=network).test_client()
    assert "Sign in with a passkey" in text(on.get("/signin"))
    settings = httpx.get(f"{emulator.url}/auth/v1/settings",
                         headers={"apikey": emulator.publishable_key}).json()
    off_network = Recorder()
    off_network.answers["/auth/v1/settings"] = (200, {**settings, "passkeys_enabled": False})
    off = make_app(SUPABASE_TRANSPORT=off_network).test_client()
    sign_in_with_github(off, emulator, github_account())
    assert_passkeys_off(off)
    forced = make_app(SUPABASE_TRANSPORT=off_network, PASSKEYS_ENABLED=True).test_client()
    assert "Sign in with a passkey" in text(forced.get("/signin"))


# --- make dev ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_url, on", [
    ("http://localhost:5000", True),
    ("http://localhost:5080/", True),
    ("http://dev.example.test:8000", True),
    ("http://127.0.0.1:5000", False),  # WebAuthn refuses IP addresses as RP IDs
    ("http://[::1]:5000", False),
])
def test_make_dev_turns_passkeys_on_for_the_apps_origin(app_url, on):
    from emulator.config import for_app, load

    config = load(for_app(app_url))
    assert config["PASSKEY_ENABLED"] is on
    if on:
        origin = app_url.rstrip("/")
        assert config["WEBAUTHN_RP_ORIGINS"] == (origin,)
        assert config["WEBAUTHN_RP_ID"] == origin.split("//")[1].split(":")[0]


# --- the cookie ----------------------------------------------------------------------------


def test_passkey_ceremonies_keep_the_cookie_within_budget(client, signed_in):
    client.get("/")  # the offer was made: its record is in the cookie now
    before = len(client.get_cookie("session").value)
    token = token_of(client)
    for _ in range(passkeys.MAX_CEREMONIES + 2):  # more tabs than are remembered
        assert registration_options(client, token).status_code == 200
    with client.session_transaction() as stored:
        assert len(stored[passkeys.CEREMONIES_KEY]) == passkeys.MAX_CEREMONIES
    after = len(client.get_cookie("session").value)
    print(f"cookie bytes: {before} signed in, {after} with {passkeys.MAX_CEREMONIES} "
          "passkey requests under way")
    assert after - before <= 700 and after <= 4096


@pytest.mark.parametrize("raw, value", [("true", True), ("off", False), ("", None)])
def test_passkeys_enabled_is_read_from_the_environment(monkeypatch, tmp_path, raw, value):
    from app import create_app
    from tests.test_config import GOOD

    for name, setting in {**GOOD, "PASSKEYS_ENABLED": raw,
                          "INSTANCE_PATH": str(tmp_path)}.items():
        monkeypatch.setenv(name, setting)
    app = create_app()
    app.extensions["supabase"].http.close()
    assert app.config["PASSKEYS_ENABLED"] is value


def test_passkeys_enabled_must_be_on_or_off(monkeypatch):
    from app import create_app
    from config import ConfigError
    from tests.test_config import GOOD

    for name, setting in {**GOOD, "PASSKEYS_ENABLED": "maybe"}.items():
        monkeypatch.setenv(name, setting)
    with pytest.raises(ConfigError, match="PASSKEYS_ENABLED='maybe' is not a valid boolean"):
        create_app()
