"""Load and soak: gunicorn and the emulator as processes on loopback, 50 browsers at once.

Short by default (LOAD_SECONDS=10); `LOAD_SECONDS=300 .venv/bin/python -m pytest
tests/test_load.py` is the five-minute soak.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.helpers import SECRET, Browser, csrf_token
from tests.processes import emulator_process, free_port, gunicorn_process, status_of, workers

LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "10"))
WARM_UP = min(4.0, LOAD_SECONDS / 3)
CLIENTS = 50
pytestmark = [pytest.mark.slow, pytest.mark.timeout(LOAD_SECONDS + 90)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The emulator (auto-approving as octocat) and the app under gunicorn, on free ports."""
    app_url = f"http://127.0.0.1:{free_port()}"
    database = tmp_path_factory.mktemp("load") / "auth.sqlite3"
    # 50 browsers sign in and refresh from 127.0.0.1 at once: lift the /token limit.
    with emulator_process(app_url, database, GITHUB_AUTO_LOGIN="octocat",
                          RATE_LIMIT_TOKEN_REFRESH=1_000_000_000) as emulator:
        # TESTING: the production guard rightly refuses the emulator's demo key otherwise.
        settings = {"TESTING": True, "SECRET_KEY": SECRET, "SITE_URL": app_url,
                    "SUPABASE_URL": emulator.url, "SUPABASE_KEY": emulator.anon_key,
                    # /account reads the GitHub profile: the stand-in's, not api.github.com.
                    "GITHUB_API_URL": f"{emulator.url}/github/api/v3"}
        options = ["-w", "2", "-k", "gthread", "--threads", "4", "--log-level", "warning"]
        with gunicorn_process(app_url, settings, options=options) as gunicorn:
            yield {"app": app_url, "gunicorn": gunicorn}


class Tally:
    """What the clients saw, counted across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sign_ins = 0

    def add(self, response: httpx.Response) -> httpx.Response:
        with self.lock:
            for seen in [*response.history, response]:
                self.statuses[seen.status_code] += 1
        return response


def browse(app_url: str, deadline: float, tally: Tally) -> None:
    """One person: sign in, open signed-in pages, sign out; again until the deadline."""
    with httpx.Client(timeout=15, follow_redirects=True) as http:
        while time.monotonic() < deadline:
            try:
                home = tally.add(http.get(f"{app_url}/signin/github"))
                if "Hello," not in home.text:
                    raise AssertionError(f"not signed in after the round trip: {home.url}")
                with tally.lock:
                    tally.sign_ins += 1
                tally.add(http.get(f"{app_url}/account"))
                page = tally.add(http.get(f"{app_url}/")).text
                token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
                tally.add(http.post(f"{app_url}/signout", data={"csrf_token": token}))
            except (httpx.HTTPError, AssertionError, AttributeError) as error:
                with tally.lock:
                    tally.errors[type(error).__name__] += 1


@pytest.fixture(scope="module")
def load_run(stack):
    """Run the load once; sample the workers after warm-up and at the end."""
    tally = Tally()
    start = time.monotonic()
    deadline = start + LOAD_SECONDS
    clients = [threading.Thread(target=browse, args=(stack["app"], deadline, tally))
               for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    time.sleep(WARM_UP)
    master = stack["gunicorn"].pid
    warm = {pid: status_of(pid) for pid in workers(master)}
    for client in clients:
        client.join(timeout=LOAD_SECONDS + 60)
    end = {pid: status_of(pid) for pid in workers(master)}
    print(f"\nload: {LOAD_SECONDS:.0f} s, {CLIENTS} clients, {tally.sign_ins} sign-ins, "
          f"statuses {dict(tally.statuses)}, errors {dict(tally.errors)}, "
          f"workers warm {warm}, end {end}")
    return {"tally": tally, "warm": warm, "end": end}


def test_load_sees_no_5xx(load_run):
    tally = load_run["tally"]
    assert tally.sign_ins >= CLIENTS
    assert sum(n for status, n in tally.statuses.items() if status >= 500) == 0


def test_load_every_client_request_completes(load_run):
    assert not load_run["tally"].errors


def test_load_keeps_the_same_workers(load_run):
    assert set(load_run["end"]) == set(load_run["warm"])


def test_load_grows_no_threads(load_run):
    for pid, warm in load_run["warm"].items():
        assert load_run["end"][pid]["threads"] <= warm["threads"]


def test_load_keeps_memory_within_ten_percent(load_run):
    for pid, warm in load_run["warm"].items():
        assert load_run["end"][pid]["rss_kb"] <= warm["rss_kb"] * 1.10


def test_signed_out_and_refreshed_tokens_leave_the_claims_cache(make_app, emulator,
                                                                github_account):
    """What keeps RSS flat in the soak: the cache holds live sessions, not every token seen."""
    app = make_app(AUTH_REVALIDATE_SECONDS=0)  # every request refreshes
    cache = app.extensions["supabase"].tokens._claims
    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        for _ in range(5):
            page = browser.client.get("/").get_data(as_text=True)
        assert len(cache) == 1
        browser.client.post("/signout", data={"csrf_token": csrf_token(page)})
    finally:
        browser.close()
    assert len(cache) == 0
