"""Helpers for the app's tests: a browser that crosses from the app to the emulator and back."""

from __future__ import annotations

import html
import re
import secrets
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pyotp
from flask import Flask
from werkzeug.serving import make_server

SITE_URL = "http://127.0.0.1:5000"
SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


class FormParser(HTMLParser):
    """Collects the forms of a page: action, method and input values (first radio checked)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "fields": {}, "buttons": []})
        elif tag in ("input", "button") and self.forms:
            form = self.forms[-1]
            if tag == "button" or attrs.get("type") == "submit":
                form["buttons"].append(attrs)
            elif attrs.get("type") not in ("radio", "checkbox") or "checked" in attrs:
                form["fields"].setdefault(attrs.get("name"), attrs.get("value", ""))


class Browser:
    """Follows a sign-in across the app (Flask test client) and the emulator (httpx)."""

    def __init__(self, client, emulator_url: str) -> None:
        self.client = client
        self.emulator = httpx.Client(timeout=5)
        self.emulator_url = emulator_url
        self.last_callback = ""

    def close(self) -> None:
        self.emulator.close()

    def start(self, path: str = "/signin/github", data: dict | None = None) -> httpx.Response:
        """Click a sign-in button (or submit a form, with ``data``); return the consent page."""
        response = self.client.get(path) if data is None else self.client.post(path, data=data)
        return self._follow(moving_on(response))

    def approve(self, login: str | None, consent: httpx.Response | None = None, *,
                action: str = ""):
        """Pick ``login`` (None: the page's default) on the consent page; the app's answer."""
        consent = consent or self.start()
        form = next(f for f in self._forms(consent) if "state" in f["fields"])
        fields = {**form["fields"], "action": action or "authorize"}
        if login is not None:
            fields["login"] = login
        response = self.emulator.post(urljoin(str(consent.url), form["action"]), data=fields)
        return self.back_to_app(response)

    def cancel(self, consent: httpx.Response | None = None):
        return self.approve("", consent, action="cancel")

    def back_to_app(self, response: httpx.Response):
        """Follow emulator redirects until one points at the app, then let the app answer it."""
        while response.is_redirect:
            location = urljoin(str(response.url), response.headers["Location"])
            if location.startswith(SITE_URL):
                parts = urlsplit(location)
                self.last_callback = f"{parts.path or '/'}?{parts.query}"
                return self.client.get(self.last_callback)
            response = self.emulator.get(location)
        raise AssertionError(f"the emulator answered {response.status_code}: {response.text}")

    def callback_path(self, login: str, consent: httpx.Response) -> str:
        """Approve on the consent page; the app's callback path, not yet opened in the app."""
        app_client, self.client = self.client, _PathRecorder()
        try:
            return self.approve(login, consent)
        finally:
            self.client = app_client

    def sign_in(self, login: str):
        """The whole round trip; the app's final answer (a redirect on success)."""
        return self.approve(login)

    def _follow(self, location: str) -> httpx.Response:
        response = self.emulator.get(location)
        while response.is_redirect:
            response = self.emulator.get(urljoin(str(response.url), response.headers["Location"]))
        assert response.status_code == 200, response.text
        return response

    @staticmethod
    def _forms(page: httpx.Response) -> list[dict]:
        parser = FormParser()
        parser.feed(page.text)
        return parser.forms


def moving_on(response) -> str:
    """Where the app sends the browser next: a 303's Location, or a page's meta refresh."""
    if response.status_code == 303:
        return response.headers["Location"]
    page = response.get_data(as_text=True)
    match = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', page)
    assert response.status_code == 200 and match, (response.status_code, page[:500])
    return html.unescape(match.group(1))


class _PathRecorder:
    """Stands in for the app's test client: returns the path it was asked to open."""

    @staticmethod
    def get(path: str) -> str:
        return path


@contextmanager
def live_server(build_app: Callable[[str], Flask]) -> Iterator[tuple[str, Flask]]:
    """Serve ``build_app(url)`` on a free loopback port with threads; stop it afterwards."""
    server = make_server("127.0.0.1", 0, None, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    server.app = build_app(url)  # the app may need its own address (SITE_URL)
    thread = threading.Thread(target=server.serve_forever, name="live-app", daemon=True)
    thread.start()
    try:
        yield url, server.app
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        server.app.extensions["supabase"].http.close()


@contextmanager
def live_site_with_emulator(emulator_settings: dict | None = None,
                            **app_settings) -> Iterator[tuple[str, object]]:
    """The app on a live loopback port and an in-memory emulator whose SITE_URL is that port;
    (the app's URL, the running emulator). Both are stopped afterwards."""
    from app import create_app
    from emulator.serve import start_background

    emulators = []

    def build(url: str):
        # The emulator's SITE_URL is the app's address, known once the server is bound.
        emulator = start_background({"DATABASE": ":memory:", "SITE_URL": url,
                                     **(emulator_settings or {})})
        emulators.append(emulator)
        return create_app({
            "TESTING": True,
            "INSTANCE_PATH": tempfile.mkdtemp(prefix="instance-"),  # never the repository's
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SUPABASE_URL": emulator.url,
            "SUPABASE_KEY": emulator.publishable_key,
            "SITE_URL": url,
            "GITHUB_API_URL": f"{emulator.url}/github/api/v3",
            **app_settings,
        })

    try:
        with live_server(build) as (url, _app):
            yield url, emulators[0]
    finally:
        for emulator in emulators:
            emulator.stop()


def move_app_clock(monkeypatch, seconds: float) -> None:
    """Make the app (only the app, not the emulator) believe ``seconds`` have passed."""
    import auth
    import sessions

    moved = types.SimpleNamespace(time=lambda: time.time() + seconds)
    for module in (auth, sessions):
        monkeypatch.setattr(module, "time", moved)


def csrf_token(page_html: str) -> str:
    """The CSRF token from a page's first form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def set_up_authenticator(client, name: str = "Phone",
                         clock: Callable[[], float] = time.time) -> tuple[str, str]:
    """Set up an authenticator app on /account as a person does: read the secret off the page,
    enter its current code. Returns (secret, factor id); the session is at aal2 afterwards."""
    page = client.get("/account/two-factor").get_data(as_text=True)
    shown = client.post("/account/two-factor", data={"csrf_token": csrf_token(page), "name": name})
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200, body[:500]
    grouped = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', body).group(1)
    secret = grouped.replace(" ", "")
    factor_id = re.search(r"/account/two-factor/([0-9a-f-]{36})/confirm", body).group(1)
    code = pyotp.TOTP(secret).at(clock())
    done = client.post(f"/account/two-factor/{factor_id}/confirm",
                       data={"csrf_token": csrf_token(body), "code": code})
    assert done.status_code == 302, done.get_data(as_text=True)[:500]
    return secret, factor_id
