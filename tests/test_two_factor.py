"""Two-factor authentication: setting up an app, the challenge after signing in, the levels
each page needs, what the team's removal does, and bad input (never a 500, never an unearned
aal2)."""

from __future__ import annotations

import html
import re
import sqlite3
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.errors import AuthApiError
from supabase_auth.helpers import decode_jwt

import two_factor
from flask_storage import MFA_FACTORS
from tests.helpers import SITE_URL, Browser, csrf_token, move_app_clock, set_up_authenticator

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
hostile = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


class Clock:
    """The emulator's CLOCK: real time plus an offset a test moves (and the fixture resets)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def emulator_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def emulator(emulator_clock):
    """This module's emulator: a movable clock, and no limit on challenges from 127.0.0.1."""
    from emulator.serve import start_background

    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL,
                                "PROVIDERS": "github,gitlab,google", "CLOCK": emulator_clock,
                                "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000,
                                "MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY": 1_000_000_000})
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def real_time(emulator_clock):
    yield
    emulator_clock.offset = 0.0


def tokens_of(client) -> dict:
    with client.session_transaction() as stored:
        return dict(stored.get(STORAGE_KEY) or {})


def aal_of(client) -> str | None:
    tokens = tokens_of(client)
    return decode_jwt(tokens["access_token"])["payload"]["aal"] if tokens else None


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash[^"]*">([^<]*)</p>', page)


def alert(page: str) -> str:
    match = re.search(r'role="alert">([^<]*)<', page)
    return match.group(1) if match else ""


def post_code(client, code: str, next_path: str = "/account"):
    page = client.get(f"/two-factor?next={next_path}").get_data(as_text=True)
    return client.post("/two-factor", data={"csrf_token": csrf_token(page), "code": code,
                                            "next": next_path})


def wrong_code(secret: str, at: float | None = None) -> str:
    """Six digits that are no code of now or of a step either side."""
    at = time.time() if at is None else at
    taken = {pyotp.TOTP(secret).at(at + offset) for offset in (-30, 0, 30)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in taken)


@pytest.fixture
def person(browser, github_account):
    """A signed-in person (aal1, no factor); their login."""
    login = github_account()
    assert browser.sign_in(login).status_code == 302
    return login


@pytest.fixture
def enrolled(client, person):
    """The person with an authenticator app: (secret, factor id). Their session is aal2."""
    return set_up_authenticator(client)


@pytest.fixture
def returning(client, browser, person, enrolled):
    """The same person signed out and back in with GitHub: aal1, a challenge due."""
    secret, factor_id = enrolled
    page = client.get("/").get_data(as_text=True)
    client.post("/signout", data={"csrf_token": csrf_token(page)})
    assert browser.sign_in(person).status_code == 302
    return secret, factor_id


# --- setting up an authenticator app ---------------------------------------------------------


def test_the_account_page_says_two_factor_is_off(client, person):
    page = client.get("/account").get_data(as_text=True)
    assert 'id="two-factor-title">Two-factor authentication' in page
    assert "Off. Add an authenticator app" in page


def test_enrolling_shows_the_qr_code_and_secret_once_and_keeps_neither(client, person):
    page = client.get("/account").get_data(as_text=True)
    response = client.post("/account/two-factor", data={"csrf_token": csrf_token(page),
                                                       "name": "Phone"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert re.search(r'<img class="qr-code" src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"',
                     body)
    secret = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', body).group(1)
    secret = secret.replace(" ", "")
    assert len(secret) == 32
    assert "style=" not in body and "<script>" not in body  # the CSP allows neither inline
    with client.session_transaction() as stored:
        assert secret not in repr(dict(stored))
    assert secret not in response.headers.get("Location", "")
    # Shown once: the account page and the set-up page never show it again.
    for path in ("/account", "/account/two-factor"):
        assert secret not in client.get(path).get_data(as_text=True)


def test_a_right_code_turns_it_on_and_raises_the_session(client, person):
    secret, factor_id = set_up_authenticator(client, "Work phone")
    assert aal_of(client) == "aal2"
    assert tokens_of(client)[MFA_FACTORS] == 1
    page = client.get("/account").get_data(as_text=True)
    assert "Two-factor authentication is on" in " ".join(flashes(page))
    assert "Work phone" in page
    assert f"/account/two-factor/{factor_id}/remove" in page


@pytest.mark.parametrize("code, status, message", [
    ("12345", 400, "Enter the six digits"),
    ("abcdef", 400, "Enter the six digits"),
    ("１２３４５６", 400, "Enter the six digits"),
    ("1" * 5000, 400, "Enter the six digits"),
    (None, 401, "That code is not right"),
])
def test_confirming_with_a_bad_code_explains_and_stays_aal1(client, person, code, status,
                                                             message):
    page = client.get("/account").get_data(as_text=True)
    body = client.post("/account/two-factor", data={"csrf_token": csrf_token(page)}) \
        .get_data(as_text=True)
    secret = re.search(r'class="secret"[^>]*>([A-Z2-7 ]+)<', body).group(1).replace(" ", "")
    factor_id = re.search(r"/account/two-factor/([0-9a-f-]{36})/confirm", body).group(1)
    response = client.post(f"/account/two-factor/{factor_id}/confirm", data={
        "csrf_token": csrf_token(page), "code": code or wrong_code(secret)})
    text = response.get_data(as_text=True)
    assert response.status_code == status
    assert message in alert(text)
    assert secret.replace(" ", "") not in text  # not shown again
    assert "Start again" in text
    assert aal_of(client) == "aal1"


def test_starting_again_replaces_the_abandoned_set_up(client, person):
    page = client.get("/account").get_data(as_text=True)
    client.post("/account/two-factor", data={"csrf_token": csrf_token(page), "name": "Phone"})
    set_up_authenticator(client, "Phone")  # the same name: the unverified one went first
    page = client.get("/account").get_data(as_text=True)
    assert page.count("/remove") == 1


def test_a_second_app_with_the_same_name_is_refused(client, enrolled):
    page = client.get("/account").get_data(as_text=True)
    response = client.post("/account/two-factor", data={"csrf_token": csrf_token(page),
                                                       "name": "Phone"})
    assert response.status_code == 400
    assert "already have an authenticator app called “Phone”" in alert(
        response.get_data(as_text=True))


def test_a_second_app_can_be_added_at_aal2(client, enrolled):
    set_up_authenticator(client, "Tablet")
    assert tokens_of(client)[MFA_FACTORS] == 2


def test_confirming_another_persons_factor_is_not_found(client, browser, make_app, emulator,
                                                        github_account, enrolled):
    secret, factor_id = enrolled
    stranger = Browser(make_app().test_client(), emulator.url)
    try:
        stranger.sign_in(github_account())
        page = stranger.client.get("/account").get_data(as_text=True)
        response = stranger.client.post(f"/account/two-factor/{factor_id}/confirm", data={
            "csrf_token": csrf_token(page), "code": pyotp.TOTP(secret).now()})
        assert response.status_code == 404
        assert "expired or was removed" in alert(response.get_data(as_text=True))
        assert aal_of(stranger.client) == "aal1"
        removal = stranger.client.post(f"/account/two-factor/{factor_id}/remove",
                                       data={"csrf_token": csrf_token(page)})
        assert removal.status_code == 404
    finally:
        stranger.close()


@pytest.mark.parametrize("factor_id", ["nope", "..%2F..%2Fuser",
                                       "00000000-0000-0000-0000-00000000000g",
                                       "{00000000-0000-0000-0000-000000000000}"])
def test_factor_ids_that_are_not_uuids_are_404_without_a_call(client, person, factor_id):
    page = client.get("/account").get_data(as_text=True)
    for response in (client.get(f"/account/two-factor/{factor_id}/remove"),
                     client.post(f"/account/two-factor/{factor_id}/remove",
                                 data={"csrf_token": csrf_token(page)}),
                     client.post(f"/account/two-factor/{factor_id}/confirm",
                                 data={"csrf_token": csrf_token(page), "code": "123456"})):
        assert response.status_code == 404


# --- the challenge after signing in ----------------------------------------------------------


def test_signing_in_with_a_factor_leads_to_the_challenge_before_the_page(client, returning):
    assert aal_of(client) == "aal1"
    response = client.get("/account?tab=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/two-factor?next=/account?tab%3D1"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Enter the code from your authenticator app" in page
    assert "<strong>Phone</strong>" in page


@pytest.mark.parametrize("path", ["/", "/account", "/admin", "/account/two-factor"])
def test_every_signed_in_page_waits_for_the_code(client, returning, path):
    response = client.get(path)
    assert (response.status_code, response.headers["Location"].split("?")[0]) == (
        302, "/two-factor")


def test_signing_out_needs_no_code(client, returning):
    page = client.get("/two-factor").get_data(as_text=True)
    response = client.post("/signout", data={"csrf_token": csrf_token(page)})
    assert response.headers["Location"] == "/"
    assert tokens_of(client) == {}


def test_the_right_code_goes_on_to_the_page_at_aal2(client, returning):
    secret, _ = returning
    response = post_code(client, pyotp.TOTP(secret).now())
    assert (response.status_code, response.headers["Location"]) == (302, "/account")
    assert aal_of(client) == "aal2"
    claims = decode_jwt(tokens_of(client)["access_token"])["payload"]
    assert {entry["method"] for entry in claims["amr"]} == {"oauth", "totp"}
    assert client.get("/account").status_code == 200


def test_spaces_in_the_code_are_fine(client, returning):
    secret, _ = returning
    code = pyotp.TOTP(secret).now()
    assert post_code(client, f" {code[:3]} {code[3:]} ").status_code == 302
    assert aal_of(client) == "aal2"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６", "12-34-56",
                                  "<script>", "1" * 10_000, "٣٣٣٣٣٣"])
def test_codes_that_are_not_six_digits_are_explained(client, returning, code):
    response = post_code(client, code)
    assert response.status_code == 400
    assert "Enter the six digits your authenticator app shows" in alert(
        response.get_data(as_text=True))
    assert aal_of(client) == "aal1"


def test_a_wrong_code_says_how_many_tries_are_left(client, returning):
    secret, _ = returning
    response = post_code(client, wrong_code(secret))
    assert response.status_code == 401
    assert alert(response.get_data(as_text=True)).startswith(
        "That code is not right. You can try 4 more times.")
    again = post_code(client, wrong_code(secret)).get_data(as_text=True)
    assert "You can try 3 more times." in alert(again)
    assert aal_of(client) == "aal1"


def test_the_fifth_wrong_code_signs_out_where_an_older_cookie_cannot_follow(
        client, returning):
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    before = client.get_cookie("session").value  # no wrong code counted yet
    form = {"csrf_token": csrf_token(page), "next": "/account"}
    for _ in range(two_factor.MAX_TRIES - 1):
        assert client.post("/two-factor", data={**form, "code": wrong_code(secret)}) \
            .status_code == 401
    response = client.post("/two-factor", data={**form, "code": wrong_code(secret)})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert tokens_of(client) == {}
    assert "you have been signed out" in " ".join(flashes(client.get("/").get_data(as_text=True)))
    # A copy of the cookie from before the tries: even the right code is refused, and signs out.
    client.set_cookie("session", before, domain="localhost")
    replay = client.post("/two-factor", data={**form, "code": pyotp.TOTP(secret).now()})
    assert replay.headers["Location"] in ("/", "/signin")
    assert tokens_of(client) == {}
    assert aal_of(client) is None


def test_the_fifth_wrong_code_signs_out_at_supabase_later_when_it_cannot_be_reached(
        client, returning, monkeypatch):
    """The sign-out goes through the pending sign-outs: kept, and sent once Supabase answers."""
    secret, _ = returning
    page = client.get("/two-factor").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page)}
    for _ in range(two_factor.MAX_TRIES - 1):
        client.post("/two-factor", data={**form, "code": wrong_code(secret)})
    refresh_token = tokens_of(client)["refresh_token"]
    kept = []
    monkeypatch.setattr(two_factor.pending_sign_outs, "sign_out",
                        lambda tokens: kept.append(tokens["refresh_token"]))
    client.post("/two-factor", data={**form, "code": wrong_code(secret)})
    assert kept == [refresh_token]
    assert tokens_of(client) == {}


