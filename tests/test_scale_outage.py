"""Outage drill: Supabase goes away for a while and comes back; people stay signed in throughout.

A relay of the test's own sits between the app and the emulator (SUPABASE_URL is the relay).
The outage either refuses connections (Supabase down) or accepts them and never answers (a
black hole: each call waits SUPABASE_TIMEOUT). Meanwhile the team bans one person through the
emulator's admin API, which the relay does not stand in front of. Nobody whose token is valid
may meet a 5xx or be signed out during the outage; once the relay is back, everyone else goes
on signed in and is checked again, and the banned person is signed out ("suspended") within
AUTH_REVALIDATE_SECONDS + the back-off's longest pause + one page.

CI size by default (100 people, a check every 5 s, 15 s outage, SUPABASE_TIMEOUT=1: about a
minute per variant). The full size, by hand (about 10 minutes):

    OUTAGE_SECONDS=120 OUTAGE_REVALIDATE_SECONDS=60 OUTAGE_SUPABASE_TIMEOUT=5 \\
    .venv/bin/python -m pytest tests/test_scale_outage.py -s
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from sessions import REFRESH_MARGIN
from tests.crowd import (
    Browsers,
    Person,
    Visit,
    errors_of,
    server_errors,
    sleep_until,
    visits_of,
)
from tests.processes import Relay, Site, app_site, status_of, workers

PEOPLE = int(os.environ.get("OUTAGE_PEOPLE", "100"))
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "15"))
REVALIDATE_SECONDS = int(os.environ.get("OUTAGE_REVALIDATE_SECONDS", "5"))
SUPABASE_TIMEOUT = float(os.environ.get("OUTAGE_SUPABASE_TIMEOUT", "1"))
PAGE_EVERY = 5.0  # seconds between two pages of one person
SIGNIN_SECONDS = PEOPLE / 20  # sign-ins spread over
WARM_SECONDS = REVALIDATE_SECONDS + 2 * PAGE_EVERY  # everyone checked with Supabase at least once
BAN_AFTER = min(3.0, OUTAGE_SECONDS / 4)  # seconds into the outage
BACKOFF_LONGEST = 15  # the app's pause between checks while Supabase fails, at the most
# From the relay's return until the banned person's page says so (their request is sent).
BAN_REACHES_WITHIN = REVALIDATE_SECONDS + BACKOFF_LONGEST + PAGE_EVERY
AFTER_SECONDS = BAN_REACHES_WITHIN + 2 * PAGE_EVERY  # browsing after the return, at the most
DRILL_SECONDS = SIGNIN_SECONDS + WARM_SECONDS + OUTAGE_SECONDS + AFTER_SECONDS
TOKEN_LIFETIME = 3600
assert DRILL_SECONDS < TOKEN_LIFETIME - REFRESH_MARGIN, "a token would need a refresh"
THREADS = 4
GUNICORN = ["-w", "2", "-k", "gthread", "--threads", str(THREADS), "--log-level", "warning"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(DRILL_SECONDS + 120)]


@dataclass
class Drill:
    """What everyone saw, when the outage began and ended, and who was banned."""

    mode: str
    people: list[Person]
    banned: Person
    outage: tuple[float, float]  # time.monotonic() once the relay failed; as it came back
    banned_at: float
    warm: dict[int, dict[str, int]]  # app worker pid -> threads and RSS, before the outage
    end: dict[int, dict[str, int]]  # the same, at the end
    accepted: Counter[str]  # connections the relay accepted, by its state at the time
    calls_during: Counter[tuple[str, int]]  # what reached the emulator during the outage
    seconds: float

    def others(self) -> list[Person]:
        return [person for person in self.people if person is not self.banned]

    def during(self, person: Person) -> list[Visit]:
        """The person's pages asked for and answered while the relay was failing."""
        began, returned = self.outage
        return [visit for visit in person.visits
                if began <= visit.sent and visit.sent + visit.seconds < returned]

    def after(self, person: Person) -> list[Visit]:
        """The person's pages asked for after the relay came back."""
        return [visit for visit in person.visits if visit.sent >= self.outage[1]]

    def ban_reached(self) -> Visit | None:
        """The banned person's first page that said the account was suspended."""
        return next((visit for visit in self.banned.visits if visit.suspended), None)


