"""Target selection and browserless OAuth helpers for the HTTP conformance suite.

By default the emulator runs in-process on a free loopback port. With AUTH_CONFORMANCE_URL set,
the suite talks to that server instead (see README.md); tests marked `emulator_only` are then
skipped, with the reason given on the marker, and tests marked `gateway` (they check the API
gateway in front of the server, not the server) run only with AUTH_CONFORMANCE_GATEWAY=1.
"""

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from supabase_auth import SyncGoTrueClient

from tests.conformance.hook_receiver import HookReceiver, new_secret
from tests.conformance.support import (
    APP_CALLBACK,
    PASSKEY_ORIGIN,
    PASSKEY_RP_ID,
    PASSKEY_RP_NAME,
    RATE_LIMIT_HEADER,
    REUSE_INTERVAL,
    SITE_URL,
    TIMEOUT,
    URI_ALLOW_LIST,
    consent_submission,
    pkce_pair,
    query_of,
    random_account_fields,
    rate_limit_key,
    single,
)

EXTERNAL_URL = os.environ.get("AUTH_CONFORMANCE_URL", "").rstrip("/")
EXTERNAL_VARS = ("AUTH_CONFORMANCE_ANON_KEY", "AUTH_CONFORMANCE_SERVICE_KEY",
                 "AUTH_CONFORMANCE_GITHUB_URL")
EXTERNAL_GATEWAY = os.environ.get("AUTH_CONFORMANCE_GATEWAY", "") == "1"
API_VERSION = {"X-Supabase-Api-Version": "2024-01-01"}
# A second server with the custom access token hook on (test_conformance_hooks.py).
HOOK_URL = os.environ.get("AUTH_CONFORMANCE_HOOK_URL", "").rstrip("/")
HOOK_PORT = int(os.environ.get("AUTH_CONFORMANCE_HOOK_PORT") or 54329)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "emulator_only(reason): needs an emulator-only knob; skipped with AUTH_CONFORMANCE_URL",
    )
    config.addinivalue_line(
        "markers",
        "gateway: checks the API gateway (apikey rules); with AUTH_CONFORMANCE_URL it runs "
        "only when AUTH_CONFORMANCE_GATEWAY=1",
    )


