"""Fixtures: an in-memory emulator app with a movable clock, and a sign-in helper."""

import pytest

from emulator import close_app, create_app, keys
from tests.emulator.emulator_helpers import VERIFIER, auth_code


class Clock:
    """A settable clock for CLOCK, starting at a fixed moment."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_app(clock):
    """Build apps with test config; close them all afterwards."""
    apps = []

    def build(**overrides):
        config = {"DATABASE": ":memory:", "CLOCK": clock, "GITHUB_AUTO_LOGIN": "octocat"}
        app = create_app({**config, **overrides})
        app.testing = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def anon():
    return {"apikey": keys.ANON_KEY}


@pytest.fixture
def admin():
    return {"apikey": keys.SERVICE_ROLE_KEY, "Authorization": f"Bearer {keys.SERVICE_ROLE_KEY}"}


@pytest.fixture
def sign_in(client, anon):
    """Return a function that signs in through the whole flow and returns the session JSON."""
    def run(**params):
        code = auth_code(client, **params)
        response = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                               json={"auth_code": code, "code_verifier": VERIFIER})
        assert response.status_code == 200, response.json
        return response.json
    return run