def test_replaying_the_cookie_from_before_the_first_guess_does_not_reset_the_count(
        client, returning, emulator):
    """Issue 17: the count lived in the cookie; 12 wrong codes were each told "4 more"."""
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    before = client.get_cookie("session").value
    form = {"csrf_token": csrf_token(page), "next": "/account"}
    told = []
    for _ in range(two_factor.MAX_TRIES - 1):
        client.set_cookie("session", before, domain="localhost")  # rewind, before each guess
        answer = client.post("/two-factor", data={**form, "code": wrong_code(secret)})
        told.append(re.search(r"try (\d) more", alert(answer.get_data(as_text=True))).group(1))
    assert told == ["4", "3", "2", "1"]
    client.set_cookie("session", before, domain="localhost")
    shown = client.get("/two-factor?next=/account").get_data(as_text=True)
    assert "You can try 1 more time." in shown  # the page reads the count, not the cookie
    client.set_cookie("session", before, domain="localhost")
    fifth = client.post("/two-factor", data={**form, "code": wrong_code(secret)})
    assert fifth.headers["Location"] == "/"
    assert tokens_of(client) == {}
    client.set_cookie("session", before, domain="localhost")
    right = client.post("/two-factor", data={**form, "code": pyotp.TOTP(secret).now()})
    assert right.status_code == 302 and aal_of(client) != "aal2"
    # The session itself was signed out at Supabase: its refresh token is dead.
    refreshed = httpx.post(f"{emulator.url}/auth/v1/token?grant_type=refresh_token",
                           headers={"apikey": emulator.publishable_key},
                           json={"refresh_token": _refresh_token_of(before, client)}, timeout=5)
    assert refreshed.status_code == 400


