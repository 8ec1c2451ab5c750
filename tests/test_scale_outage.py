"""Outage drill: Supabase goes away for a while and comes back; people stay signed in throughout.

A relay of the test's own sits between the app and the emulator (SUPABASE_URL is the relay).
The outage either refuses connections (Supabase down) or accepts them and never answers (a
black hole: each call waits SUPABASE_TIMEOUT). The app runs under gunicorn with --max-requests
low enough that workers are recycled during the outage: a worker born in it must still verify
tokens. People browse every signed-in page (home, /account, the two-factor page; admins, at
aal2 with an authenticator app, /admin too); every third keeps one connection open between
pages, the others open a new one per page. During the outage the team bans one person through
the emulator's admin API (which the relay does not stand in front of) and a few people sign out.

Nobody whose token is valid (everyone's: tokens last an hour) may meet a 5xx or be signed out
during the outage; no page may take longer than SUPABASE_TIMEOUT + 1 s; in the black hole, each
app process calls Supabase at most once per pause of its back-off (plus what its threads had
under way before the first failure was known, and a fresh worker's JWKS fetch). Once the relay
is back, everyone else goes on signed in and is checked again, the sign-outs made during the
outage are completed at Supabase within one back-off (the copy of the cookie a thief would
have kept stops working), and the banned person is signed out within AUTH_REVALIDATE_SECONDS +
the back-off's longest pause + one page.

CI size by default (40 people, 2 of them admins, 3 sign-outs, a page every 3 s, a check every
4 s, 10 s outage, SUPABASE_TIMEOUT=1, workers recycled every ~33 requests: about 30 s per
variant, a little over a minute for the file). The full size, by hand (about 10 minutes):

    OUTAGE_PEOPLE=200 OUTAGE_SECONDS=120 OUTAGE_REVALIDATE_SECONDS=60 \\
    OUTAGE_SUPABASE_TIMEOUT=5 OUTAGE_PAGE_EVERY=5 OUTAGE_SIGN_OUTS=10 \\
    .venv/bin/python -m pytest tests/test_scale_outage.py -s

Other knobs: OUTAGE_ADMINS, OUTAGE_MAX_REQUESTS (gunicorn's --max-requests; by default half
of what a worker serves during the outage).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY

from pending_sign_outs import LOOK_EVERY
from sessions import REFRESH_MARGIN
from tests.crowd import (
    Browsers,
    Person,
    Visit,
    errors_of,
    pages_signed_in,
    server_errors,
    sleep_until,
    visits_of,
)
from tests.helpers import SECRET
from tests.processes import Relay, Site, app_site, read_session, status_of, workers

PEOPLE = int(os.environ.get("OUTAGE_PEOPLE", "40"))
ADMINS = int(os.environ.get("OUTAGE_ADMINS", "2"))
SIGN_OUTS = int(os.environ.get("OUTAGE_SIGN_OUTS", "3"))
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "10"))
REVALIDATE_SECONDS = int(os.environ.get("OUTAGE_REVALIDATE_SECONDS", "4"))
SUPABASE_TIMEOUT = float(os.environ.get("OUTAGE_SUPABASE_TIMEOUT", "1"))
PAGE_EVERY = float(os.environ.get("OUTAGE_PAGE_EVERY", "3"))  # seconds between two pages
KEEP_ALIVE_EVERY = 3  # every third person keeps one connection open
PAGES = ("/", "/account", "/account/two-factor")
ADMIN_PAGES = ("/", "/account", "/admin", "/account/two-factor")
WORKERS, THREADS = 2, 4
MAX_REQUESTS = int(os.environ.get("OUTAGE_MAX_REQUESTS", "0")) or max(
    20, int(PEOPLE / PAGE_EVERY / WORKERS * OUTAGE_SECONDS / 2))
SIGNIN_SECONDS = PEOPLE / 20  # sign-ins spread over
WARM_SECONDS = REVALIDATE_SECONDS + PAGE_EVERY + 1  # everyone checked with Supabase once at least
BAN_AFTER = min(3.0, OUTAGE_SECONDS / 4)  # seconds into the outage
SIGN_OUT_AFTER = BAN_AFTER + 1.0
BACKOFF_LONGEST = min(15, REVALIDATE_SECONDS)  # the app's longest pause (supabase_client.py)
# From the relay's return until the banned person's page says so (their request is sent).
BAN_REACHES_WITHIN = REVALIDATE_SECONDS + BACKOFF_LONGEST + PAGE_EVERY
# From the relay's return until a sign-out made during the outage is done at Supabase: the
# pause under way, a look at the outbox, the next page of anyone.
SIGN_OUT_REACHES_WITHIN = BACKOFF_LONGEST + LOOK_EVERY + 2.0
AFTER_SECONDS = BAN_REACHES_WITHIN + 2 * PAGE_EVERY  # browsing after the return, at the most
DRILL_SECONDS = SIGNIN_SECONDS + WARM_SECONDS + OUTAGE_SECONDS + AFTER_SECONDS
TOKEN_LIFETIME = 3600
assert DRILL_SECONDS < TOKEN_LIFETIME - REFRESH_MARGIN, "a token would need a refresh"
GUNICORN = ["-w", str(WORKERS), "-k", "gthread", "--threads", str(THREADS),
            "--max-requests", str(MAX_REQUESTS), "--max-requests-jitter",
            str(MAX_REQUESTS // 4), "--keep-alive", "30", "--log-level", "warning"]
# gunicorn's access log: pid, method, path, status, microseconds spent in the worker, when.
ACCESS_FORMAT = "%(p)s %(m)s %(U)s %(s)s %(D)s %(t)s"
ACCESS_LINE = re.compile(r"<(\d+)> (\S+) (\S+) (\d{3}) (\d+) \[([^\]]+)\]")
ADMIN_SETUP_SECONDS = 1.5  # each admin signs in and adds an app before the crowd comes
pytestmark = [pytest.mark.slow, pytest.mark.timeout(DRILL_SECONDS + 120)]


@dataclass
class SignOut:
    """A person who signed out during the outage, and the cookie's tokens a thief kept."""

    person: Person
    tokens: dict
    page: str = ""  # where signing out landed
    ended_at: float | None = None  # when Supabase first refused the kept token


