"""Fixtures shared by the app's tests: a real emulator on loopback, the app, a signed-in browser."""

from __future__ import annotations

import os

import httpx
import pytest

from app import create_app
from tests.helpers import SECRET, SITE_URL, Browser


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

    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL,
                                "PROVIDERS": "github,gitlab,google", "MANUAL_LINKING": True,
                                # The whole suite signs in and refreshes from 127.0.0.1.
                                "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000})
    yield running
    running.stop()


@pytest.fixture
def make_app(emulator, tmp_path_factory):
    """Build an app against the emulator; keyword arguments override settings."""
    apps = []

    def make(**overrides):
        settings = {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
            "SECRET_KEY": SECRET,
            "SUPABASE_URL": emulator.url,
            "SUPABASE_KEY": emulator.publishable_key,  # a new project's key
            "SITE_URL": SITE_URL,
            "GITHUB_API_URL": f"{emulator.url}/github/api/v3",
            "AUTH_PROVIDERS": "github,gitlab,google",
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
    """Create a stand-in account (GitHub's unless ``provider`` says otherwise); its login."""
    counter = iter(range(1, 10_000))

    def create(login: str | None = None, *, verified: bool = True, name: str | None = None,
               provider: str = "github") -> str:
        login = login or f"user{next(counter)}-{os.urandom(3).hex()}"
        account = {"login": login, "name": name or login.title(),
                   "email": f"{login}@example.com", "verified": verified}
        response = httpx.post(f"{emulator.url}/{provider}/_accounts", json=account, timeout=5)
        assert response.status_code in (200, 201), response.text
        return login

    return create


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


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium through Playwright, once per module (see tests/browsers.py)."""
    from tests.browsers import launched

    with launched() as browser:
        yield browser