def _refresh_token_of(cookie: str, client) -> str:
    from flask import session

    with client.application.test_request_context(headers={"Cookie": f"session={cookie}"}):
        return session[STORAGE_KEY]["refresh_token"]


def test_the_workers_of_one_server_share_the_count(client, returning, make_app, emulator):
    """Two apps on one instance folder (a server's workers): a guess on either counts."""
    secret, _ = returning
    other = make_app(INSTANCE_PATH=client.application.instance_path).test_client()
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "next": "/account"}
    assert client.post("/two-factor", data={**form, "code": wrong_code(secret)}).status_code == 401
    other.set_cookie("session", client.get_cookie("session").value, domain="localhost")
    answer = other.post("/two-factor", data={**form, "code": wrong_code(secret)})
    assert "You can try 3 more times." in alert(answer.get_data(as_text=True))


def test_guesses_sent_at_once_test_at_most_five_codes(client, returning):
    """Each try is counted before the code goes to Supabase, so parallel guesses cannot race
    past the limit."""
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    cookie = client.get_cookie("session").value
    form = {"csrf_token": csrf_token(page), "next": "/account", "code": wrong_code(secret)}
    app = client.application
    checked = []
    app.extensions["supabase"].http.event_hooks["request"].append(
        lambda request: request.url.path.endswith("/verify") and checked.append(1))
    start = threading.Barrier(12)

    def guess() -> int:
        guesser = app.test_client()
        guesser.set_cookie("session", cookie, domain="localhost")
        start.wait(timeout=10)
        return guesser.post("/two-factor", data=form).status_code

    try:
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: guess(), range(12)))
    finally:
        app.extensions["supabase"].http.event_hooks["request"].pop()
    assert len(checked) <= two_factor.MAX_TRIES
    assert statuses.count(302) >= 12 - two_factor.MAX_TRIES + 1  # the rest: signed out
    assert all(status in (302, 401) for status in statuses)


