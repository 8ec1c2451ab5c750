"""Supabase failing under the app: refused, too slow, 5xx, malformed answers, at every stage."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY

import auth
import sessions
import supabase_client
import supabase_errors
from tests.helpers import Browser, csrf_token, move_app_clock

TIMEOUT = 0.5  # SUPABASE_TIMEOUT for these tests
SLACK = 1.5  # generous: a bound on how long a worker is held, not a speed test
FAULTS = ["refused", "slow", "500", "502-html", "503", "malformed-json"]
# stage -> the Supabase call it makes, as FaultyNetwork names it. At these stages nothing valid
# is in hand (no token yet, an expired one, no keys to check it): a 502/503. (/account is
# served from the token: tests/test_account.py.)
# "jwks" is a worker started during the fault, with no keys saved by an earlier one.
STAGES = {
    "callback": "token?grant_type=pkce",
    "refresh": "token?grant_type=refresh_token",
    "jwks": ".well-known/jwks.json",
}
# At these the access token is still valid: the page is served from it and the check waits.
RIDDEN_OUT = {
    "revalidation": "user",
    "near-expiry": "token?grant_type=refresh_token",
}
REVALIDATE = 60


class Blackhole:
    """A loopback server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


class FaultyNetwork(httpx.BaseTransport):
    """The real network to the emulator, with a fault injected per Supabase call."""

    def __init__(self, blackhole_port: int) -> None:
        self.real = httpx.HTTPTransport()
        self.blackhole_port = blackhole_port
        self.refused_port = closed_port()
        self.faults: dict[str, str] = {}
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(self.call_name(request))
        fault = self.faults.get(self.call_name(request))
        if fault is None:
            return self.real.handle_request(request)
        if fault in ("refused", "slow"):
            port = self.refused_port if fault == "refused" else self.blackhole_port
            return self.real.handle_request(moved(request, port))
        if fault == "malformed-json":
            return httpx.Response(200, content=b'{"access_token": "abc", "us',
                                  headers={"Content-Type": "application/json"})
        if fault == "502-html":
            return httpx.Response(502, content=b"<html><h1>502 Bad Gateway</h1></html>",
                                  headers={"Content-Type": "text/html"})
        return httpx.Response(int(fault), json={"code": "unexpected_failure",
                                                "message": "Something broke"})

    @staticmethod
    def call_name(request: httpx.Request) -> str:
        name = request.url.path.split("/auth/v1/", 1)[-1]
        grant = request.url.params.get("grant_type")
        return f"{name}?grant_type={grant}" if grant else name

    def close(self) -> None:
        self.real.close()


def moved(request: httpx.Request, port: int) -> httpx.Request:
    """The same request, sent to another loopback port (with its timeouts)."""
    return httpx.Request(request.method, request.url.copy_with(port=port),
                         headers=request.headers, content=request.read(),
                         extensions=request.extensions)


@pytest.fixture(scope="module")
def blackhole():
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def network(blackhole):
    faulty = FaultyNetwork(blackhole.port)
    yield faulty
    faulty.close()


@pytest.fixture
def faulty_app(make_app, network):
    return make_app(SUPABASE_TRANSPORT=network, SUPABASE_TIMEOUT=TIMEOUT,
                    AUTH_REVALIDATE_SECONDS=REVALIDATE)




def auth_state(client) -> dict:
    """What ties the browser to a person: its tokens and its sign-ins under way."""
    with client.session_transaction() as sess:
        return {key: sess.get(key) for key in (STORAGE_KEY, auth.FLOWS_KEY)}


class Stage:
    """A browser at one stage of its life with the app, ready to make the faulted request."""

    def __init__(self, name, faulty_app, browser, github_account, emulator, monkeypatch,
                 make_app, network):
        self.name = name
        self.new_worker = lambda: make_app(SUPABASE_TRANSPORT=network, SUPABASE_TIMEOUT=TIMEOUT,
                                           AUTH_REVALIDATE_SECONDS=REVALIDATE)
        self.client = faulty_app.test_client()
        self.path = "/"
        if name == "callback":
            helper = Browser(self.client, emulator.url)
            try:
                self.path = helper.callback_path(github_account(), helper.start())
            finally:
                helper.close()
        else:
            assert browser.sign_in(github_account()).status_code == 302
            self.client.set_cookie("session", browser.client.get_cookie("session").value)
        if name == "refresh":
            move_app_clock(monkeypatch, 3601)
        elif name == "near-expiry":
            move_app_clock(monkeypatch, 3600 - 30)
        elif name == "revalidation":
            move_app_clock(monkeypatch, REVALIDATE + 1)
        self.before = auth_state(self.client)

    def request(self):
        return self.client.get(self.path)

    def restart(self) -> None:
        """The browser's next request reaches a worker that has just started."""
        cookie = self.client.get_cookie("session").value
        self.client = self.new_worker().test_client()
        self.client.set_cookie("session", cookie)


