"""A gunicorn worker started while Supabase cannot be reached still serves signed-in people.

The app runs under gunicorn (one worker) behind a relay to the emulator. A person signs in;
the relay fails (refused, or a black hole); the worker is killed and gunicorn starts another,
as a deploy, a crash or ``--max-requests`` would. The new worker boots within a bounded time
and verifies the person's token with the keys the first worker kept in the instance folder:
the page is served as usual, no slower than SUPABASE_TIMEOUT + 1 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.crowd import Browsers, Person
from tests.processes import Relay, app_site, workers

SUPABASE_TIMEOUT = 1.0
GUNICORN = ["-w", "1", "-k", "gthread", "--threads", "2", "--log-level", "warning"]
BOOT_WITHIN = 20  # seconds for gunicorn to start the new worker, at the most
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def fail(relay: Relay, mode: str) -> None:
    relay.refuse() if mode == "refused" else relay.blackhole()


def replaced(master: int, old: int) -> int:
    """Kill the worker ``old``; the pid of the one gunicorn starts instead."""
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + BOOT_WITHIN
    while time.monotonic() < deadline:
        now = [pid for pid in workers(master) if pid != old]
        if now:
            return now[0]
        time.sleep(0.1)
    raise AssertionError("gunicorn started no new worker")


async def scenario(site, mode: str):
    async with Browsers() as browsers:
        person = Person(0, browsers, site.url)
        landed = await person.sign_in()
        assert landed is not None and landed.greeted
        await asyncio.to_thread(fail, site.relay, mode)
        master = site.gunicorn.pid
        new = await asyncio.to_thread(replaced, master, workers(master)[0])
        deadline = time.monotonic() + BOOT_WITHIN
        while True:  # the new worker answers once it has booted (its own wait is bounded)
            try:
                health, _ = await person.open("/healthz")
                if health.status_code == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the new worker never answered"
            await asyncio.sleep(0.2)
        pages = [(await person.open("/"))[1] for _ in range(3)]
        return new, pages


@pytest.mark.parametrize("mode", ["refused", "blackhole"])
def test_a_worker_started_during_an_outage_serves_signed_in_people(tmp_path, mode):
    settings = {"TRUSTED_PROXY_COUNT": 1, "SUPABASE_TIMEOUT": SUPABASE_TIMEOUT}
    with app_site(tmp_path, settings, gunicorn_options=GUNICORN, relay=True,
                  SB_FORWARDED_FOR="true") as site:
        new, pages = asyncio.run(scenario(site, mode))
        assert new in workers(site.gunicorn.pid)
    assert [(page.status, page.greeted) for page in pages] == [(200, True)] * 3
    assert max(page.seconds for page in pages) <= SUPABASE_TIMEOUT + 1