def test_a_try_supabase_did_not_judge_is_not_counted(client, returning, monkeypatch):
    secret, _ = returning
    page = client.get("/two-factor").get_data(as_text=True)

    def down(self, params):
        raise httpx.ConnectError("refused")

    with monkeypatch.context() as patched:
        patched.setattr("supabase_auth._sync.gotrue_client.SyncGoTrueClient._verify", down)
        for _ in range(two_factor.MAX_TRIES + 1):
            assert client.post("/two-factor", data={"csrf_token": csrf_token(page),
                                                    "code": "123456"}).status_code == 503
    client.application.extensions["supabase"].backoff.succeeded()  # back, the pause is over
    assert post_code(client, pyotp.TOTP(secret).now()).status_code == 302
    assert aal_of(client) == "aal2"


def test_a_count_that_cannot_be_kept_refuses_the_check(client, returning, monkeypatch):
    secret, _ = returning
    page = client.get("/two-factor").get_data(as_text=True)

    def broken(self, key):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(two_factor.WrongCodes, "take", broken)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page),
                                                "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 503
    assert "could not check your code" in response.get_data(as_text=True)
    assert aal_of(client) == "aal1"


def test_an_expired_challenge_is_explained_and_replaced(client, returning, emulator_clock):
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    emulator_clock.offset = 301
    response = client.post("/two-factor", data={
        "csrf_token": csrf_token(page), "code": pyotp.TOTP(secret).at(emulator_clock()),
        "next": "/account"})
    assert response.status_code == 401
    assert alert(response.get_data(as_text=True)).startswith("That took too long")
    assert aal_of(client) == "aal1"
    retry = client.post("/two-factor", data={
        "csrf_token": csrf_token(page), "code": pyotp.TOTP(secret).at(emulator_clock()),
        "next": "/account"})
    assert retry.status_code == 302
    assert aal_of(client) == "aal2"


def test_a_replayed_code_is_refused(client, returning):
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    before = client.get_cookie("session").value
    form = {"csrf_token": csrf_token(page), "code": pyotp.TOTP(secret).now(), "next": "/account"}
    assert client.post("/two-factor", data=form).status_code == 302
    client.set_cookie("session", before, domain="localhost")  # the request as it was captured
    replay = client.post("/two-factor", data=form)
    assert replay.status_code == 401
    assert alert(replay.get_data(as_text=True)).startswith("That code was already used.")
    assert aal_of(client) == "aal1"


@pytest.fixture
def two_apps(client, browser, person):
    """The person with two authenticator apps, back from signing in again: the secrets and
    factor ids of "Phone" and "Tablet"."""
    phone = set_up_authenticator(client, "Phone")
    tablet = set_up_authenticator(client, "Tablet")
    page = client.get("/").get_data(as_text=True)
    client.post("/signout", data={"csrf_token": csrf_token(page)})
    browser.sign_in(person)
    return phone, tablet


def test_with_two_apps_either_can_answer(client, two_apps):
    (_, phone), (tablet_secret, tablet) = two_apps
    page = client.get("/two-factor").get_data(as_text=True)
    assert "<strong>Phone</strong>" in page
    assert f"factor={tablet}" in page
    page = client.get(f"/two-factor?factor={tablet}").get_data(as_text=True)
    assert "<strong>Tablet</strong>" in page
    assert post_code(client, pyotp.TOTP(tablet_secret).now()).status_code == 302
    assert aal_of(client) == "aal2"


def test_a_challenge_of_another_factor_starts_over(client, two_apps):
    (phone_secret, _), (_, tablet) = two_apps
    page = client.get("/two-factor").get_data(as_text=True)  # a challenge of "Phone"
    with client.session_transaction() as stored:  # sent as if it were "Tablet"'s
        stored[two_factor.CHALLENGE_KEY] = {**stored[two_factor.CHALLENGE_KEY],
                                            "factor": tablet}
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page),
                                                "code": pyotp.TOTP(phone_secret).now()})
    assert response.headers["Location"].startswith("/two-factor")
    assert aal_of(client) == "aal1"
    assert post_code(client, pyotp.TOTP(phone_secret).now()).status_code == 302
    assert aal_of(client) == "aal2"