class Schedule:
    """When people stop browsing; moved earlier once the drill has seen what it needs."""

    def __init__(self, until: float) -> None:
        self.until = until


async def browse(person: Person, sign_in_at: float, schedule: Schedule) -> None:
    """Sign in at ``sign_in_at``, then open the home page every PAGE_EVERY seconds."""
    await sleep_until(sign_in_at)
    try:
        await person.sign_in()
    except (httpx.HTTPError, AssertionError) as error:
        person.failed(error)
    if person.signed_in_at is None:
        return
    for page in range(1, int(DRILL_SECONDS / PAGE_EVERY) + 2):
        moment = person.signed_in_at + page * PAGE_EVERY
        if moment > schedule.until:
            return
        await sleep_until(moment)
        try:
            await person.open("/")
        except httpx.HTTPError as error:
            person.failed(error)


async def ban(site: Site, user_id: str) -> None:
    """The team bans a user through the admin API, straight at the emulator."""
    key = site.emulator.service_role_key
    async with httpx.AsyncClient(timeout=10) as admin:
        response = await admin.put(f"{site.emulator.url}/auth/v1/admin/users/{user_id}",
                                   json={"ban_duration": "24h"},
                                   headers={"apikey": key, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text


def fail(relay: Relay, mode: str) -> None:
    relay.refuse() if mode == "refused" else relay.blackhole()


def seen_enough(people: list[Person], banned: Person, returned: float) -> bool:
    """The ban reached its person, and every other person was checked again since the return
    (a check with Supabase writes a new cookie)."""
    return any(visit.suspended for visit in banned.visits) and all(
        any(visit.renewed for visit in person.visits if visit.sent >= returned)
        for person in people if person is not banned)


async def drill(site: Site, mode: str) -> Drill:
    """Everyone signs in and browses; the relay fails, a ban is made, the relay returns."""
    relay, log = site.relay, site.emulator_log
    async with Browsers() as browsers:
        people = [Person(index, browsers, site.url) for index in range(PEOPLE)]
        banned = people[PEOPLE // 2]
        start = time.monotonic()
        schedule = Schedule(start + DRILL_SECONDS)
        browsing = asyncio.gather(*(browse(person, start + SIGNIN_SECONDS * i / PEOPLE,
                                           schedule) for i, person in enumerate(people)))
        await sleep_until(start + SIGNIN_SECONDS + WARM_SECONDS)
        warm = {pid: status_of(pid) for pid in workers(site.gunicorn.pid)}
        await asyncio.to_thread(fail, relay, mode)
        began = time.monotonic()
        # Calls answered before the relay failed may still be on their way into the log.
        before = await asyncio.to_thread(log.mark, 0.2, 1)
        await sleep_until(began + BAN_AFTER)
        await ban(site, banned.user_id())
        banned_at = time.monotonic()
        await sleep_until(began + OUTAGE_SECONDS)
        during = await asyncio.to_thread(log.mark, 0.2, 1)
        returned = time.monotonic()  # a request in flight now may already be checked
        await asyncio.to_thread(relay.up)
        schedule.until = returned + AFTER_SECONDS
        while time.monotonic() < schedule.until and not seen_enough(people, banned, returned):
            await asyncio.sleep(0.5)
        schedule.until = min(schedule.until, time.monotonic() + PAGE_EVERY)
        await browsing
        end = {pid: status_of(pid) for pid in workers(site.gunicorn.pid)}
    return Drill(mode, people, banned, (began, returned), banned_at, warm, end,
                 Counter(relay.accepted), log.calls(before, during), time.monotonic() - start)


@pytest.fixture(scope="module", params=["refused", "blackhole"])
def outage(request, tmp_path_factory) -> Drill:
    """The emulator (default /token limit, per Sb-Forwarded-For), a relay, the app behind it."""
    settings = {"AUTH_REVALIDATE_SECONDS": REVALIDATE_SECONDS, "TRUSTED_PROXY_COUNT": 1,
                "SUPABASE_TIMEOUT": SUPABASE_TIMEOUT}
    with app_site(tmp_path_factory.mktemp(f"outage-{request.param}"), settings,
                  gunicorn_options=GUNICORN, relay=True, SB_FORWARDED_FOR="true",
                  JWT_EXP=TOKEN_LIFETIME) as site:
        run = asyncio.run(drill(site, request.param))
    print("\n" + summary(run))
    return run


def summary(run: Drill) -> str:
    """One line with the drill's settings and what happened."""
    visits = visits_of(run.people)
    during = [visit for person in run.people for visit in run.during(person)]
    reached = run.ban_reached()
    delay = f"{reached.sent - run.outage[1]:.1f} s" if reached else "never"
    slow = sum(visit.seconds > 1 for visit in during)
    return (
        f"outage ({run.mode}): {PEOPLE} people, {OUTAGE_SECONDS:.0f} s outage, "
        f"AUTH_REVALIDATE_SECONDS={REVALIDATE_SECONDS}, SUPABASE_TIMEOUT={SUPABASE_TIMEOUT:g} | "
        f"{len(visits)} requests ({len(during)} during the outage, {slow} of them over 1 s, "
        f"slowest {max((v.seconds for v in during), default=0):.2f} s), "
        f"{len(server_errors(visits))} "
        f"5xx, statuses {dict(Counter(v.status for v in visits))}, failed requests "
        f"{sum(errors_of(run.people).values())} | ban made {run.banned_at - run.outage[0]:.1f} s"
        f" into the outage, reached its person {delay} after the return (bound "
        f"{BAN_REACHES_WITHIN:.0f} s) | relay accepted {dict(run.accepted)}, emulator calls "
        f"during the outage {dict(run.calls_during)} | workers {run.warm} -> {run.end} | "
        f"{run.seconds:.0f} s")


def test_every_request_is_answered(outage):
    assert not errors_of(outage.people)
    assert all(person.signed_in_at is not None for person in outage.people)


def test_no_answer_is_a_server_error(outage):
    assert server_errors(visits_of(outage.people)) == []


def test_everyone_stays_signed_in_during_the_outage(outage):
    # The banned person too: nothing can tell the app about the ban while Supabase is away.
    assert all(outage.during(person) for person in outage.people)
    during = [visit for person in outage.people for visit in outage.during(person)]
    assert [v for v in during if v.status != 200 or not v.greeted] == []


def test_the_outage_cuts_the_app_off_from_supabase(outage):
    assert set(outage.calls_during) == {("admin", 200)}  # only the team's ban got through
    # A successful check would have written a new cookie.
    assert not any(visit.renewed for person in outage.people for visit in outage.during(person))


def test_everyone_else_stays_signed_in_after_the_return(outage):
    after = [visit for person in outage.others() for visit in outage.after(person)]
    assert after
    assert [v for v in after if v.status != 200 or not v.greeted] == []


def test_everyone_else_is_checked_again_after_the_return(outage):
    unchecked = [person.index for person in outage.others()
                 if not any(visit.renewed for visit in outage.after(person))]
    assert unchecked == []


def test_the_ban_reaches_its_person_soon_after_the_return(outage):
    reached, returned = outage.ban_reached(), outage.outage[1]
    assert reached is not None, "the banned person was never signed out"
    assert reached.sent + reached.seconds > returned  # answered after the return
    assert reached.sent - returned <= BAN_REACHES_WITHIN
    assert reached.status == 200 and not reached.signed_in


def test_the_banned_person_stays_signed_out(outage):
    reached = outage.ban_reached()
    assert reached is not None
    later = [visit for visit in outage.banned.visits if visit.sent > reached.sent]
    assert later and all(visit.status == 200 and not visit.signed_in for visit in later)


def test_workers_keep_their_threads(outage):
    assert set(outage.end) == set(outage.warm)  # no worker was killed and replaced
    # A gthread worker: its main thread and its pool; nothing per stuck call.
    assert all(status["threads"] <= THREADS + 1 for status in outage.end.values())