@pytest.fixture
def stage(request, faulty_app, browser, github_account, emulator, monkeypatch, make_app,
          network):
    return Stage(request.param, faulty_app, browser, github_account, emulator, monkeypatch,
                 make_app, network)


def faulted(stage: Stage, network: FaultyNetwork, fault: str):
    network.faults[{**STAGES, **RIDDEN_OUT}[stage.name]] = fault
    if stage.name == "jwks":
        stage.restart()  # it had the keys from its start; a worker starting now has none
    started = time.monotonic()
    response = stage.request()
    return response, time.monotonic() - started


def wait_as_told(response) -> None:
    """Wait as long as the page's Retry-After says (not at all without one)."""
    time.sleep(int(response.headers.get("Retry-After", "0")))


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", list(STAGES), indirect=True)
def test_fault_shows_a_clear_502_or_503_page(stage, network, fault):
    response, _ = faulted(stage, network, fault)
    page = response.get_data(as_text=True)
    assert response.status_code in (502, 503)
    assert "could not reach the sign-in service" in page
    assert "Try again" in page
    assert "Traceback" not in page
    assert ("You are still signed in" in page) is (stage.name != "callback")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", list(STAGES), indirect=True)
def test_fault_leaves_the_cookie_as_it_was(stage, network, fault):
    faulted(stage, network, fault)
    assert auth_state(stage.client) == stage.before


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", list(STAGES), indirect=True)
def test_after_the_fault_try_again_as_told_works(stage, network, fault):
    response, _ = faulted(stage, network, fault)
    network.faults.clear()
    wait_as_told(response)  # the pause the app gave Supabase, if it gave one
    again = stage.request()  # "Try again": the same request, now that Supabase answers
    assert again.status_code in (200, 302)
    page = stage.client.get("/").get_data(as_text=True)
    assert "Hello," in page


@pytest.mark.parametrize("fault", [*FAULTS, "429", "401"])
@pytest.mark.parametrize("stage", list(RIDDEN_OUT), indirect=True)
def test_fault_while_the_token_is_valid_serves_the_page(stage, network, fault, caplog,
                                                        monkeypatch):
    monkeypatch.setattr(supabase_errors, "_reported", set())  # configuration errors log once
    response, _ = faulted(stage, network, fault)
    assert response.status_code == 200
    assert "Hello," in response.get_data(as_text=True)
    after = auth_state(stage.client)
    # The tokens stay; a session refused on its own notes when it may call again.
    after[STORAGE_KEY].pop(sessions.RETRY_AT, None)
    assert after == stage.before
    assert any(record.levelname in ("WARNING", "ERROR") for record in caplog.records)


@pytest.mark.parametrize("stage", list(RIDDEN_OUT), indirect=True)
def test_after_a_fault_the_check_waits_then_happens(stage, network):
    faulted(stage, network, "503")
    call = RIDDEN_OUT[stage.name]
    network.faults.clear()
    network.calls.clear()
    assert stage.request().status_code == 200
    assert call not in network.calls  # backing off, not calling on every request
    time.sleep(1.1)  # the first back-off is one second
    assert stage.request().status_code == 200
    assert network.calls.count(call) == 1
    assert auth_state(stage.client) != stage.before  # checked_at, or the refreshed tokens


@pytest.mark.parametrize("fault", ["refused", "slow"])
@pytest.mark.parametrize("stage", [*STAGES, *RIDDEN_OUT], indirect=True)
def test_fault_holds_the_worker_no_longer_than_the_timeout(stage, network, fault):
    _, elapsed = faulted(stage, network, fault)
    assert elapsed < TIMEOUT + SLACK


@pytest.mark.parametrize("fault", FAULTS)
def test_starting_a_sign_in_needs_no_call_to_supabase(faulty_app, network, fault):
    network.faults.update({call: fault for call in STAGES.values()})
    network.faults.update({"authorize": fault, "logout": fault})
    response = faulty_app.test_client().get("/signin/github")
    assert response.status_code == 303


@pytest.mark.parametrize("fault", FAULTS)
def test_sign_out_during_a_fault_still_signs_out_here(faulty_app, network, browser, signed_in,
                                                      fault):
    client = faulty_app.test_client()
    client.set_cookie("session", browser.client.get_cookie("session").value)
    token = csrf_token(client.get("/").get_data(as_text=True))
    network.faults["logout"] = fault
    started = time.monotonic()
    response = client.post("/signout", data={"csrf_token": token})
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert response.status_code == 302
    assert auth_state(client)[STORAGE_KEY] is None