def test_another_persons_factor_id_in_the_url_is_ignored(client, returning, make_app,
                                                         emulator, github_account):
    stranger = Browser(make_app().test_client(), emulator.url)
    try:
        stranger.sign_in(github_account())
        _, theirs = set_up_authenticator(stranger.client)
    finally:
        stranger.close()
    page = client.get(f"/two-factor?factor={theirs}").get_data(as_text=True)
    assert "<strong>Phone</strong>" in page
    with client.session_transaction() as stored:
        assert stored[two_factor.CHALLENGE_KEY]["factor"] == returning[1]


def test_the_challenge_page_moves_on_when_there_is_nothing_to_answer(client, person):
    assert client.get("/two-factor?next=/account").headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page), "code": "123456",
                                                "next": "//evil.example"})
    assert response.headers["Location"] == "/"


def test_a_code_without_a_challenge_under_way_is_checked_against_a_new_one(client, returning):
    """Another tab's sign-in replaced the session and its challenge: the code still counts."""
    secret, factor_id = returning
    page = client.get("/two-factor").get_data(as_text=True)
    assert f'name="factor" value="{factor_id}"' in page
    with client.session_transaction() as stored:
        stored.pop(two_factor.CHALLENGE_KEY, None)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page), "next": "/account",
                                                "factor": factor_id,
                                                "code": pyotp.TOTP(secret).now()})
    assert response.headers["Location"] == "/account"
    assert aal_of(client) == "aal2"


def test_a_malformed_code_without_a_challenge_under_way_starts_one(client, returning):
    page = client.get("/two-factor").get_data(as_text=True)
    with client.session_transaction() as stored:
        stored.pop(two_factor.CHALLENGE_KEY, None)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page), "code": "12",
                                                "next": "/account"})
    assert response.headers["Location"] == "/two-factor?next=/account"


def test_a_rate_limited_check_says_wait(client, returning, monkeypatch):
    page = client.get("/two-factor").get_data(as_text=True)

    def limited(self, params):
        raise AuthApiError("Request rate limit reached", 429, "over_request_rate_limit")

    monkeypatch.setattr("supabase_auth._sync.gotrue_client.SyncGoTrueClient._verify", limited)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page),
                                                "code": "123456"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"  # one more try every 4 s at hosted defaults
    assert "Too many tries in a short time. Wait 4 seconds" in alert(
        response.get_data(as_text=True))


def test_supabase_down_during_the_check_is_a_503_not_a_500(client, returning, monkeypatch):
    page = client.get("/two-factor").get_data(as_text=True)

    def down(self, params):
        raise httpx.ConnectError("refused")

    monkeypatch.setattr("supabase_auth._sync.gotrue_client.SyncGoTrueClient._verify", down)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page),
                                                "code": "123456"})
    assert response.status_code == 503
    assert aal_of(client) == "aal1"


# --- @aal2_required and AUTH_REQUIRE_MFA -----------------------------------------------------


def test_an_aal2_page_asks_a_person_without_a_factor_to_set_one_up(make_app, emulator,
                                                                   github_account):
    app = make_app()

    @app.get("/vault")
    @two_factor.aal2_required
    def vault():
        return "the vault"

    browser = Browser(app.test_client(), emulator.url)
    try:
        client = browser.client
        assert client.get("/vault").headers["Location"] == "/signin?next=/vault"
        browser.sign_in(github_account())
        response = client.get("/vault")
        assert response.headers["Location"] == "/account/two-factor?next=/vault"
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "This page needs two-factor authentication" in " ".join(flashes(page))
        assert 'name="next" value="/vault"' in page
        set_up_authenticator(client)
        assert client.get("/vault").get_data(as_text=True) == "the vault"
    finally:
        browser.close()


def test_admins_need_aal2_for_the_admin_page(client, person, admin):
    user_id = decode_jwt(tokens_of(client)["access_token"])["payload"]["sub"]
    admin.put(f"/admin/users/{user_id}", json={"app_metadata": {"role": "admin"}})
    client.application.config["AUTH_REVALIDATE_SECONDS"] = 0
    assert client.get("/admin").headers["Location"] == "/account/two-factor?next=/admin"
    set_up_authenticator(client)
    assert client.get("/admin").status_code == 200


@pytest.fixture
def strict(make_app, emulator, github_account):
    """An app with AUTH_REQUIRE_MFA=true and a signed-in person without a factor."""
    browser = Browser(make_app(AUTH_REQUIRE_MFA=True).test_client(), emulator.url)
    browser.sign_in(github_account())
    yield browser.client
    browser.close()


@pytest.mark.parametrize("path", ["/", "/account", "/admin"])
def test_require_mfa_sends_people_without_a_factor_to_set_one_up(strict, path):
    response = strict.get(path)
    assert response.headers["Location"].startswith("/account/two-factor")
    page = strict.get(response.headers["Location"]).get_data(as_text=True)
    assert "asks everyone to use two-factor authentication" in " ".join(flashes(page))


def test_require_mfa_lets_them_in_once_set_up(strict):
    set_up_authenticator(strict)
    assert strict.get("/account").status_code == 200


