"""A newcomer's first hour in the app: the right host name, providers that work, and pages that
name the real cause (a reopened callback, Supabase away, a wrong address)."""

from __future__ import annotations

import html
import re
import types
from urllib.parse import unquote

import httpx
import pytest

import refetched
from tests.helpers import csrf_token
from tests.processes import free_port

SITE = "http://localhost:5000"


@pytest.fixture
def debug_app(make_app):
    """The app as `make dev` runs it: debug mode, SITE_URL on localhost."""
    return make_app(DEBUG=True, SITE_URL=SITE)


# -- one host name in debug ------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1:5000", "[::1]:5000", "127.0.0.1", "localhost:5001"])
def test_debug_sends_another_host_name_to_site_url_before_storing_anything(debug_app, host):
    response = debug_app.test_client().get("/signin/github?next=/account",
                                           base_url=f"http://{host}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{SITE}/signin/github?next=/account"
    assert "Set-Cookie" not in response.headers


def test_debug_keeps_a_forms_method_on_the_way(debug_app):
    response = debug_app.test_client().post("/signout", base_url="http://127.0.0.1:5000")
    assert response.status_code == 307
    assert response.headers["Location"] == f"{SITE}/signout"


@pytest.mark.parametrize("host", ["localhost:5000", "LOCALHOST:5000"])
def test_debug_serves_site_urls_own_host(debug_app, host):
    response = debug_app.test_client().get("/signin/github", base_url=f"http://{host}")
    assert response.status_code == 303  # on to Supabase, with the verifier kept
    assert any(cookie.startswith("session=") for cookie in response.headers.getlist("Set-Cookie"))
    assert "redirect_to=http://localhost:5000/callback" in unquote(response.headers["Location"])


def test_outside_debug_the_host_is_left_to_trusted_hosts(make_app):
    response = make_app(SITE_URL=SITE).test_client().get("/", base_url="http://127.0.0.1:5000")
    assert response.status_code == 200


# -- the callback, opened again --------------------------------------------------------------

def test_a_callback_opened_again_after_sign_out_says_it_was_used(client, browser,
                                                                 github_account):
    assert browser.sign_in(github_account()).status_code == 302
    used = browser.last_callback
    client.post("/signout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    response = client.get(used)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "already been used" in page
    assert "another browser" not in page


# -- Supabase away ---------------------------------------------------------------------------

class Switch(httpx.BaseTransport):
    """The real network to the emulator, until ``down``; ``settings`` stands in for the
    project's /settings answer."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.down = False
        self.settings: dict | None = None
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path.rsplit("/", 1)[-1])
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.settings is not None and request.url.path.endswith("/settings"):
            return httpx.Response(200, json=self.settings)
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def network():
    switch = Switch()
    yield switch
    switch.close()


@pytest.fixture
def clock(monkeypatch):
    moved = Clock()
    monkeypatch.setattr(refetched, "time", types.SimpleNamespace(monotonic=moved.monotonic))
    return moved


def buttons(response) -> list[str]:
    return re.findall(r">Sign in with ([^<]+)</a>", response.get_data(as_text=True))


@pytest.mark.parametrize("path", ["/signin", "/signin/github?next=/account"])
def test_sign_in_while_supabase_cannot_be_reached_is_a_503_with_try_again(make_app, path):
    client = make_app(SUPABASE_URL=f"http://127.0.0.1:{free_port()}").test_client()
    response = client.get(path)
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 503
    assert "could not reach the sign-in service" in page
    assert f'href="{path}">Try again' in page


def test_sign_in_during_the_back_off_is_a_503_without_a_call(make_app, network, clock):
    app = make_app(SUPABASE_TRANSPORT=network)
    client = app.test_client()
    assert client.get("/").status_code == 200  # the project's settings, while it answers
    network.down = True
    clock.now += 6  # that answer is older than FRESH
    app.extensions["supabase"].backoff.failed()  # a session check just found Supabase away
    network.calls.clear()
    assert client.get("/signin/github").status_code == 503
    assert client.get("/signin/github").status_code == 503
    assert network.calls == []  # the pause's one retry belongs to the first call after it


def test_only_enabled_providers_while_supabase_is_away_and_after_it_returns(
        make_app, network, clock):
    app = make_app(SUPABASE_TRANSPORT=network, AUTH_PROVIDERS="github,gitlab,apple")
    client = app.test_client()
    assert buttons(client.get("/")) == ["GitHub", "GitLab"]  # the project has no Apple
    network.down = True
    clock.now += 61  # the settings are due again, and cannot be had
    assert buttons(client.get("/")) == ["GitHub", "GitLab"]
    assert client.get("/signin/gitlab").status_code == 503
    network.down = False
    network.settings = {"external": {"github": True, "gitlab": False}}  # back, changed
    app.extensions["supabase"].backoff.succeeded()  # its pause is over
    clock.now += 6
    assert buttons(client.get("/")) == ["GitHub"]
    response = client.get("/signin/gitlab")
    assert response.status_code == 404
    assert "GitLab is not enabled" in response.get_data(as_text=True)


# -- error pages in the app's voice ----------------------------------------------------------

@pytest.mark.parametrize("method, path, status, said, stock", [
    ("get", "/no-such-page", 404, "There is no page at this address",
     "The requested URL was not found"),
    ("put", "/", 405, "This page cannot be used that way", "The method is not allowed"),
])
def test_error_pages_speak_in_the_apps_voice(client, method, path, status, said, stock):
    response = getattr(client, method)(path)
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert said in page
    assert stock not in page


def test_an_error_that_says_its_own_cause_keeps_it(client):
    response = client.get("/signin/myspace")
    assert response.status_code == 404
    assert "Signing in with &#39;myspace&#39; is not available here." in response.get_data(
        as_text=True)


# -- the app and the emulator on one host name -----------------------------------------------

def test_the_emulators_cookie_stays_apart_from_the_apps(app):
    """Cookies ignore ports: on localhost the app (5000) and the emulator (54321) share them."""
    from emulator import close_app
    from emulator import create_app as create_emulator

    emulator_app = create_emulator({"DATABASE": ":memory:"})
    try:
        assert emulator_app.config["SESSION_COOKIE_NAME"] != app.config["SESSION_COOKIE_NAME"]
        assert "session" != emulator_app.config["SESSION_COOKIE_NAME"]
    finally:
        close_app(emulator_app)


def test_no_enabled_provider_says_so_instead_of_an_empty_list(make_app, network):
    network.settings = {"external": {"github": False, "gitlab": False, "google": False}}
    client = make_app(SUPABASE_TRANSPORT=network).test_client()
    for path in ("/", "/signin"):
        response = client.get(path)
        assert buttons(response) == []
        assert "No way of signing in is switched on for this site right now" in response.get_data(
            as_text=True)