def pytest_collection_modifyitems(config, items):
    if not EXTERNAL_URL:
        return
    for item in items:
        marker = item.get_closest_marker("emulator_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"emulator-only ({reason})"))
        elif item.get_closest_marker("gateway") is not None and not EXTERNAL_GATEWAY:
            item.add_marker(pytest.mark.skip(
                reason="checks the API gateway; set AUTH_CONFORMANCE_GATEWAY=1 if the server "
                       "is behind one"))


class Clock:
    """The emulator's CLOCK: real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's notion of now forward."""
        self.offset += seconds


@dataclass
class Target:
    """The server under test, as a client sees it."""

    url: str
    anon_key: str
    service_key: str
    github_url: str
    clock: Clock | None = None
    publishable_key: str | None = None
    secret_key: str | None = None

    @property
    def auth_url(self) -> str:
        return self.url + "/auth/v1"


def _external_target() -> Target:
    missing = [name for name in EXTERNAL_VARS if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(f"AUTH_CONFORMANCE_URL is set but {', '.join(missing)} is not")
    return Target(
        url=EXTERNAL_URL,
        anon_key=os.environ["AUTH_CONFORMANCE_ANON_KEY"],
        service_key=os.environ["AUTH_CONFORMANCE_SERVICE_KEY"],
        github_url=os.environ["AUTH_CONFORMANCE_GITHUB_URL"].rstrip("/"),
        publishable_key=os.environ.get("AUTH_CONFORMANCE_PUBLISHABLE_KEY") or None,
        secret_key=os.environ.get("AUTH_CONFORMANCE_SECRET_KEY") or None,
    )


def _emulator(**overrides) -> Iterator[Target]:
    from emulator.serve import start_background  # the only place the suite imports emulator

    clock = Clock()
    config = {
        "DATABASE": ":memory:",
        "SITE_URL": SITE_URL,
        "URI_ALLOW_LIST": URI_ALLOW_LIST,
        "REFRESH_TOKEN_REUSE_INTERVAL": REUSE_INTERVAL,
        # Default limits, keyed like the real server configured per README.md.
        "RATE_LIMIT_HEADER": RATE_LIMIT_HEADER,
        # Passkeys on, as the real server is run for the suite (README.md).
        "PASSKEY_ENABLED": True,
        "WEBAUTHN_RP_ID": PASSKEY_RP_ID,
        "WEBAUTHN_RP_DISPLAY_NAME": PASSKEY_RP_NAME,
        "WEBAUTHN_RP_ORIGINS": PASSKEY_ORIGIN,
        "CLOCK": clock,
        **overrides,
    }
    running = start_background(config)
    try:
        yield Target(running.url, running.anon_key, running.service_role_key,
                     running.url + "/github", clock, running.publishable_key,
                     running.secret_key)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    """The server under test: the in-process emulator, or AUTH_CONFORMANCE_URL."""
    if EXTERNAL_URL:
        yield _external_target()
    else:
        yield from _emulator()


@pytest.fixture(scope="session")
def hook_receiver() -> Iterator[HookReceiver]:
    """The hook endpoint the hooked server calls (a free port for the emulator; with
    AUTH_CONFORMANCE_HOOK_URL, AUTH_CONFORMANCE_HOOK_PORT and the secrets the server was given)."""
    if EXTERNAL_URL and not HOOK_URL:
        pytest.skip("set AUTH_CONFORMANCE_HOOK_URL (a server with the custom access token hook "
                    "on), AUTH_CONFORMANCE_HOOK_PORT and AUTH_CONFORMANCE_HOOK_SECRETS")
    if EXTERNAL_URL:
        secret_list = [part for part in os.environ.get("AUTH_CONFORMANCE_HOOK_SECRETS", "")
                       .split("|") if part]
        if not secret_list:
            raise pytest.UsageError("AUTH_CONFORMANCE_HOOK_URL is set but "
                                    "AUTH_CONFORMANCE_HOOK_SECRETS is not")
        receiver = HookReceiver(HOOK_PORT, secret_list)
    else:
        receiver = HookReceiver(0, [new_secret(), new_secret()])
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def hooked_target(hook_receiver: HookReceiver) -> Iterator[Target]:
    """A server that runs the custom access token hook at ``hook_receiver`` on every token."""
    if EXTERNAL_URL:
        external = _external_target()
        external.url = HOOK_URL
        yield external
        return
    yield from _emulator(HOOK_CUSTOM_ACCESS_TOKEN_ENABLED=True,
                         HOOK_CUSTOM_ACCESS_TOKEN_URI=hook_receiver.uri,
                         HOOK_CUSTOM_ACCESS_TOKEN_SECRETS="|".join(hook_receiver.secrets))


@pytest.fixture(scope="session")
def short_exp_target() -> Iterator[Target]:
    """A second emulator whose access tokens live one second (JWT_EXP=1)."""
    if EXTERNAL_URL:
        pytest.skip("emulator-only: needs JWT_EXP=1")
    yield from _emulator(JWT_EXP=1)


@pytest.fixture(scope="session")
def passkeys_off_target() -> Iterator[Target]:
    """A second emulator with passkeys off (the emulator's own default)."""
    if EXTERNAL_URL:
        pytest.skip("emulator-only: needs a second server with passkeys off; the server under "
                    "test has them on")
    yield from _emulator(PASSKEY_ENABLED=False)


@pytest.fixture
def clock(target: Target) -> Iterator[Clock]:
    """The target's movable clock, put back to real time after the test."""
    if target.clock is None:
        pytest.skip("emulator-only: needs the emulator's CLOCK")
    yield target.clock
    target.clock.offset = 0.0


def _client(base_url: str, headers: dict[str, str]) -> httpx.Client:
    """A client with its own POST /token rate-limit bucket."""
    return httpx.Client(base_url=base_url, headers={**rate_limit_key(), **headers},
                        timeout=TIMEOUT, follow_redirects=False)


@pytest.fixture
def publishable_key(target: Target) -> str:
    """The target's publishable key (sb_publishable_…)."""
    if target.publishable_key is None:
        pytest.skip("set AUTH_CONFORMANCE_PUBLISHABLE_KEY to check publishable keys")
    return target.publishable_key


@pytest.fixture
def secret_key(target: Target) -> str:
    """The target's secret key (sb_secret_…)."""
    if target.secret_key is None:
        pytest.skip("set AUTH_CONFORMANCE_SECRET_KEY to check secret keys")
    return target.secret_key


@pytest.fixture
def keyed_http(target: Target) -> Iterator[Callable[..., httpx.Client]]:
    """Make raw /auth/v1 clients that send a given apikey (and more headers) by default."""
    clients: list[httpx.Client] = []

    def make(apikey: str, **headers: str) -> httpx.Client:
        clients.append(_client(target.auth_url, {"apikey": apikey, **API_VERSION, **headers}))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def http(target: Target) -> Iterator[httpx.Client]:
    """A raw client for /auth/v1 with the anon apikey and the 2024-01-01 API version."""
    with _client(target.auth_url, {"apikey": target.anon_key, **API_VERSION}) as client:
        yield client


@pytest.fixture
def bare_http(target: Target) -> Iterator[httpx.Client]:
    """A raw client for /auth/v1 that sends no apikey and no API version."""
    with _client(target.auth_url, {}) as client:
        yield client


@pytest.fixture
def admin(target: Target) -> Iterator[httpx.Client]:
    """A raw client for /auth/v1 authenticated with the service_role key."""
    headers = {"apikey": target.service_key, "Authorization": f"Bearer {target.service_key}",
               **API_VERSION}
    with _client(target.auth_url, headers) as client:
        yield client


@pytest.fixture
def gotrue(target: Target) -> Iterator[SyncGoTrueClient]:
    """The real supabase_auth client in PKCE mode, as an app would configure it."""
    client = SyncGoTrueClient(
        url=target.auth_url,
        headers={"apikey": target.anon_key, **rate_limit_key()},
        flow_type="pkce",
        auto_refresh_token=False,
        http_client=httpx.Client(timeout=TIMEOUT, follow_redirects=True),
    )
    with client:
        yield client


class StandIn:
    """The GitHub stand-in the target is configured with."""

    def __init__(self, target: Target, http: httpx.Client) -> None:
        self.url = target.github_url
        self._http = http

    def create_account(self, verified: bool = True, email: str | None = None) -> dict:
        """Seed a fresh account (emulator-only POST /_accounts) and return its fields."""
        fields = random_account_fields(verified=verified, email=email)
        resp = self._http.post(self.url + "/_accounts", json=fields)
        assert resp.status_code in (200, 201), resp.text
        return fields


@pytest.fixture
def stand_in(target: Target, http: httpx.Client) -> StandIn:
    return StandIn(target, http)


@dataclass
class Flow:
    """One browserless pass through /authorize, the consent page and /callback."""

    verifier: str
    state: str
    account: dict
    callback: httpx.Response

    @property
    def location(self) -> str:
        return self.callback.headers["location"]

    @property
    def code(self) -> str:
        return single(query_of(self.location))["code"]


class OAuth:
    """Drives the OAuth dance over HTTP, one request at a time (no redirect following)."""

    def __init__(self, http: httpx.Client, stand_in: StandIn) -> None:
        self.http = http
        self.stand_in = stand_in

    def authorize(self, params: dict | None = None, headers: dict | None = None,
                  method: str | None = "s256") -> tuple[httpx.Response, str | None]:
        """GET /authorize for GitHub with a fresh PKCE pair; returns (response, verifier)."""
        query = {"provider": "github"}
        verifier = None
        if method is not None:
            verifier, challenge = pkce_pair(method)
            query |= {"code_challenge": challenge, "code_challenge_method": method}
        query |= params or {}
        return self.http.get("/authorize", params=query, headers=headers), verifier

    def consent(self, github_location: str, login: str | None = None,
                button: str = "Authorize") -> httpx.Response:
        """Open the stand-in's consent page and press a button; returns its redirect."""
        page = self.http.get(github_location)
        assert page.status_code == 200, page.text
        method, url, data = consent_submission(page, login, button)
        resp = self.http.request(method, url, data=data)
        assert resp.status_code in (302, 303), resp.text
        return resp

    def run(self, account: dict | None = None, *, redirect_to: str | None = APP_CALLBACK,
            method: str = "s256", params: dict | None = None, headers: dict | None = None,
            button: str = "Authorize") -> Flow:
        """Authorize, approve (or press `button`) as `account`, and call /callback."""
        account = account or self.stand_in.create_account()
        params = dict(params or {})
        if redirect_to is not None:
            params["redirect_to"] = redirect_to
        resp, verifier = self.authorize(params, headers, method)
        assert resp.status_code == 302, resp.text
        github_location = resp.headers["location"]
        state = single(query_of(github_location))["state"]
        back = self.consent(github_location, account["login"], button)
        callback = self.http.get(back.headers["location"])
        return Flow(verifier, state, account, callback)

    def exchange(self, code: str, verifier: str) -> httpx.Response:
        """POST /token?grant_type=pkce."""
        return self.http.post("/token", params={"grant_type": "pkce"},
                              json={"auth_code": code, "code_verifier": verifier})


@pytest.fixture
def oauth(http: httpx.Client, stand_in: StandIn) -> OAuth:
    return OAuth(http, stand_in)


@pytest.fixture
def oauth_for(target: Target) -> Callable[[httpx.Client], OAuth]:
    """Make an OAuth driver for another client (e.g. one with a different apikey)."""
    return lambda http: OAuth(http, StandIn(target, http))


@pytest.fixture
def oauth_code(oauth: OAuth):
    """Full round trip to a PKCE code: call it (optionally with an account); returns a Flow."""

    def run(account: dict | None = None, **kwargs) -> Flow:
        flow = oauth.run(account, **kwargs)
        assert flow.callback.status_code == 302, flow.callback.text
        assert "code" in query_of(flow.location), flow.location
        return flow

    return run


@pytest.fixture
def sign_in(oauth: OAuth, oauth_code):
    """Round trip plus POST /token?grant_type=pkce; returns the session JSON."""

    def run(account: dict | None = None, **kwargs) -> dict:
        flow = oauth_code(account, **kwargs)
        resp = oauth.exchange(flow.code, flow.verifier)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return run


@pytest.fixture
def refresh(http: httpx.Client):
    """POST /token?grant_type=refresh_token with the given token."""

    def run(token: str) -> httpx.Response:
        return http.post("/token", params={"grant_type": "refresh_token"},
                         json={"refresh_token": token})

    return run


@pytest.fixture
def bearer(http: httpx.Client):
    """GET/POST a path with an access token as Bearer: bearer("GET", "/user", jwt)."""

    def run(method: str, path: str, jwt: str, **kwargs) -> httpx.Response:
        return http.request(method, path, headers={"Authorization": f"Bearer {jwt}"}, **kwargs)

    return run


@pytest.fixture
def short_exp_http(short_exp_target: Target) -> Iterator[httpx.Client]:
    """Like `http`, for the JWT_EXP=1 emulator."""
    headers = {"apikey": short_exp_target.anon_key, **API_VERSION}
    with _client(short_exp_target.auth_url, headers) as client:
        yield client


@pytest.fixture
def short_exp_sign_in(short_exp_target: Target, short_exp_http: httpx.Client):
    """Like `sign_in`, for the JWT_EXP=1 emulator."""
    oauth = OAuth(short_exp_http, StandIn(short_exp_target, short_exp_http))

    def run() -> dict:
        flow = oauth.run()
        resp = oauth.exchange(flow.code, flow.verifier)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return run


@pytest.fixture
def client_sign_in(gotrue: SyncGoTrueClient, oauth: OAuth, stand_in: StandIn):
    """Sign in through the real client: sign_in_with_oauth, consent, exchange_code_for_session."""

    def run(account: dict | None = None):
        account = account or stand_in.create_account()
        options = {"redirect_to": APP_CALLBACK}
        url = gotrue.sign_in_with_oauth({"provider": "github", "options": options}).url
        resp = oauth.http.get(url)
        assert resp.status_code == 302, resp.text
        back = oauth.consent(resp.headers["location"], account["login"])
        callback = oauth.http.get(back.headers["location"])
        code = single(query_of(callback.headers["location"]))["code"]
        return gotrue.exchange_code_for_session({"auth_code": code}).session

    return run