# -- a worker started during the fault ---------------------------------------------------------

@pytest.mark.parametrize("fault", FAULTS)
def test_a_worker_started_during_the_fault_verifies_with_the_keys_saved_before(
        make_app, network, browser, signed_in, tmp_path, fault):
    shared = {"SUPABASE_TRANSPORT": network, "SUPABASE_TIMEOUT": TIMEOUT,
              "INSTANCE_PATH": str(tmp_path)}  # the server's instance folder
    make_app(**shared)  # a worker that fetched the keys and kept them
    network.faults[STAGES["jwks"]] = fault
    client = make_app(**shared).test_client()  # recycled, deployed: born in the outage
    client.set_cookie("session", browser.client.get_cookie("session").value)
    response = client.get("/")
    assert response.status_code == 200
    assert "Hello," in response.get_data(as_text=True)


@pytest.mark.parametrize("fault", ["refused", "slow"])
def test_a_worker_starts_during_the_fault_without_waiting_long(make_app, network, fault):
    network.faults[STAGES["jwks"]] = fault
    started = time.monotonic()
    app = make_app(SUPABASE_TRANSPORT=network, SUPABASE_TIMEOUT=TIMEOUT)
    assert time.monotonic() - started < min(TIMEOUT, supabase_client.START_WAIT) + SLACK
    assert app.test_client().get("/healthz").status_code == 200


def test_the_keys_are_kept_where_the_workers_share_them(make_app, tmp_path):
    make_app(INSTANCE_PATH=str(tmp_path))
    saved = tmp_path / supabase_client.SAVED_KEYS
    assert saved.stat().st_mode & 0o777 == 0o600
    assert [key["kid"] for key in json.loads(saved.read_text())["keys"]]


# -- one session refused pauses nobody else ---------------------------------------------------

@pytest.mark.parametrize("fault", ["429", "500", "401", "malformed-json"])
def test_a_refresh_refused_for_one_session_pauses_nobody_elses_check(
        faulty_app, network, emulator, github_account, monkeypatch, fault):
    monkeypatch.setattr(supabase_errors, "_reported", set())
    refused, other = (signed_in_client(faulty_app, emulator, github_account) for _ in range(2))
    move_app_clock(monkeypatch, 3600 - 30)  # both are due a refresh; the first is refused
    network.faults["token?grant_type=refresh_token"] = fault
    assert "Hello," in refused.get("/").get_data(as_text=True)
    network.faults.clear()
    network.calls.clear()
    assert "Hello," in other.get("/").get_data(as_text=True)
    assert network.calls == ["token?grant_type=refresh_token"]  # not paused by the other one
    network.calls.clear()
    assert "Hello," in refused.get("/").get_data(as_text=True)
    assert network.calls == []  # the refused session waits on its own before its next try


@pytest.mark.parametrize("fault", ["refused", "slow", "502-html", "503"])
def test_supabase_out_of_reach_pauses_everyones_calls(
        faulty_app, network, emulator, github_account, monkeypatch, fault):
    first, other = (signed_in_client(faulty_app, emulator, github_account) for _ in range(2))
    move_app_clock(monkeypatch, 3600 - 30)
    network.faults["token?grant_type=refresh_token"] = fault
    assert "Hello," in first.get("/").get_data(as_text=True)
    network.faults.clear()
    network.calls.clear()
    assert "Hello," in other.get("/").get_data(as_text=True)
    assert network.calls == []  # served from the token while the pause lasts


def signed_in_client(app, emulator, github_account):
    """A test client of ``app`` signed in as a new person."""
    helper = Browser(app.test_client(), emulator.url)
    try:
        assert helper.sign_in(github_account()).status_code == 302
    finally:
        helper.close()
    return helper.client


def test_while_calls_are_paused_a_page_that_needs_supabase_answers_at_once(
        faulty_app, network, emulator, github_account, monkeypatch):
    first, other = (signed_in_client(faulty_app, emulator, github_account) for _ in range(2))
    move_app_clock(monkeypatch, REVALIDATE + 1)
    network.faults["user"] = "refused"
    assert "Hello," in first.get("/").get_data(as_text=True)  # the check fails: calls pause
    network.calls.clear()
    # Unlinking needs Supabase (/account itself is served from the token: test_account.py).
    response = other.get("/account/unlink/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 503
    assert "could not reach the sign-in service" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    assert network.calls == []  # the pause's one retry is not this page's to spend
