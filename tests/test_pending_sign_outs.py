"""Signing out while Supabase is unreachable: signed out here now, at Supabase once it answers."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import httpx
import jwt
import pytest
from supabase_auth.constants import STORAGE_KEY

import pending_sign_outs
from tests.helpers import SECRET, Browser, csrf_token

PAUSE = 1.1  # the back-off's first pause (1 s), and a little


class Switch(httpx.BaseTransport):
    """The real network to the emulator, or (``down``) connections refused; counts the calls."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.down = False
        self.answer: httpx.Response | None = None  # a canned answer instead of the emulator's
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.split("/auth/v1/", 1)[-1]
        grant = request.url.params.get("grant_type")
        self.calls.append(f"{name}?grant_type={grant}" if grant else name)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.answer is not None and name in ("logout", "token"):
            return self.answer
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def network():
    switch = Switch()
    yield switch
    switch.close()


@pytest.fixture
def instance(tmp_path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def app(make_app, network, instance):
    return make_app(SUPABASE_TRANSPORT=network, SUPABASE_TIMEOUT=0.5, INSTANCE_PATH=str(instance))


@pytest.fixture
def person(app, emulator, github_account):
    """A signed-in browser of ``app``; ``person.copy`` is the cookie a thief would keep."""
    browser = Browser(app.test_client(), emulator.url)
    assert browser.sign_in(github_account()).status_code == 302
    browser.copy = browser.client.get_cookie("session").value
    with browser.client.session_transaction() as sess:
        browser.tokens = dict(sess[STORAGE_KEY])
    yield browser
    browser.close()


def sign_out(client) -> str:
    """Press Sign out on the home page; the page it lands on."""
    page = client.get("/").get_data(as_text=True)
    response = client.post("/signout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return client.get("/").get_data(as_text=True)


def sign_out_unreached(person, network) -> str:
    person.client.get("/")  # the page with the form, while Supabase still answers
    network.down = True
    try:
        return sign_out(person.client)
    finally:
        network.down = False


def at_supabase(emulator, access_token: str) -> int:
    """The status GET /user gives the token straight from the emulator (403: session gone)."""
    response = httpx.get(f"{emulator.url}/auth/v1/user", timeout=5, headers={
        "apikey": emulator.publishable_key, "Authorization": f"Bearer {access_token}"})
    return response.status_code


def waiting(app) -> int:
    outbox = app.extensions[pending_sign_outs.EXTENSION]
    with outbox._database.connect() as connection:
        return connection.execute("SELECT COUNT(*) FROM pending_sign_outs").fetchone()[0]


def test_signing_out_while_supabase_answers_ends_the_session_there(person, emulator):
    page = sign_out(person.client)
    assert "You have been signed out." in page
    assert at_supabase(emulator, person.tokens["access_token"]) == 403


def test_signing_out_unreached_signs_out_here_and_tells_the_truth(app, person, network, emulator):
    page = sign_out_unreached(person, network)
    assert "Sign in with GitHub" in page
    assert "You are signed out here" in page
    assert "still works until we do" in page
    assert "automatically as soon as the service answers" in page
    assert waiting(app) == 1
    assert at_supabase(emulator, person.tokens["access_token"]) == 200  # not yet


def test_the_pending_sign_out_is_sent_at_the_first_request_after_the_back_off(
        app, person, network, emulator):
    sign_out_unreached(person, network)
    network.calls.clear()
    app.test_client().get("/")
    assert "logout" not in network.calls  # the back-off is under way: nothing is tried
    time.sleep(PAUSE)
    app.test_client().get("/")  # anyone's request, signed in or not
    assert network.calls.count("logout") == 1
    assert waiting(app) == 0
    assert at_supabase(emulator, person.tokens["access_token"]) == 403


def test_a_kept_copy_of_the_cookie_stops_working_once_supabase_is_back(
        make_app, app, person, network, emulator):
    sign_out_unreached(person, network)
    time.sleep(PAUSE)
    app.test_client().get("/")
    thief = make_app(AUTH_REVALIDATE_SECONDS=0).test_client()  # checks at every request
    thief.set_cookie("session", person.copy)
    page = thief.get("/account", follow_redirects=True).get_data(as_text=True)
    assert "Your session has ended" in page
    assert "Sign in with GitHub" in page


def test_each_request_sends_one_pending_sign_out(app, emulator, github_account, network):
    people = [Browser(app.test_client(), emulator.url) for _ in range(2)]
    try:
        for browser in people:
            browser.sign_in(github_account())
            browser.client.get("/")
        network.down = True
        for browser in people:
            sign_out(browser.client)
        network.down = False
        time.sleep(PAUSE)
        network.calls.clear()
        app.test_client().get("/")
        assert network.calls.count("logout") == 1
        app.test_client().get("/")
        assert network.calls.count("logout") == 2
    finally:
        for browser in people:
            browser.close()
    assert waiting(app) == 0


def test_a_sign_out_another_worker_is_sending_is_not_sent_twice(make_app, app, person, network,
                                                                 instance):
    sign_out_unreached(person, network)
    other = make_app(INSTANCE_PATH=str(instance))  # a second worker of the same server
    with other.app_context():
        claimed = other.extensions[pending_sign_outs.EXTENSION]._claim()
    assert claimed is not None
    time.sleep(PAUSE)
    network.calls.clear()
    app.test_client().get("/")
    assert "logout" not in network.calls
    assert waiting(app) == 1


def test_an_expired_access_token_is_refreshed_then_signed_out(app, person, network, emulator,
                                                               monkeypatch):
    sign_out_unreached(person, network)
    old = person.tokens["access_token"]  # as if it had expired meanwhile
    monkeypatch.setattr(pending_sign_outs, "_usable", lambda token: token != old)
    time.sleep(PAUSE)
    network.calls.clear()
    app.test_client().get("/")
    assert network.calls == ["token?grant_type=refresh_token"]  # one call per request
    app.test_client().get("/")
    assert network.calls[1:] == ["logout"]
    assert waiting(app) == 0
    refreshed = httpx.post(f"{emulator.url}/auth/v1/token?grant_type=refresh_token", timeout=5,
                           headers={"apikey": emulator.publishable_key},
                           json={"refresh_token": person.tokens["refresh_token"]})
    assert refreshed.status_code == 400  # the copy cannot be refreshed either


def test_a_session_already_over_at_supabase_leaves_the_outbox(app, person, network, admin):
    sign_out_unreached(person, network)
    user_id = pending_sign_outs.decode_jwt(person.tokens["access_token"])["payload"]["sub"]
    assert admin.delete(f"/admin/users/{user_id}").status_code == 200
    time.sleep(PAUSE)
    app.test_client().get("/")
    assert waiting(app) == 0


def test_a_rate_limited_sign_out_waits_without_pausing_everyones_checks(app, person, network):
    sign_out_unreached(person, network)
    time.sleep(PAUSE)
    network.answer = httpx.Response(429, json={"code": "over_request_rate_limit",
                                               "message": "Too many requests"})
    backoff = app.extensions["supabase"].backoff
    app.test_client().get("/")
    assert backoff.ready()  # a refusal of one session is no outage
    assert waiting(app) == 1
    network.calls.clear()
    app.test_client().get("/")
    assert "logout" not in network.calls  # it waits WAIT_AFTER_REFUSAL before trying again


def test_when_the_outbox_is_full_the_person_is_told_copies_stay_valid(app, person, network,
                                                                     monkeypatch):
    monkeypatch.setattr(pending_sign_outs, "MAX_PENDING", 0)
    page = sign_out_unreached(person, network)
    assert "Sign in with GitHub" in page
    assert "nor keep the request for later" in page
    assert "Sign out everywhere" in page
    assert waiting(app) == 0


def test_the_outbox_is_owner_only_and_holds_no_readable_token(app, person, network, instance):
    sign_out_unreached(person, network)
    files = [path for path in instance.iterdir() if path.is_file()]
    assert files
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        content = path.read_bytes()
        for name in ("access_token", "refresh_token"):
            assert person.tokens[name].encode() not in content, (path, name)


def test_no_token_reaches_the_logs(app, person, network, caplog):
    with caplog.at_level("INFO"):
        sign_out_unreached(person, network)
        time.sleep(PAUSE)
        app.test_client().get("/")
    assert "kept and will be sent" in caplog.text
    assert "reached Supabase" in caplog.text
    for name in ("access_token", "refresh_token"):
        assert person.tokens[name] not in caplog.text


def test_a_sign_out_sealed_under_a_forgotten_key_is_dropped(make_app, app, person, network,
                                                             instance, caplog):
    sign_out_unreached(person, network)
    rotated = make_app(INSTANCE_PATH=str(instance), SECRET_KEY="another-" + SECRET)
    time.sleep(PAUSE)
    rotated.test_client().get("/")
    assert waiting(app) == 0
    assert "SECRET_KEY no longer known" in caplog.text


def test_a_sign_out_sealed_under_a_fallback_key_is_still_sent(make_app, person, network,
                                                               instance, emulator):
    sign_out_unreached(person, network)
    rotated = make_app(INSTANCE_PATH=str(instance), SECRET_KEY="another-" + SECRET,
                       SECRET_KEY_FALLBACKS=[SECRET])
    rotated.test_client().get("/")
    assert at_supabase(emulator, person.tokens["access_token"]) == 403


def test_a_broken_outbox_never_breaks_a_page(app, person, network, monkeypatch, caplog):
    sign_out_unreached(person, network)
    time.sleep(PAUSE)

    def broken(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(pending_sign_outs.Outbox, "_claim", broken)
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert "could not be read or updated" in caplog.text


def test_a_sign_out_that_cannot_be_kept_says_so(app, person, network, monkeypatch):
    outbox = app.extensions[pending_sign_outs.EXTENSION]

    def broken():
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(outbox._database, "connect", broken)
    page = sign_out_unreached(person, network)
    assert "Sign in with GitHub" in page
    assert "nor keep the request for later" in page


@pytest.mark.parametrize("lifetime, left, usable", [
    (3600, 3000, True), (3600, 20, False), (12, 10, True), (12, 2, False), (12, -1, False)])
def test_a_token_is_sent_while_it_has_time_left(lifetime, left, usable):
    now = int(time.time())
    token = jwt.encode({"iat": now + left - lifetime, "exp": now + left}, "k" * 32)
    assert pending_sign_outs._usable(token) is usable