def test_require_mfa_still_lets_people_sign_out(strict):
    page = strict.get("/account/two-factor").get_data(as_text=True)
    assert strict.post("/signout", data={"csrf_token": csrf_token(page)}).headers[
        "Location"] == "/"


def test_require_mfa_reads_true_and_false_from_the_environment():
    import config

    assert config.boolean("TRUE") is True and config.boolean("off") is False
    with pytest.raises(ValueError):
        config.boolean("maybe")


# --- removing an app, here or by the team ----------------------------------------------------


def test_removing_the_only_app_turns_two_factor_off(client, enrolled):
    _, factor_id = enrolled
    page = client.get(f"/account/two-factor/{factor_id}/remove").get_data(as_text=True)
    assert "It is your only authenticator app" in page
    response = client.post(f"/account/two-factor/{factor_id}/remove",
                           data={"csrf_token": csrf_token(page)})
    assert response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "Two-factor authentication is off." in " ".join(flashes(page))
    assert aal_of(client) == "aal1"
    assert MFA_FACTORS not in tokens_of(client)


def test_a_factor_removed_by_the_team_reaches_the_person_like_a_ban(client, enrolled, admin,
                                                                     monkeypatch):
    _, factor_id = enrolled
    user_id = decode_jwt(tokens_of(client)["access_token"])["payload"]["sub"]
    assert admin.delete(f"/admin/users/{user_id}/factors/{factor_id}").status_code == 200
    assert client.get("/account").status_code == 200  # inside AUTH_REVALIDATE_SECONDS
    client.application.config["AUTH_REVALIDATE_SECONDS"] = 0
    client.get("/account")  # revalidation: factors gone, the token says aal2 → refreshed
    assert aal_of(client) == "aal1"
    assert MFA_FACTORS not in tokens_of(client)


def test_a_person_waiting_at_the_challenge_is_let_through_when_the_team_removes_it(
        client, returning, admin):
    _, factor_id = returning
    user_id = decode_jwt(tokens_of(client)["access_token"])["payload"]["sub"]
    admin.delete(f"/admin/users/{user_id}/factors/{factor_id}")
    response = client.get("/two-factor?next=/account")  # lists the factors afresh
    assert response.headers["Location"] == "/account"
    assert client.get("/account").status_code == 200


def test_no_call_to_supabase_per_request_at_either_level(client, returning, emulator):
    secret, _ = returning
    calls = []
    http = client.application.extensions["supabase"].http
    http.event_hooks["request"].append(lambda request: calls.append(request.url.path))
    try:
        for _ in range(3):
            client.get("/account")  # aal1 with a factor: to the challenge, no call
        assert calls == []
        post_code(client, pyotp.TOTP(secret).now())
        calls.clear()
        for _ in range(3):
            client.get("/")
        assert calls == []
    finally:
        http.event_hooks["request"].pop()


# --- hostile input ---------------------------------------------------------------------------


@FUZZ
@given(code=hostile)
def test_any_code_at_the_challenge_is_never_a_500_nor_an_unearned_aal2(client, returning, code):
    page = client.get("/two-factor").get_data(as_text=True)  # signed out after five tries
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    response = client.post("/two-factor", data={"csrf_token": token.group(1) if token else "",
                                                "code": code, "next": code})
    assert response.status_code < 500
    assert aal_of(client) in (None, "aal1")


@FUZZ
@given(factor=hostile.filter(bool), code=hostile)
def test_any_factor_id_in_the_account_pages_is_never_a_500(client, enrolled, factor, code):
    page = client.get("/account").get_data(as_text=True)
    segment = quote(factor, safe="")
    for response in (client.get(f"/account/two-factor/{segment}/remove"),
                     client.post(f"/account/two-factor/{segment}/confirm",
                                 data={"csrf_token": csrf_token(page), "code": code}),
                     client.get(f"/two-factor?factor={segment}&next={segment}")):
        assert response.status_code < 500
    assert tokens_of(client)[MFA_FACTORS] == 1


# --- recent sign-in --------------------------------------------------------------------------


