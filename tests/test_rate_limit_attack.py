"""One person must not pause everyone's checks: an attack on the /token limit, replayed.

The attacker keeps an old cookie of their own (an expired access token and a refresh token
that was already used) and sends it again and again from their own address. Supabase limits
/token per address (the emulator honours Sb-Forwarded-For, as a hosted project does, at the
hosted rate: 150 per five minutes, burst 30), so after thirty refusals the attacker meets 429s.
Those say nothing about anyone else: a ban on another person, at another address, still
reaches them at their next check, within AUTH_REVALIDATE_SECONDS + 5 s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from app import create_app
from emulator.serve import start_background
from tests.helpers import SECRET, SITE_URL, Browser

REVALIDATE = 3  # AUTH_REVALIDATE_SECONDS for this test
BAN_REACHES_WITHIN = REVALIDATE + 5
ATTACKER, VICTIM = "198.51.100.66", "203.0.113.7"
POLL = 0.5  # seconds between two pages of the victim
HAMMERS = 2  # the attacker's requests in flight at once
BOUND = 30  # seconds any wait in this test lasts, at the most


class Clock:
    """The emulator's clock, which the test can set back (to issue a token already expired)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def limited_emulator(clock):
    """An emulator that limits /token per Sb-Forwarded-For address at the hosted rate."""
    running = start_background({"DATABASE": ":memory:", "SITE_URL": SITE_URL,
                                "SB_FORWARDED_FOR": True, "RATE_LIMIT_TOKEN_REFRESH": 150,
                                "REFRESH_TOKEN_REUSE_INTERVAL": 0, "CLOCK": clock})
    yield running
    running.stop()


@pytest.fixture
def app(limited_emulator, tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "SITE_URL": SITE_URL,
                      "INSTANCE_PATH": str(tmp_path),
                      "SUPABASE_URL": limited_emulator.url,
                      "SUPABASE_KEY": limited_emulator.publishable_key,
                      "AUTH_REVALIDATE_SECONDS": REVALIDATE})
    yield app
    app.extensions["supabase"].http.close()


def signed_in(app, emulator, address: str) -> Browser:
    """A browser at ``address`` signed in as a new stand-in account."""
    login = f"person-{address.replace('.', '-')}-{time.monotonic_ns()}"
    created = httpx.post(f"{emulator.url}/github/_accounts", timeout=5, json={
        "login": login, "name": login, "email": f"{login}@example.com", "verified": True})
    assert created.status_code in (200, 201), created.text
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    browser = Browser(client, emulator.url)
    assert browser.sign_in(login).status_code == 302
    return browser


def tokens_in(client) -> dict:
    with client.session_transaction() as sess:
        return dict(sess[STORAGE_KEY])


def attackers_cookie(app, emulator, clock) -> str:
    """The attacker's own cookie, with an expired access token and a used refresh token."""
    clock.offset = -2 * 3600  # the emulator issues tokens that expired an hour ago
    try:
        browser = signed_in(app, emulator, ATTACKER)
    finally:
        clock.offset = 0
    tokens = tokens_in(browser.client)
    assert decode_jwt(tokens["access_token"])["payload"]["exp"] < time.time()
    used = httpx.post(f"{emulator.url}/auth/v1/token", params={"grant_type": "refresh_token"},
                      headers={"apikey": emulator.publishable_key}, timeout=5,
                      json={"refresh_token": tokens["refresh_token"]})
    assert used.status_code == 200, used.text  # the cookie's refresh token is spent now
    browser.close()
    return browser.client.get_cookie("session").value


class Attack:
    """The attacker's cookie sent again and again from their address, in threads."""

    def __init__(self, app, cookie: str) -> None:
        self.app = app
        self.cookie = cookie
        self.seen: Counter[int] = Counter()
        self.retry_after: set[str] = set()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._hammer, daemon=True)
                        for _ in range(HAMMERS)]

    def _hammer(self) -> None:
        client = self.app.test_client()
        client.environ_base["REMOTE_ADDR"] = ATTACKER
        deadline = time.monotonic() + BOUND
        while not self.stop.is_set() and time.monotonic() < deadline:
            client.set_cookie("session", self.cookie)  # whatever the app answered
            response = client.get("/")
            self.seen[response.status_code] += 1  # a Counter's += is not atomic; fine here
            if response.status_code == 429:
                self.retry_after.add(response.headers.get("Retry-After", ""))

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(BOUND)


def wait_for_429(attack: Attack) -> None:
    deadline = time.monotonic() + BOUND
    while not attack.seen[429]:
        assert time.monotonic() < deadline, f"the limit never refused the attacker: {attack.seen}"
        time.sleep(0.05)


def test_an_attack_on_the_token_limit_does_not_hold_up_a_ban_on_someone_else(
        app, limited_emulator, clock):
    victim = signed_in(app, limited_emulator, VICTIM)
    assert "Hello," in victim.client.get("/").get_data(as_text=True)
    user_id = decode_jwt(tokens_in(victim.client)["access_token"])["payload"]["sub"]
    cookie = attackers_cookie(app, limited_emulator, clock)
    service = limited_emulator.service_role_key
    with Attack(app, cookie) as attack:
        wait_for_429(attack)
        time.sleep(REVALIDATE)  # the attack goes on for a whole check window
        banned = httpx.put(f"{limited_emulator.url}/auth/v1/admin/users/{user_id}", timeout=5,
                           json={"ban_duration": "24h"},
                           headers={"apikey": service, "Authorization": f"Bearer {service}"})
        assert banned.status_code == 200, banned.text
        banned_at = time.monotonic()
        assert app.extensions["supabase"].backoff.remaining() == 0  # nobody's calls pause
        while "Hello," in (page := victim.client.get("/").get_data(as_text=True)):
            assert time.monotonic() - banned_at <= BAN_REACHES_WITHIN, "the ban did not arrive"
            time.sleep(POLL)
        reached_after = time.monotonic() - banned_at
    victim.close()
    assert "suspended" in page
    assert reached_after <= BAN_REACHES_WITHIN
    # The attacker met the limit: a 429 saying when one more call comes (2 s at these rates),
    # or a signed-out page when the refusal of their spent refresh token came back; never a 5xx.
    assert attack.seen[429] > 0
    assert set(attack.seen) <= {200, 429}
    assert attack.retry_after == {"2"}


def test_the_emulators_429_carries_what_the_real_servers_does(limited_emulator):
    """GoTrue limits /token with tollbooth's LimitByKeys, which sets no header: no Retry-After,
    no X-Rate-Limit-* or RateLimit-*; only the error code (body and x-sb-error-code)."""
    answers = []
    while not answers or answers[-1].status_code != 429:
        assert len(answers) <= 40, "the burst of 30 never ran out"
        answers.append(httpx.post(f"{limited_emulator.url}/auth/v1/token",
                                  params={"grant_type": "refresh_token"}, timeout=5,
                                  headers={"apikey": limited_emulator.publishable_key,
                                           "Sb-Forwarded-For": "192.0.2.44"},
                                  json={"refresh_token": "spentspentsp"}))
    assert len(answers) > 30  # the burst (and what refilled meanwhile) first
    refused = answers[-1]
    assert refused.headers["x-sb-error-code"] == "over_request_rate_limit"
    assert not [name for name in refused.headers
                if name.lower() == "retry-after" or "ratelimit" in name.lower().replace("-", "")]