@dataclass
class Drill:
    """What everyone saw, when the outage began and ended, and who was banned."""

    mode: str
    people: list[Person]
    banned: Person
    sign_outs: list[SignOut]
    outage: tuple[float, float]  # time.monotonic() once the relay failed; as it came back
    banned_at: float
    born: dict[int, float]  # app worker pid -> when the drill first saw it
    end: dict[int, dict[str, int]]  # app worker pid -> threads and RSS, at the end
    accepted: Counter[str]  # connections the relay accepted, by its state at the time
    swallowed: Counter[int | None]  # requests lost in the black hole, by app worker pid
    calls_during: Counter[tuple[str, int]]  # what reached the emulator during the outage
    seconds: float
    served: list[tuple[int, str, int, float, float]]  # pid, path, status, seconds, when (epoch)
    outage_wall: tuple[float, float]  # time.time() when the outage began and ended
    leavers: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.leavers = {sign_out.person.index for sign_out in self.sign_outs}

    def stayers(self) -> list[Person]:
        """Everyone but the banned person and those who signed out."""
        return [person for person in self.people
                if person is not self.banned and person.index not in self.leavers]

    def during(self, person: Person) -> list[Visit]:
        """The person's signed-in pages asked for and answered while the relay was failing."""
        began, returned = self.outage
        return [visit for visit in pages_signed_in(person)
                if began <= visit.sent and visit.sent + visit.seconds < returned]

    def after(self, person: Person) -> list[Visit]:
        """The person's pages asked for after the relay came back."""
        return [visit for visit in person.visits if visit.sent >= self.outage[1]]

    def ban_reached(self) -> Visit | None:
        """The banned person's first page that said the account was suspended."""
        return next((visit for visit in self.banned.visits if visit.suspended), None)

    def born_during(self) -> list[int]:
        """Workers started while the relay was failing (recycled by --max-requests)."""
        began, returned = self.outage
        return [pid for pid, seen in self.born.items() if began < seen < returned]


class Schedule:
    """When people stop browsing; moved earlier once the drill has seen what it needs."""

    def __init__(self, until: float) -> None:
        self.until = until


def is_admin(person: Person) -> bool:
    return person.index < ADMINS


