"""A rush of sign-ins when Supabase does not honour Sb-Forwarded-For.

Then every code exchange counts against the app server's one POST /token bucket (the emulator's
defaults: burst 30, refilled at 150 per 5 minutes). Everyone beyond the burst must get the 429
page (Retry-After, "Too many sign-ins", a Try again link to the same callback), never a 5xx;
each then follows Try again, paced to the bucket's refill and well inside the five minutes a
code lives, and ends signed in.

CI size by default (45 people at once: about 50 s). The full size, by hand (about 4 minutes):

    RUSH_PEOPLE=120 .venv/bin/python -m pytest tests/test_scale_signin_rush.py -s
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter, deque
from dataclasses import dataclass

import httpx
import pytest

from emulator.config import DEFAULTS as EMULATOR_DEFAULTS
from emulator.ratelimit import BURST, WINDOW
from tests.crowd import (
    Browsers,
    Person,
    errors_of,
    server_errors,
    try_again_link,
    visits_of,
)
from tests.processes import Site, app_site

PEOPLE = int(os.environ.get("RUSH_PEOPLE", "45"))
REFILL_EVERY = WINDOW / EMULATOR_DEFAULTS["RATE_LIMIT_TOKEN_REFRESH"]  # s per /token call
PACE = REFILL_EVERY * 1.1  # one retry at a time, a little slower than the bucket refills
CODE_LIFETIME = EMULATOR_DEFAULTS["FLOW_STATE_EXPIRY"]  # seconds a sign-in's code is good for
RETRIES_WITHIN = CODE_LIFETIME - 60  # every retry this long after the rush at the latest
ATTEMPTS = 4  # Try again presses per refused person, at the most
TOKEN_LIFETIME = 3600  # no refresh competes with the sign-ins for the bucket
GUNICORN = ["-w", "2", "-k", "gthread", "--threads", "4", "--log-level", "warning"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RETRIES_WITHIN + 120)]


@dataclass
class Rush:
    """Who was refused, what the 429 page said, and what the app asked Supabase."""

    people: list[Person]
    refusals: dict[int, httpx.Response]  # person -> the first 429 page they got
    presses: Counter[int]  # person -> Try again presses
    calls: Counter[tuple[str, int]]
    rush_seconds: float  # from the first sign-in to the last callback answered
    seconds: float  # until the last person was signed in (or the retries gave up)


async def rush(site: Site) -> Rush:
    """Everyone starts signing in at once; those refused press Try again, one at a time."""
    log = site.emulator_log
    before = await asyncio.to_thread(log.mark)
    async with Browsers() as browsers:
        people = [Person(index, browsers, site.url) for index in range(PEOPLE)]
        start = time.monotonic()
        callbacks = await asyncio.gather(*(first_try(person) for person in people))
        rush_seconds = time.monotonic() - start
        refusals = {person.index: callback for person, callback in zip(people, callbacks,
                                                                       strict=True)
                    if callback is not None and callback.status_code == 429}
        await asyncio.gather(*(person.land(callback) for person, callback
                               in zip(people, callbacks, strict=True)
                               if callback is not None and callback.is_redirect))
        presses = await try_again([people[index] for index in refusals], refusals,
                                  start + RETRIES_WITHIN)
        seconds = time.monotonic() - start
    return Rush(people, refusals, presses, log.calls(before, await asyncio.to_thread(log.mark)),
                rush_seconds, seconds)


async def first_try(person: Person) -> httpx.Response | None:
    """The app's answer at the callback (None when there was none)."""
    try:
        return await person.start_sign_in()
    except (httpx.HTTPError, AssertionError) as error:
        person.failed(error)
        return None


async def try_again(refused: list[Person], refusals: dict[int, httpx.Response],
                    deadline: float) -> Counter[int]:
    """Press each 429 page's Try again, one person every PACE seconds (a person refused
    again goes to the back of the line), until all are signed in or the deadline."""
    line = deque(refused)
    presses: Counter[int] = Counter()
    for _ in range(ATTEMPTS * len(refused)):
        if not line or time.monotonic() + PACE > deadline:
            break
        await asyncio.sleep(PACE)
        person = line.popleft()
        link = try_again_link(refusals[person.index].text)
        if link is None:
            continue  # the test on the page says what is missing
        presses[person.index] += 1
        try:
            response, _ = await person.open(link)
            if response.status_code == 429:
                line.append(person)
            else:
                await person.land(response)
        except (httpx.HTTPError, AssertionError) as error:
            person.failed(error)
    return presses


@pytest.fixture(scope="module")
def rush_run(tmp_path_factory) -> Rush:
    """The emulator with its default /token limit, keyed on the app server's address only."""
    if (PEOPLE - BURST) * PACE > RETRIES_WITHIN:
        pytest.fail(f"RUSH_PEOPLE={PEOPLE} cannot all sign in: one bucket of {BURST} refilled "
                    f"every {REFILL_EVERY:.0f} s admits about {BURST + RETRIES_WITHIN / PACE:.0f}"
                    f" in the {RETRIES_WITHIN} s the retries may take")
    settings = {"TRUSTED_PROXY_COUNT": 1}
    with app_site(tmp_path_factory.mktemp("rush"), settings, gunicorn_options=GUNICORN,
                  GITHUB_AUTO_LOGIN="octocat", JWT_EXP=TOKEN_LIFETIME) as site:
        run = asyncio.run(rush(site))
    visits = visits_of(run.people)
    print(f"\nsign-in rush: {PEOPLE} people at once, /token bucket {BURST} refilled every "
          f"{REFILL_EVERY:.0f} s, Try again every {PACE:.1f} s | {len(run.refusals)} refused "
          f"in the rush ({run.rush_seconds:.1f} s), Try again presses "
          f"{sum(run.presses.values())} (most by one person "
          f"{max(run.presses.values(), default=0)}), signed in at the end "
          f"{sum(p.signed_in_at is not None for p in run.people)} | {len(visits)} requests, "
          f"statuses {dict(Counter(v.status for v in visits))}, failed requests "
          f"{sum(errors_of(run.people).values())} | emulator calls "
          f"{dict(sorted(run.calls.items()))} | {run.seconds:.0f} s")
    return run


def test_every_request_is_answered(rush_run):
    assert not errors_of(rush_run.people)


def test_no_sign_in_meets_a_server_error(rush_run):
    assert server_errors(visits_of(rush_run.people)) == []


def test_those_beyond_the_burst_are_refused(rush_run):
    # The bucket starts full; while the rush lasts it refills a little.
    refilled = math.ceil(rush_run.rush_seconds / REFILL_EVERY) + 1
    assert PEOPLE - BURST - refilled <= len(rush_run.refusals) <= PEOPLE - BURST


def test_a_refused_sign_in_gets_the_429_page(rush_run):
    for page in rush_run.refusals.values():
        assert page.status_code == 429
        assert page.headers["Retry-After"].isdigit()
        assert "Too many sign-ins" in page.text


def test_try_again_retries_the_same_callback(rush_run):
    for index, page in rush_run.refusals.items():
        assert try_again_link(page.text) == rush_run.people[index].callback_path


def test_everyone_ends_signed_in(rush_run):
    assert [person.index for person in rush_run.people if person.signed_in_at is None] == []


def test_each_code_is_exchanged_once(rush_run):
    refused = sum(visit.status == 429 for visit in visits_of(rush_run.people))
    assert rush_run.calls["pkce", 200] == PEOPLE
    assert rush_run.calls["pkce", 429] == refused
    assert sum(n for (kind, _), n in rush_run.calls.items() if kind == "pkce") == PEOPLE + refused
