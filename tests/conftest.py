"""Fixtures shared by the app's tests: a real emulator on loopback, the app, a signed-in browser."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from app import create_app

SITE_URL = "http://127.0.0.1:5000"
SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests never read the developer's Supabase or Flask settings."""
    for name in list(os.environ):
        if name.startswith("AUTH_CONFORMANCE_"):  # chooses the conformance suite's target
            continue
        if name.startswith(("SUPABASE_", "FLASK_", "AUTH_", "EMULATOR_")) or name in (
            "SECRET_KEY", "SITE_URL"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def emulator():
    """One emulator for the whole run, on a free port, with an in-memory database."""
    from emulator.serve import start_background

    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL})
    yield running
    running.stop()


@pytest.fixture
def make_app(emulator):
    """Build an app against the emulator; keyword arguments override settings."""
    apps = []

    def make(**overrides):
        settings = {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SUPABASE_URL": emulator.url,
            "SUPABASE_KEY": emulator.anon_key,
            "SITE_URL": SITE_URL,
            **overrides,
        }
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["supabase"].http.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(emulator):
    """The emulator's admin API with the service_role key, as a team's backend would call it."""
    key = emulator.service_role_key
    with httpx.Client(base_url=f"{emulator.url}/auth/v1", timeout=5,
                      headers={"apikey": key, "Authorization": f"Bearer {key}"}) as http:
        yield http


@pytest.fixture
def github_account(emulator):
    """Create a stand-in GitHub account and return its login."""
    counter = iter(range(1, 10_000))

    def create(login: str | None = None, *, verified: bool = True, name: str | None = None) -> str:
        login = login or f"user{next(counter)}-{os.urandom(3).hex()}"
        account = {"login": login, "name": name or login.title(),
                   "email": f"{login}@example.com", "verified": verified}
        response = httpx.post(f"{emulator.url}/github/_accounts", json=account, timeout=5)
        assert response.status_code in (200, 201), response.text
        return login

    return create


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

    def start(self, path: str = "/signin/github") -> httpx.Response:
        """Click a sign-in button; return the stand-in's consent page."""
        response = self.client.get(path)
        assert response.status_code == 303, response.status_code
        return self._follow(response.headers["Location"])

    def approve(self, login: str, consent: httpx.Response | None = None, *, action: str = ""):
        """Pick ``login`` on the consent page; return the app's answer to the callback."""
        consent = consent or self.start()
        form = next(f for f in self._forms(consent) if "state" in f["fields"])
        fields = {**form["fields"], "login": login, "action": action or "authorize"}
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


@pytest.fixture
def browser(client, emulator):
    """A browser whose app requests go through ``client``."""
    instance = Browser(client, emulator.url)
    yield instance
    instance.close()


@pytest.fixture
def signed_in(browser, github_account):
    """A browser signed in as a fresh stand-in account; returns the account's login."""
    login = github_account()
    response = browser.sign_in(login)
    assert response.status_code == 302, response.get_data(as_text=True)
    return login


def csrf_token(page_html: str) -> str:
    """The CSRF token from a page's first form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert match, "no CSRF token on the page"
    return match.group(1)
