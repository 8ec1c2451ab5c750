"""Races on a real threaded server: parallel requests at token expiry, tabs, double callbacks."""

from __future__ import annotations

import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from tests.helpers import SECRET, SITE_URL, Browser, live_server

JWT_EXP = 2  # seconds an access token lives on this module's emulator
REUSE_INTERVAL = 3  # seconds a rotated refresh token may still be presented
PARALLEL = 20


@pytest.fixture(scope="module")
def short_lived_emulator():
    """An emulator whose access tokens expire after JWT_EXP seconds."""
    from emulator.serve import start_background

    # Every race refreshes many times from one address: lift Supabase's /token limit here.
    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL,
                                "JWT_EXP": JWT_EXP, "REFRESH_TOKEN_REUSE_INTERVAL": REUSE_INTERVAL,
                                "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000})
    yield running
    running.stop()


@pytest.fixture
def served(short_lived_emulator, tmp_path):
    """The app on a threaded werkzeug server on loopback, and a test client for signing in."""
    from app import create_app

    def build(url: str):
        return create_app({"TESTING": True, "SECRET_KEY": SECRET, "SITE_URL": SITE_URL,
                           "INSTANCE_PATH": str(tmp_path),
                           "SUPABASE_URL": short_lived_emulator.url,
                           "SUPABASE_KEY": short_lived_emulator.anon_key})

    with live_server(build) as (url, app):
        browser = Browser(app.test_client(), short_lived_emulator.url)
        yield types.SimpleNamespace(app=app, url=url, browser=browser)
        browser.close()


@pytest.fixture
def login(short_lived_emulator):
    login = f"racer-{time.monotonic_ns()}"
    response = httpx.post(f"{short_lived_emulator.url}/github/_accounts", timeout=5,
                          json={"login": login, "name": "Race Runner",
                                "email": f"{login}@example.com", "verified": True})
    assert response.status_code in (200, 201)
    return login


def get_all(url: str, paths: list[str], cookie: str) -> list[tuple[float, httpx.Response]]:
    """Send the requests at once, as one browser's tabs and images would; (finished, response)."""
    barrier = threading.Barrier(len(paths))

    def one(path: str):
        with httpx.Client(timeout=10) as http:
            barrier.wait()
            response = http.get(url + path, headers={"Cookie": f"session={cookie}"})
            return time.monotonic(), response

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(one, paths))


def kept_cookie(results, cookie: str) -> str:
    """The cookie a browser keeps: the one set by the response that arrived last."""
    for _, response in sorted(results, key=lambda pair: pair[0]):
        cookie = response.cookies.get("session", cookie)
    return cookie


def access_token_expiry(app, cookie: str) -> int:
    tokens = app.session_interface.get_signing_serializer(app).loads(cookie)[STORAGE_KEY]
    return decode_jwt(tokens["access_token"])["payload"]["exp"]


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


@pytest.fixture
def expired_cookie(served, login):
    """A signed-in cookie whose access token has just expired."""
    assert served.browser.sign_in(login).status_code == 302
    cookie = served.browser.client.get_cookie("session").value
    wait_until(access_token_expiry(served.app, cookie) + 0.2)
    return cookie


def test_parallel_requests_at_expiry_all_succeed(served, expired_cookie):
    results = get_all(served.url, ["/"] * (PARALLEL // 2) + ["/account"] * (PARALLEL // 2),
                      expired_cookie)
    assert [r.status_code for _, r in results] == [200] * PARALLEL
    assert all("Hello," in r.text or "Linked identities" in r.text for _, r in results)


def test_session_is_good_after_parallel_requests_at_expiry(served, expired_cookie):
    results = get_all(served.url, ["/"] * PARALLEL, expired_cookie)
    cookie = kept_cookie(results, expired_cookie)
    # Past the token's expiry and the refresh token's reuse interval: only a real session works.
    wait_until(max(access_token_expiry(served.app, cookie), time.time() + REUSE_INTERVAL) + 0.5)
    with httpx.Client(timeout=10) as http:
        page = http.get(served.url + "/", headers={"Cookie": f"session={cookie}"}).text
    assert "Hello," in page


def test_every_cookie_handed_out_at_expiry_stays_good(served, expired_cookie):
    results = get_all(served.url, ["/"] * PARALLEL, expired_cookie)
    cookies = {r.cookies.get("session", expired_cookie) for _, r in results}
    wait_until(time.time() + REUSE_INTERVAL + 0.5)
    with httpx.Client(timeout=10) as http:
        pages = [http.get(served.url + "/", headers={"Cookie": f"session={c}"}).text
                 for c in cookies]
    assert all("Hello," in page for page in pages)


def test_two_tabs_finishing_sign_in_at_once_both_land(served, login):
    browser = served.browser
    paths = [browser.callback_path(login, browser.start()) for _ in range(2)]
    cookie = browser.client.get_cookie("session").value
    results = get_all(served.url, paths, cookie)
    assert [r.status_code for _, r in results] == [302, 302]
    assert all(r.headers["Location"] == "/" for _, r in results)
    with httpx.Client(timeout=10) as http:
        page = http.get(served.url + "/",
                        headers={"Cookie": f"session={kept_cookie(results, cookie)}"}).text
    assert "Hello," in page


def test_the_same_callback_hit_twice_at_once_ends_signed_in(served, login):
    browser = served.browser
    path = browser.callback_path(login, browser.start())
    cookie = browser.client.get_cookie("session").value
    results = get_all(served.url, [path, path], cookie)
    assert all(r.status_code < 500 for _, r in results)
    with httpx.Client(timeout=10) as http:
        page = http.get(served.url + "/",
                        headers={"Cookie": f"session={kept_cookie(results, cookie)}"}).text
    assert "Hello," in page