def test_the_first_factor_needs_a_recent_sign_in(client, browser, person, monkeypatch):
    """Issue 17: a stale session enrolled a factor and locked its owner out."""
    page = client.get("/account/two-factor").get_data(as_text=True)
    move_app_clock(monkeypatch, client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"] + 1)
    asked = client.post("/account/two-factor", data={"csrf_token": csrf_token(page),
                                                    "name": "Phone"})
    body = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Confirm it is you" in body
    assert "To set up two-factor authentication, please sign in again" in body
    assert 'class="secret"' not in body
    monkeypatch.undo()
    assert "Off. Add an authenticator app" in client.get("/account").get_data(as_text=True)
    again = html.unescape(re.search(r'href="(/signin/github\?next=[^"]+)"', body).group(1))
    assert browser.approve(person, browser.start(again)).headers["Location"] == \
        "/account/two-factor"
    set_up_authenticator(client)
    assert aal_of(client) == "aal2"


def test_a_right_code_counts_as_a_recent_sign_in(client, returning, monkeypatch):
    secret, _ = returning
    window = client.application.config["AUTH_RECENT_SIGN_IN_SECONDS"]
    move_app_clock(monkeypatch, window + 1)  # GitHub's part of the sign-in is stale now
    assert post_code(client, pyotp.TOTP(secret).now()).status_code == 302
    page = client.get("/account").get_data(as_text=True)
    done = client.post("/signout", data={"csrf_token": csrf_token(page), "scope": "others"})
    assert done.headers["Location"] == "/account"
    assert "Signed out of your other devices." in " ".join(
        flashes(client.get("/account").get_data(as_text=True)))


# --- factors the app cannot challenge --------------------------------------------------------


def add_verified_factor(emulator, client, factor_type: str) -> None:
    """A verified factor of ``factor_type``, as another client of the project would enrol."""
    from emulator.db import get_db

    user_id = decode_jwt(tokens_of(client)["access_token"])["payload"]["sub"]
    now = time.time()
    with emulator.app.app_context(), get_db().transaction() as conn:
        conn.execute("INSERT INTO mfa_factors (id, user_id, friendly_name, factor_type, status,"
                     " phone, created_at, updated_at) VALUES (?, ?, '', ?, 'verified', ?, ?, ?)",
                     (str(uuid.uuid4()), user_id, factor_type,
                      "+15550100" if factor_type == "phone" else "", now, now))


@pytest.mark.parametrize("factor_type, said", [("phone", "a phone number"),
                                               ("webauthn", "a security key or passkey")])
def test_a_factor_the_app_cannot_challenge_keeps_its_owner_at_the_challenge(
        client, browser, person, emulator, factor_type, said):
    """Issue 17: a verified phone or WebAuthn factor was dropped, and aal1 walked through."""
    add_verified_factor(emulator, client, factor_type)
    page = client.get("/").get_data(as_text=True)
    client.post("/signout", data={"csrf_token": csrf_token(page)})
    browser.sign_in(person)
    assert tokens_of(client)[MFA_FACTORS] == 1
    for _ in range(2):  # told why, and not forgotten the second time
        response = client.get("/account")
        assert response.headers["Location"].startswith("/two-factor")
        shown = client.get(response.headers["Location"])
        text = " ".join(shown.get_data(as_text=True).split())
        assert shown.status_code == 403
        assert f"two-factor authentication with {said}" in text
        assert "This site can only ask for a code from an authenticator app" in text
    assert tokens_of(client)[MFA_FACTORS] == 1
    tried = client.post("/two-factor", data={"csrf_token": csrf_token(shown.get_data(
        as_text=True)), "code": "123456"})
    assert tried.headers["Location"].startswith("/two-factor")
    assert aal_of(client) == "aal1"


def test_with_an_authenticator_app_too_the_challenge_offers_it(client, returning, emulator):
    secret, _ = returning
    add_verified_factor(emulator, client, "phone")
    page = client.get("/two-factor").get_data(as_text=True)
    assert "<strong>Phone</strong>" in page and "Use another authenticator app" not in page
    assert post_code(client, pyotp.TOTP(secret).now()).status_code == 302
    assert aal_of(client) == "aal2"


def test_only_the_types_asked_for_are_counted():
    from flask_storage import CHALLENGEABLE_FACTORS, verified_factors

    factors = [{"factor_type": "totp", "status": "verified"},
               {"factor_type": "phone", "status": "verified"},
               {"factor_type": "totp", "status": "unverified"}]
    assert verified_factors(factors) == 2
    assert verified_factors(factors, CHALLENGEABLE_FACTORS) == 1


# --- wording and the set-up page -------------------------------------------------------------


def test_no_signed_in_as_before_the_code(client, returning):
    secret, _ = returning
    page = client.get("/two-factor?next=/account").get_data(as_text=True)
    assert not any(f.startswith("Signed in as") for f in flashes(page))
    post_code(client, pyotp.TOTP(secret).now())
    assert any(f.startswith("Signed in as") for f in flashes(
        client.get("/account").get_data(as_text=True)))


def enrol_page(client, name: str = "Phone") -> str:
    page = client.get("/account/two-factor").get_data(as_text=True)
    return client.post("/account/two-factor", data={"csrf_token": csrf_token(page),
                                                    "name": name}).get_data(as_text=True)


def shown_secret(body: str) -> str | None:
    match = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', body)
    return match.group(1).replace(" ", "") if match else None


@pytest.mark.parametrize("code, status", [("12", 400), (None, 401)])
def test_a_mistyped_code_at_set_up_keeps_the_qr_code_and_key(client, person, code, status):
    body = enrol_page(client)
    secret = shown_secret(body)
    factor_id = re.search(r"/account/two-factor/([0-9a-f-]{36})/confirm", body).group(1)
    sealed = re.search(r'name="enrolment" value="([^"]+)"', body).group(1)
    assert secret not in sealed
    again = client.post(f"/account/two-factor/{factor_id}/confirm", data={
        "csrf_token": csrf_token(body), "enrolment": sealed,
        "code": code or wrong_code(secret)})
    text = again.get_data(as_text=True)
    assert again.status_code == status
    assert shown_secret(text) == secret
    assert re.search(r'<img class="qr-code" src="data:image/svg\+xml;base64,', text)
    with client.session_transaction() as stored:
        assert secret not in repr(dict(stored))
    done = client.post(f"/account/two-factor/{factor_id}/confirm", data={
        "csrf_token": csrf_token(text), "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 302 and aal_of(client) == "aal2"


def test_a_sealed_set_up_shows_only_to_its_own_factor_and_person(client, person, make_app,
                                                                  emulator, github_account):
    body = enrol_page(client)
    secret = shown_secret(body)
    factor_id = re.search(r"/account/two-factor/([0-9a-f-]{36})/confirm", body).group(1)
    sealed = re.search(r'name="enrolment" value="([^"]+)"', body).group(1)
    other_factor = "00000000-0000-4000-8000-000000000000"
    for path, value in ((f"/account/two-factor/{other_factor}/confirm", sealed),
                        (f"/account/two-factor/{factor_id}/confirm", sealed[:-4] + "AAAA"),
                        (f"/account/two-factor/{factor_id}/confirm", "é" * 10)):
        answer = client.post(path, data={"csrf_token": csrf_token(body), "enrolment": value,
                                         "code": "12"})
        assert answer.status_code == 400 and shown_secret(answer.get_data(as_text=True)) is None
    stranger = Browser(make_app().test_client(), emulator.url)
    try:
        stranger.sign_in(github_account())
        page = stranger.client.get("/account").get_data(as_text=True)
        answer = stranger.client.post(f"/account/two-factor/{factor_id}/confirm", data={
            "csrf_token": csrf_token(page), "enrolment": sealed, "code": "12"})
        assert secret not in answer.get_data(as_text=True)
    finally:
        stranger.close()


def test_the_default_name_reads_naturally(client, person):
    body = enrol_page(client, name="")
    assert "Add your authenticator app" in body
    set_up_authenticator(client, name="")
    said = " ".join(flashes(client.get("/account").get_data(as_text=True)))
    assert "you will enter a code from your authenticator app." in said
    assert "“Authenticator app”" not in said
    again = enrol_page(client, name="")
    assert "without a name of its own" in alert(again)


# --- two tabs --------------------------------------------------------------------------------


def test_two_tabs_the_code_counts_in_the_tab_it_is_entered(client, browser, person, enrolled):
    """Issue 18: sign-in started and authorised in tabs A and B; the code typed in tab A."""
    secret, _ = enrolled
    page = client.get("/").get_data(as_text=True)
    client.post("/signout", data={"csrf_token": csrf_token(page)})
    consent_a, consent_b = browser.start(), browser.start()
    assert browser.approve(person, consent_a).headers["Location"] == "/"
    tab_a = client.get(client.get("/").headers["Location"]).get_data(as_text=True)
    assert browser.approve(person, consent_b).headers["Location"] == "/"
    tab_b = client.get(client.get("/").headers["Location"]).get_data(as_text=True)
    form = {"csrf_token": csrf_token(tab_a), "next": "/",
            "factor": re.search(r'name="factor" value="([^"]+)"', tab_a).group(1)}
    entered = client.post("/two-factor", data={**form, "code": pyotp.TOTP(secret).now()})
    assert (entered.status_code, entered.headers["Location"]) == (302, "/")
    assert aal_of(client) == "aal2"
    # Tab B, sent afterwards, lands signed in.
    later = client.post("/two-factor", data={"csrf_token": csrf_token(tab_b), "next": "/",
                                             "code": pyotp.TOTP(secret).now()})
    assert later.headers["Location"] == "/"
    assert "Hello," in client.get("/").get_data(as_text=True)


def test_a_refused_form_shows_the_signed_in_header(client, person):
    """A stale form's 400 page is built before the user check; its header still says who."""
    response = client.post("/two-factor", data={"csrf_token": "stale", "code": "123456"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "This form expired" in page
    header = page[page.index('<header'):page.index('</header>')]
    assert ">Account</a>" in header and ">Sign in</a>" not in header


def test_a_count_expires_a_session_lifetime_after_the_last_wrong_code(tmp_path, monkeypatch):
    from instance_data import SharedDatabase

    counts = two_factor.WrongCodes(SharedDatabase(tmp_path / "app.sqlite3",
                                                  two_factor.WrongCodes.SCHEMA), lifetime=100)
    assert [counts.take("session-a") for _ in range(3)] == [1, 2, 3]
    counts.give_back("session-a")
    assert counts.count("session-a") == 2 and counts.count("session-b") == 0
    later = time.time() + 101
    monkeypatch.setattr(two_factor, "time", types.SimpleNamespace(time=lambda: later))
    assert counts.count("session-a") == 0
    assert counts.take("session-a") == 1  # counted afresh, and the old row is gone
    rows = counts.database.connect().execute("SELECT COUNT(*) FROM mfa_wrong_codes").fetchone()
    assert rows == (1,)
    assert (tmp_path / "app.sqlite3").stat().st_mode & 0o077 == 0
