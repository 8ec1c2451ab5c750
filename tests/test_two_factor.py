"""Two-factor authentication: setting up an app, the challenge after signing in, the levels
each page needs, what the team's removal does, and bad input (never a 500, never an unearned
aal2)."""

from __future__ import annotations

import re
import time
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
from tests.helpers import SITE_URL, Browser, csrf_token, set_up_authenticator

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
    # A copy of the cookie from before the tries finds its session ended at Supabase.
    client.set_cookie("session", before, domain="localhost")
    replay = client.post("/two-factor", data={**form, "code": pyotp.TOTP(secret).now()})
    assert replay.headers["Location"] == "/signin"
    assert tokens_of(client) == {}


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


def test_a_post_without_a_challenge_under_way_starts_one(client, returning):
    page = client.get("/two-factor").get_data(as_text=True)
    with client.session_transaction() as stored:
        stored.pop(two_factor.CHALLENGE_KEY, None)
    response = client.post("/two-factor", data={"csrf_token": csrf_token(page), "code": "123456",
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
