"""Keeping a session: what a signed-in request costs in calls to Supabase, and what ends it."""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

import auth
import sessions
import supabase_client
import supabase_errors
from tests.helpers import Browser, csrf_token, move_app_clock

REVALIDATE = 60
REFRESH = "token?grant_type=refresh_token"
PKCE = "token?grant_type=pkce"
API_VERSION = {"X-Supabase-Api-Version": "2024-01-01"}


def call_name(request: httpx.Request) -> str:
    """``user``, ``logout``, ``token?grant_type=pkce``, … as in Supabase's request log."""
    name = request.url.path.split("/auth/v1/", 1)[-1]
    grant = request.url.params.get("grant_type")
    return f"{name}?grant_type={grant}" if grant else name


class Network(httpx.BaseTransport):
    """The real network to the emulator, recording every call; ``answers`` stand in for some."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.calls: list[tuple[str, httpx.Headers]] = []
        self.answers: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        name = call_name(request)
        self.calls.append((name, request.headers))
        answer = self.answers.pop(name, None)
        return answer(request) if answer else self.real.handle_request(request)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def close(self) -> None:
        self.real.close()


def answer(status: int, body: dict | str, headers: dict | None = None):
    """A canned Supabase answer (JSON for a dict, else text)."""
    def respond(_request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=body, headers=headers)
    return respond


def refusal(status: int, code: str) -> Callable:
    return answer(status, {"code": code, "message": f"refused: {code}"}, API_VERSION)


@pytest.fixture
def network():
    recorded = Network()
    yield recorded
    recorded.close()


@pytest.fixture
def app(make_app, network):
    return make_app(SUPABASE_TRANSPORT=network, AUTH_REVALIDATE_SECONDS=REVALIDATE)


def tokens_of(client) -> dict:
    with client.session_transaction() as sess:
        return dict(sess.get(STORAGE_KEY) or {})


# -- what a person costs ---------------------------------------------------------------------

def test_inside_the_window_a_page_costs_no_call(client, signed_in, network):
    client.get("/")  # the first page verifies the token against the JWKS once per process
    network.calls.clear()
    for _ in range(5):
        assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == []


def test_revalidation_is_a_user_call_not_a_refresh(client, signed_in, network, monkeypatch):
    client.get("/")
    before = tokens_of(client)
    network.calls.clear()
    move_app_clock(monkeypatch, REVALIDATE + 1)
    assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == ["user"]
    after = tokens_of(client)
    assert after["refresh_token"] == before["refresh_token"]
    assert after[sessions.CHECKED_AT] >= decode_jwt(before["access_token"])["payload"]["iat"]
    network.calls.clear()
    client.get("/")  # the check counts from now: the next one is a window away
    assert network.names() == []


def test_a_token_about_to_expire_is_refreshed_once(client, signed_in, network, monkeypatch):
    client.get("/")
    before = tokens_of(client)
    network.calls.clear()
    move_app_clock(monkeypatch, 3600 - sessions.REFRESH_MARGIN + 5)
    assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == [REFRESH]
    assert tokens_of(client)["refresh_token"] != before["refresh_token"]
    move_app_clock(monkeypatch, 0)  # the emulator stamped the new token with the real time
    for _ in range(3):
        assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == [REFRESH]


def test_a_role_change_costs_one_refresh_and_reaches_the_token(
        client, signed_in, network, admin, monkeypatch):
    client.get("/")
    sub = decode_jwt(tokens_of(client)["access_token"])["payload"]["sub"]
    admin.put(f"/admin/users/{sub}", json={"app_metadata": {"role": "editor"}})
    network.calls.clear()
    move_app_clock(monkeypatch, REVALIDATE + 1)
    client.get("/")
    assert network.names() == ["user", REFRESH]
    claims = decode_jwt(tokens_of(client)["access_token"])["payload"]
    assert claims["app_metadata"]["role"] == "editor"


# -- one rule for what ends a session --------------------------------------------------------

@pytest.mark.parametrize("status, code", [
    (403, "user_banned"), (403, "user_not_found"), (403, "session_not_found"),
    (403, "session_expired"),
])
def test_answers_that_end_a_session_sign_out_at_revalidation(
        client, signed_in, network, monkeypatch, status, code):
    network.answers["user"] = refusal(status, code)
    move_app_clock(monkeypatch, REVALIDATE + 1)
    page = client.get("/").get_data(as_text=True)
    assert "Sign in with GitHub" in page
    assert tokens_of(client) == {}


@pytest.mark.parametrize("status, code", [
    (400, "refresh_token_not_found"), (400, "refresh_token_already_used"),
    (400, "validation_failed"),  # the refresh token is all a refresh sends: it is not valid
])
def test_answers_that_end_a_session_sign_out_at_refresh(
        client, signed_in, network, monkeypatch, status, code):
    network.answers[REFRESH] = refusal(status, code)
    move_app_clock(monkeypatch, 3601)
    page = client.get("/").get_data(as_text=True)
    assert "Your session has ended" in page
    assert tokens_of(client) == {}


MISCONFIGURED = {
    "invalid-api-key": answer(401, {"message": "Invalid API key"}),
    "validation": refusal(400, "validation_failed"),
    "gateway-403": answer(403, "<html><body>Forbidden</body></html>",
                          {"Content-Type": "text/html"}),
    "wrong-url-404": answer(404, "404 page not found\n"),
    "unprocessable": refusal(422, "unexpected_thing"),
}


@pytest.mark.parametrize("kind", list(MISCONFIGURED))
def test_other_4xx_at_revalidation_keep_the_session_and_say_what_to_check(
        client, signed_in, network, monkeypatch, caplog, kind):
    monkeypatch.setattr(supabase_errors, "_reported", set())
    network.answers["user"] = MISCONFIGURED[kind]
    move_app_clock(monkeypatch, REVALIDATE + 1)
    response = client.get("/")
    assert response.status_code == 200 and "Hello," in response.get_data(as_text=True)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "SUPABASE_KEY" in errors[0] and "SUPABASE_URL" in errors[0]


def test_a_configuration_error_is_logged_once(client, signed_in, network, monkeypatch, caplog):
    monkeypatch.setattr(supabase_errors, "_reported", set())
    for attempt in range(3):  # each past the pause the refused session takes on its own
        move_app_clock(monkeypatch, REVALIDATE + 1 + attempt * (2 * sessions.SESSION_PAUSE + 1))
        network.answers["user"] = MISCONFIGURED["invalid-api-key"]
        client.get("/")
    assert network.names().count("user") == 3
    assert sum(r.levelname == "ERROR" for r in caplog.records) == 1


def test_invalid_api_key_at_refresh_of_an_expired_token_is_a_503_not_a_sign_out(
        client, signed_in, network, monkeypatch):
    before = tokens_of(client)
    network.answers[REFRESH] = MISCONFIGURED["invalid-api-key"]
    move_app_clock(monkeypatch, 3601)
    response = client.get("/")
    assert response.status_code == 503
    assert tokens_of(client) == before


def test_a_token_the_server_calls_invalid_is_refreshed_first(
        client, signed_in, network, monkeypatch):
    before = tokens_of(client)
    network.answers["user"] = refusal(403, "bad_jwt")  # e.g. its signing key was revoked
    move_app_clock(monkeypatch, REVALIDATE + 1)
    assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names()[-2:] == ["user", REFRESH]
    assert tokens_of(client)["refresh_token"] != before["refresh_token"]


def test_a_token_signed_with_an_unknown_key_is_refreshed_not_signed_out(
        client, signed_in, network):
    tokens = tokens_of(client)
    claims = decode_jwt(tokens["access_token"])["payload"]
    gone = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256",
                      headers={"kid": "revoked-key"})
    with client.session_transaction() as sess:
        sess[STORAGE_KEY] = {**tokens, "access_token": gone}
    assert "Hello," in client.get("/").get_data(as_text=True)
    assert REFRESH in network.names()
    assert tokens_of(client)["access_token"] not in (gone, tokens["access_token"])


def test_rate_limited_refresh_of_an_expired_token_is_a_429_with_the_limiters_wait(
        client, signed_in, network, monkeypatch):
    network.answers[REFRESH] = refusal(429, "over_request_rate_limit")  # as the real one: bare
    move_app_clock(monkeypatch, 3601)
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    # The real server sends no Retry-After: one more /token call comes every 2 s at hosted
    # defaults (150 per five minutes per address).
    assert response.headers["Retry-After"] == str(supabase_errors.TOKEN_REFILL_SECONDS) == "2"
    assert "busy" in page and "try again in 2 seconds" in page
    assert "You are still signed in" in page


@pytest.mark.parametrize("said, expected", [
    ({"Retry-After": "7"}, "7"),
    ({"RateLimit-Reset": "12"}, "12"),
    ({"Retry-After": "soon"}, "2"),  # unreadable: the limiter's own pace
])
def test_a_rate_limited_refresh_follows_what_supabase_says(
        client, signed_in, network, monkeypatch, said, expected):
    network.answers[REFRESH] = answer(429, {"code": "over_request_rate_limit", "message": "x"},
                                      {**API_VERSION, **said})
    move_app_clock(monkeypatch, 3601)
    response = client.get("/")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == expected
    assert f"try again in {expected} seconds" in response.get_data(as_text=True)


# -- calls on the person's behalf carry their address ---------------------------------------

def forwarded_for(network: Network) -> dict[str, str | None]:
    return {name: headers.get("Sb-Forwarded-For") for name, headers in network.calls}


def test_calls_on_a_persons_behalf_carry_their_address(
        client, browser, github_account, network, monkeypatch):
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    browser.sign_in(github_account())
    move_app_clock(monkeypatch, REVALIDATE + 1)
    page = client.get("/").get_data(as_text=True)
    client.post("/signout", data={"csrf_token": csrf_token(page)})
    sent = forwarded_for(network)
    assert {sent[name] for name in (PKCE, "user", "logout")} == {"203.0.113.9"}
    assert sent["settings"] is None  # the app's own call, for nobody in particular


@pytest.mark.parametrize("proxies, remote, forwarded, expected", [
    (0, "127.0.0.1", "198.51.100.4", "127.0.0.1"),  # a forged header changes nothing
    (1, "127.0.0.1", "198.51.100.4", "198.51.100.4"),  # the trusted proxy's word
    (1, "127.0.0.1", "6.6.6.6, 198.51.100.4", "198.51.100.4"),  # only the last hop is trusted
    (1, "127.0.0.1", "not-an-address", None),  # never sent when it is not an IP address
])
def test_the_address_sent_is_the_one_the_trusted_proxies_report(
        make_app, emulator, github_account, proxies, remote, forwarded, expected):
    network = Network()
    app = make_app(SUPABASE_TRANSPORT=network, TRUSTED_PROXY_COUNT=proxies)
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded})
    browser = Browser(client, emulator.url)
    try:
        browser.sign_in(github_account())
    finally:
        browser.close()
        network.close()
    assert forwarded_for(network)[PKCE] == expected


# -- the callback: one token call, its own flow, a 429 page ---------------------------------

def test_each_tab_finishes_with_its_own_verifier_in_one_call(client, browser, github_account,
                                                            network):
    first, second = browser.start(), browser.start()
    login = github_account()
    path = browser.callback_path(login, first)
    assert "flow=" in path
    network.calls.clear()
    assert client.get(path).status_code == 302
    assert network.names() == [PKCE]
    assert "Hello," in client.get("/").get_data(as_text=True)
    with client.session_transaction() as sess:
        assert len(sess[auth.FLOWS_KEY]) == 1  # the second tab's sign-in is still there
    assert browser.approve(login, second).status_code == 302


def test_a_callback_for_an_unknown_flow_makes_no_call(client, browser, github_account, network):
    path = browser.callback_path(github_account(), browser.start())
    network.calls.clear()
    response = client.get(re.sub(r"flow=[^&]+", "flow=someone-elses", path))
    assert response.status_code == 400
    assert "started in another browser" in response.get_data(as_text=True)
    assert network.names() == []


def test_flows_older_than_ten_minutes_are_dropped(client, browser, github_account, network,
                                                  monkeypatch):
    path = browser.callback_path(github_account(), browser.start())
    network.calls.clear()
    move_app_clock(monkeypatch, auth.FLOW_LIFETIME + 1)
    assert client.get(path).status_code == 400
    assert network.names() == []
    with client.session_transaction() as sess:
        assert auth.FLOWS_KEY not in sess


def test_a_refused_exchange_drops_its_flow(client, browser, github_account, network):
    path = browser.callback_path(github_account(), browser.start())
    network.answers[PKCE] = refusal(422, "flow_state_expired")
    assert client.get(path).status_code == 400
    with client.session_transaction() as sess:
        assert auth.FLOWS_KEY not in sess


def test_a_rate_limited_exchange_shows_429_and_try_again_retries_the_code(
        client, browser, github_account, network):
    path = browser.callback_path(github_account(), browser.start())
    network.answers[PKCE] = refusal(429, "over_request_rate_limit")
    response = client.get(path)
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"  # one more /token call at hosted defaults
    assert "Too many sign-ins right now. Please try again in 2 seconds." in page
    retry = html.unescape(re.search(r'href="([^"]+)">Try again', page).group(1))
    assert retry == path
    assert client.get(retry).status_code == 302  # the code was not used up
    assert "Hello," in client.get("/").get_data(as_text=True)


def test_views_cannot_change_the_cached_claims(make_app, emulator, github_account, caplog):
    app = make_app()

    @app.get("/meddle")
    def meddle():
        from flask_login import current_user
        current_user.app_metadata["role"] = "admin"
        return "changed"

    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        caplog.set_level(logging.CRITICAL)  # the view's TypeError is the point
        assert browser.client.get("/meddle").status_code == 500
        assert browser.client.get("/admin").status_code == 403
    finally:
        browser.close()


# -- the herd: one retry per pause, refreshes a few at a time ---------------------------------

JOIN = 10  # seconds a test waits for a request thread, at the most


def signed_in_clients(app, emulator, github_account, count: int) -> list:
    """``count`` test clients of ``app``, each signed in as a new person."""
    clients = []
    for _ in range(count):
        helper = Browser(app.test_client(), emulator.url)
        try:
            assert helper.sign_in(github_account()).status_code == 302
        finally:
            helper.close()
        clients.append(helper.client)
    return clients


def held(network: Network, name: str) -> tuple[threading.Event, threading.Event]:
    """Make the next ``name`` call wait inside the transport until released; (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def wait_then_answer(request: httpx.Request) -> httpx.Response:
        entered.set()
        assert release.wait(JOIN)
        return network.real.handle_request(request)

    network.answers[name] = wait_then_answer
    return entered, release


def pages_in_threads(clients: list) -> tuple[list[threading.Thread], list]:
    """Each client asks for / in a thread of its own; the responses land in the list."""
    responses: list = []
    threads = [threading.Thread(target=lambda c=c: responses.append(c.get("/")), daemon=True)
               for c in clients]
    for thread in threads:
        thread.start()
    return threads, responses


def test_after_a_pause_one_check_retries_and_everyone_else_is_served_from_their_token(
        app, network, emulator, github_account, monkeypatch):
    first, *others = signed_in_clients(app, emulator, github_account, 6)
    move_app_clock(monkeypatch, REVALIDATE + 1)  # everyone is due a check
    network.answers["user"] = answer(503, {"code": "unexpected_failure", "message": "down"})
    assert "Hello," in first.get("/").get_data(as_text=True)  # the failure pauses calls
    backoff = app.extensions["supabase"].backoff
    time.sleep(backoff.remaining())  # the pause is over: one retry is due
    network.calls.clear()
    entered, release = held(network, "user")
    threads, responses = pages_in_threads(others)
    try:
        assert entered.wait(JOIN)  # one of them is retrying
        for thread in threads:
            thread.join(0.2)  # the rest are answered while the retry waits
        assert sum(thread.is_alive() for thread in threads) == 1
    finally:
        release.set()
        for thread in threads:
            thread.join(JOIN)
    assert network.names() == ["user"]
    assert [r.status_code for r in responses] == [200] * len(others)
    network.calls.clear()
    for client in others:  # the retry succeeded: the others are checked on their next page
        client.get("/")
    assert network.names() == ["user"] * (len(others) - 1)


def test_refreshes_of_valid_tokens_run_a_few_at_a_time(app, network, emulator, github_account,
                                                       monkeypatch):
    clients = signed_in_clients(app, emulator, github_account, supabase_client.SPARE_REFRESHES + 3)
    move_app_clock(monkeypatch, 3600 - 30)  # everyone is due a refresh; every token is valid
    inside, release = threading.Semaphore(0), threading.Event()

    def held_refresh(request: httpx.Request) -> httpx.Response:
        inside.release()
        assert release.wait(JOIN)
        return network.real.handle_request(request)

    original = network.handle_request

    def handle(request: httpx.Request) -> httpx.Response:
        if call_name(request) == REFRESH:
            network.calls.append((REFRESH, request.headers))
            return held_refresh(request)
        return original(request)

    monkeypatch.setattr(network, "handle_request", handle)
    threads, responses = pages_in_threads(clients)
    try:
        for _ in range(supabase_client.SPARE_REFRESHES):
            assert inside.acquire(timeout=JOIN)
        for thread in threads:
            thread.join(0.2)
        # The others are served from their valid token and refresh on a later page.
        assert sum(thread.is_alive() for thread in threads) == supabase_client.SPARE_REFRESHES
        assert network.names().count(REFRESH) == supabase_client.SPARE_REFRESHES
    finally:
        release.set()
        for thread in threads:
            thread.join(JOIN)
    assert [r.status_code for r in responses] == [200] * len(clients)


def test_a_rate_limited_refresh_of_a_valid_token_waits_on_its_own_with_jitter(
        client, signed_in, network, monkeypatch):
    move_app_clock(monkeypatch, 3600 - 30)
    network.answers[REFRESH] = refusal(429, "over_request_rate_limit")
    assert "Hello," in client.get("/").get_data(as_text=True)
    retry_at = tokens_of(client)[sessions.RETRY_AT]
    wait = retry_at - (time.time() + 3600 - 30)
    assert 1 < wait <= 2 * 2 + 1  # the limiter's 2 s, stretched by up to as much again
    assert app_backoff_ready(client)  # nobody else's calls pause
    network.calls.clear()
    client.get("/")
    assert network.names() == []
    move_app_clock(monkeypatch, 3600 - 30 + wait + 1)
    assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == [REFRESH]
    assert sessions.RETRY_AT not in tokens_of(client)


def app_backoff_ready(client) -> bool:
    return client.application.extensions["supabase"].backoff.remaining() == 0