async def browse(site: Site, person: Person, sign_in_at: float, schedule: Schedule,
                 banned: Person) -> None:
    """Sign in at ``sign_in_at`` (an admin also gets the role and an authenticator app), then
    open the next signed-in page every PAGE_EVERY seconds until signing out (the person who
    will be banned opens the home page only, where the ban shows at once)."""
    await sleep_until(sign_in_at)
    try:
        await person.sign_in()
        if person.signed_in_at is not None and is_admin(person):
            await set_role(site, person.user_id(), {"role": "admin"})
            await person.set_up_authenticator()
    except (httpx.HTTPError, AssertionError, AttributeError) as error:
        person.failed(error)
        person.signed_in_at = None
    if person.signed_in_at is None:
        return
    pages = ADMIN_PAGES if is_admin(person) else PAGES if person is not banned else ("/",)
    for page in range(1, int(DRILL_SECONDS / PAGE_EVERY) + 2):
        moment = person.signed_in_at + page * PAGE_EVERY
        if moment > schedule.until:
            return
        await sleep_until(moment)
        if person.signed_out_at is not None:
            return
        try:
            await person.open(pages[page % len(pages)])
        except httpx.HTTPError as error:
            person.failed(error)


async def set_role(site: Site, user_id: str, app_metadata: dict) -> None:
    """The team sets app_metadata through the admin API, straight at the emulator."""
    await admin_call(site, user_id, {"app_metadata": app_metadata})


async def ban(site: Site, user_id: str) -> None:
    """The team bans a user through the admin API, straight at the emulator."""
    await admin_call(site, user_id, {"ban_duration": "24h"})


async def admin_call(site: Site, user_id: str, change: dict) -> None:
    key = site.emulator.service_role_key
    async with httpx.AsyncClient(timeout=10) as admin:
        response = await admin.put(f"{site.emulator.url}/auth/v1/admin/users/{user_id}",
                                   json=change,
                                   headers={"apikey": key, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text


async def sign_out(sign_out: SignOut) -> None:
    """Press Sign out (the cookie's tokens were kept, as a thief with a copy would)."""
    person = sign_out.person
    person.signed_out_at = time.monotonic()
    try:
        response, _ = await person.open("/signout", "POST",
                                        {"csrf_token": person.csrf, "scope": "local"})
        landed, _ = await person.follow(response)
        sign_out.page = " ".join(landed.text.split())
    except httpx.HTTPError as error:
        person.failed(error)


async def watch_ended(site: Site, sign_out: SignOut, deadline: float) -> None:
    """Ask the emulator itself, every 0.2 s, whether the kept token's session still stands."""
    headers = {"apikey": site.emulator.anon_key,
               "Authorization": f"Bearer {sign_out.tokens['access_token']}"}
    async with httpx.AsyncClient(timeout=5) as direct:
        while time.monotonic() < deadline:
            asked = time.monotonic()
            response = await direct.get(f"{site.emulator.url}/auth/v1/user", headers=headers)
            if response.status_code != 200:
                sign_out.ended_at = asked
                return
            await asyncio.sleep(0.2)


async def watch_workers(site: Site, born: dict[int, float], until: Schedule) -> None:
    """Note when each app worker is first seen (every 0.2 s)."""
    while time.monotonic() < until.until:
        for pid in workers(site.gunicorn.pid):
            born.setdefault(pid, time.monotonic())
        await asyncio.sleep(0.2)


def statuses(pids: list[int]) -> dict[int, dict[str, int]]:
    """Threads and RSS of the workers still running (one may be exiting: --max-requests)."""
    found = {}
    for pid in pids:
        try:
            found[pid] = status_of(pid)
        except (OSError, KeyError):  # gone, or a zombie with no memory left to report
            continue
    return found


def fail(relay: Relay, mode: str) -> None:
    relay.refuse() if mode == "refused" else relay.blackhole()


def seen_enough(run_people: list[Person], banned: Person, sign_outs: list[SignOut],
                returned: float) -> bool:
    """The ban reached its person, the sign-outs reached Supabase, and every other person was
    checked again since the return (a check with Supabase writes a new cookie)."""
    leavers = {sign_out.person.index for sign_out in sign_outs}
    return (any(visit.suspended for visit in banned.visits)
            and all(sign_out.ended_at is not None for sign_out in sign_outs)
            and all(any(visit.renewed for visit in person.visits if visit.sent >= returned)
                    for person in run_people
                    if person is not banned and person.index not in leavers))


async def drill(site: Site, mode: str) -> Drill:
    """Everyone signs in and browses; the relay fails, a ban is made and a few sign out, the
    relay returns."""
    relay, log = site.relay, site.emulator_log
    relay.owners = lambda: workers(site.gunicorn.pid)
    async with Browsers() as browsers:
        people = [Person(index, browsers, site.url, keep_alive=index % KEEP_ALIVE_EVERY == 1)
                  for index in range(PEOPLE)]
        banned = people[PEOPLE // 2]
        leaving = [SignOut(person, {}) for person in people[-SIGN_OUTS:] if SIGN_OUTS]
        assert banned not in [s.person for s in leaving] and not any(map(is_admin, [
            banned, *(s.person for s in leaving)])), "too few people for the drill's roles"
        start = time.monotonic()
        schedule = Schedule(start + DRILL_SECONDS)
        born: dict[int, float] = {}
        watching = asyncio.create_task(watch_workers(site, born, schedule))
        crowd_at = start + ADMINS * ADMIN_SETUP_SECONDS  # the admins set up on a quiet site
        browsing = asyncio.gather(*(browse(
            site, person, start + ADMIN_SETUP_SECONDS * i if is_admin(person) else
            crowd_at + SIGNIN_SECONDS * i / PEOPLE, schedule, banned)
            for i, person in enumerate(people)))
        await sleep_until(crowd_at + SIGNIN_SECONDS + WARM_SECONDS)
        await asyncio.to_thread(fail, relay, mode)
        began, began_wall = time.monotonic(), time.time()
        # Calls answered before the relay failed may still be on their way into the log.
        before = await asyncio.to_thread(log.mark, 0.2, 1)
        await sleep_until(began + BAN_AFTER)
        await ban(site, banned.user_id())
        banned_at = time.monotonic()
        await sleep_until(began + SIGN_OUT_AFTER)
        for leaver in leaving:
            leaver.tokens = read_session(leaver.person.cookie, SECRET).get(STORAGE_KEY)
            assert leaver.tokens, f"person {leaver.person.index} was signed out: {leaver.person}"
        await asyncio.gather(*(sign_out(leaver) for leaver in leaving))
        await sleep_until(began + OUTAGE_SECONDS)
        during = await asyncio.to_thread(log.mark, 0.2, 1)
        returned = time.monotonic()  # a request in flight now may already be checked
        returned_wall = time.time()
        await asyncio.to_thread(relay.up)
        schedule.until = returned + AFTER_SECONDS
        watching_ends = asyncio.gather(*(watch_ended(site, leaver, schedule.until)
                                         for leaver in leaving))
        while time.monotonic() < schedule.until and not seen_enough(people, banned, leaving,
                                                                    returned):
            await asyncio.sleep(0.5)
        schedule.until = min(schedule.until, time.monotonic() + PAGE_EVERY)
        await browsing
        await watching_ends
        await watching
        end = statuses(workers(site.gunicorn.pid))
        for person in people:
            await person.close()
    return Drill(mode, people, banned, leaving, (began, returned), banned_at, born, end,
                 Counter(relay.accepted), Counter(relay.swallowed), log.calls(before, during),
                 time.monotonic() - start, served(site.directory / "access.log"),
                 (began_wall, returned_wall))


def served(access_log: Path) -> list[tuple[int, str, int, float, float]]:
    """What gunicorn's access log says each request took in a worker (queueing not included:
    the load client's own lag on this shared machine must not count against the app)."""
    requests = []
    for pid, _method, path, status, micros, when in ACCESS_LINE.findall(access_log.read_text()):
        moment = datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        requests.append((int(pid), path, int(status), int(micros) / 1e6, moment))
    return requests


@pytest.fixture(scope="module", params=["refused", "blackhole"])
def outage(request, tmp_path_factory) -> Drill:
    """The emulator (default /token limit, per Sb-Forwarded-For), a relay, the app behind it."""
    settings = {"AUTH_REVALIDATE_SECONDS": REVALIDATE_SECONDS, "TRUSTED_PROXY_COUNT": 1,
                "SUPABASE_TIMEOUT": SUPABASE_TIMEOUT}
    directory = tmp_path_factory.mktemp(f"outage-{request.param}")
    options = [*GUNICORN, "--access-logfile", str(directory / "access.log"),
               "--access-logformat", ACCESS_FORMAT]
    with app_site(directory, settings, gunicorn_options=options, relay=True,
                  SB_FORWARDED_FOR="true",
                  JWT_EXP=TOKEN_LIFETIME) as site:
        run = asyncio.run(drill(site, request.param))
    print("\n" + summary(run))
    return run


def calls_allowed(seconds: float) -> int:
    """The most calls one process may make in a black hole lasting ``seconds``: one per thread
    before the first failure is known, a fresh worker's JWKS fetch, then one per pause (1 s,
    2, 4, … up to BACKOFF_LONGEST), each retry waiting SUPABASE_TIMEOUT."""
    calls, moment, failures = THREADS + 1, SUPABASE_TIMEOUT, 1
    while True:
        moment += min(BACKOFF_LONGEST, 2.0 ** (failures - 1))
        if moment >= seconds:
            return calls
        calls += 1
        failures += 1
        moment += SUPABASE_TIMEOUT


def summary(run: Drill) -> str:
    """One line with the drill's settings and what happened."""
    visits = visits_of(run.people)
    during = [visit for person in run.people for visit in run.during(person)]
    reached = run.ban_reached()
    delay = f"{reached.sent - run.outage[1]:.1f} s" if reached else "never"
    ended = [f"{s.ended_at - run.outage[1]:.1f}" if s.ended_at else "never"
             for s in run.sign_outs]
    paths = Counter(visit.path for visit in during)
    slowest = max((visit.seconds for visit in during), default=0)
    since = run.outage_wall[0] - 1
    in_worker = max((seconds for _, _, _, seconds, when in run.served if when >= since),
                    default=0)
    return (
        f"outage ({run.mode}): {PEOPLE} people ({ADMINS} admins, every {KEEP_ALIVE_EVERY}rd on "
        f"one kept-alive connection), {OUTAGE_SECONDS:.0f} s outage, "
        f"AUTH_REVALIDATE_SECONDS={REVALIDATE_SECONDS}, SUPABASE_TIMEOUT={SUPABASE_TIMEOUT:g}, "
        f"--max-requests {MAX_REQUESTS} | {len(visits)} requests ({len(during)} signed-in pages "
        f"during the outage: {dict(paths)}; slowest as seen by the client {slowest:.2f} s, "
        f"overall {max((v.seconds for v in visits), default=0):.2f} s; slowest in a worker "
        f"from the outage on {in_worker:.2f} s), "
        f"{len(server_errors(visits))} 5xx, statuses {dict(Counter(v.status for v in visits))}, "
        f"failed requests {sum(errors_of(run.people).values())}, resent on a new connection "
        f"{sum(person.retried for person in run.people)} | workers born during the outage "
        f"{len(run.born_during())} (of {len(run.born)} seen, at "
        f"{sorted(round(seen - run.outage[0], 1) for seen in run.born.values())} s) | ban made "
        f"{run.banned_at - run.outage[0]:.1f} s into the outage, reached its person {delay} "
        f"after the return (bound {BAN_REACHES_WITHIN:.0f} s) | sign-outs during the outage "
        f"ended at Supabase {ended} s after the return (bound {SIGN_OUT_REACHES_WITHIN:.0f} s)"
        f" | calls lost in the black hole by worker {dict(run.swallowed)} (at most "
        f"{calls_allowed(OUTAGE_SECONDS)} each) | slowest pages (person, path, seconds into "
        f"the outage, seconds, status) {slowest_pages(run, visits)} | relay accepted "
        f"{dict(run.accepted)}, emulator calls during the outage {dict(run.calls_during)} | "
        f"{run.seconds:.0f} s")


def slowest_pages(run: Drill, visits: list[Visit]) -> list[tuple]:
    return [(visit.person, visit.path, round(visit.sent - run.outage[0], 1),
             round(visit.seconds, 2), visit.status)
            for visit in sorted(visits, key=lambda visit: -visit.seconds)[:5]]


def test_every_request_is_answered(outage):
    assert not errors_of(outage.people)
    assert all(person.signed_in_at is not None for person in outage.people)


def test_no_answer_is_a_server_error(outage):
    # Everyone's token is valid all along: nobody may see a 5xx, on any page.
    assert server_errors(visits_of(outage.people)) == []


def test_everyone_stays_signed_in_during_the_outage(outage):
    # The banned person too: nothing can tell the app about the ban while Supabase is away.
    # (Those who sign out early in the outage may leave before their next page.)
    assert all(outage.during(person) for person in outage.people
               if person.index not in outage.leavers)
    during = [visit for person in outage.people for visit in outage.during(person)]
    assert [v for v in during if v.status != 200 or not v.signed_in
            or (v.path == "/" and not v.greeted)] == []


def test_every_signed_in_page_is_served_during_the_outage(outage):
    during = [visit for person in outage.people for visit in outage.during(person)]
    assert {visit.path for visit in during} == {*PAGES, *ADMIN_PAGES}
    account = [visit for visit in during if visit.path == "/account"]
    assert account and all(visit.from_token for visit in account)


def test_no_page_is_slower_than_the_timeout_and_a_second(outage):
    # From the outage on, as the workers timed them (the whole second is for the app's own work
    # on a machine shared with other test runs).
    since = outage.outage_wall[0] - 1
    during = [request for request in outage.served if request[4] >= since]
    assert during
    assert [request for request in during if request[3] > SUPABASE_TIMEOUT + 1] == []


def test_the_outage_cuts_the_app_off_from_supabase(outage):
    # Only the team's ban got through (GitHub's API, for /account, is not Supabase).
    assert set(outage.calls_during) <= {("admin", 200), ("github_api", 200)}
    # A successful check would have written a new cookie.
    assert not any(visit.renewed for person in outage.people for visit in outage.during(person))


@pytest.mark.parametrize("outage", ["blackhole"], indirect=True)
def test_at_most_one_call_per_pause_per_process(outage):
    assert outage.swallowed, "the black hole saw no call at all"
    attributed = {pid: calls for pid, calls in outage.swallowed.items() if pid is not None}
    assert attributed
    allowed = calls_allowed(OUTAGE_SECONDS)
    assert {pid: calls for pid, calls in attributed.items() if calls > allowed} == {}


def test_workers_are_recycled_during_the_outage(outage):
    assert outage.born_during(), "no worker was started during the outage: lower --max-requests"
    # A gthread worker: its main thread and its pool; nothing per stuck call.
    assert all(status["threads"] <= THREADS + 1 for status in outage.end.values())


def test_kept_alive_and_new_connections_both_browse(outage):
    kept = [person for person in outage.people if person.keep_alive]
    assert kept and len(kept) < len(outage.people)
    assert all(outage.during(person) for person in kept if person.index not in outage.leavers)


def test_signing_out_during_the_outage_says_what_it_means(outage):
    assert outage.sign_outs
    for leaver in outage.sign_outs:
        assert "You are signed out here" in leaver.page
        assert "still works until we do" in leaver.page
        assert "automatically as soon as the service answers" in leaver.page


def test_sign_outs_during_the_outage_are_completed_within_one_back_off(outage):
    returned = outage.outage[1]
    for leaver in outage.sign_outs:
        assert leaver.ended_at is not None, f"person {leaver.person.index}'s copy still works"
        assert leaver.ended_at - returned <= SIGN_OUT_REACHES_WITHIN


def test_everyone_else_stays_signed_in_after_the_return(outage):
    after = [visit for person in outage.stayers() for visit in outage.after(person)]
    assert after
    assert [v for v in after if v.status != 200 or not v.signed_in
            or (v.path == "/" and not v.greeted)] == []


def test_everyone_else_is_checked_again_after_the_return(outage):
    unchecked = [person.index for person in outage.stayers()
                 if not any(visit.renewed for visit in outage.after(person))]
    assert unchecked == []


def test_the_ban_reaches_its_person_soon_after_the_return(outage):
    reached, returned = outage.ban_reached(), outage.outage[1]
    assert reached is not None, "the banned person was never signed out"
    assert reached.sent + reached.seconds > returned  # answered after the return
    assert reached.sent - returned <= BAN_REACHES_WITHIN
    assert not reached.signed_in


def test_the_banned_person_stays_signed_out(outage):
    reached = outage.ban_reached()
    assert reached is not None
    later = [visit for visit in outage.banned.visits if visit.sent > reached.sent]
    assert later and all(not visit.signed_in for visit in later)
