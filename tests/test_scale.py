"""Many people on one app server: they sign in, open a page every 5 s each, and sign out.

The emulator keeps its default POST /token rate limit and, like a project with Sb-Forwarded-For
enabled, keys it on each person's address, which the app passes on. The load client plays the
one trusted proxy (TRUSTED_PROXY_COUNT=1) for everybody. Measured: every answer people saw, and
every call the app made to Supabase, by kind, from the emulator's request log; the expected
figures are derived from the run's settings and each person's measured time signed in.

CI size by default (100 people, 12 s tokens, a check every 5 s: about 80 s). The full size, by
hand (about 22 minutes; `-s` prints the numbers):

    SCALE_PEOPLE=1000 SCALE_SIGNIN_SECONDS=600 SCALE_BROWSE_SECONDS=600 \\
    SCALE_REVALIDATE_SECONDS=60 SCALE_JWT_EXP=3600 .venv/bin/python -m pytest tests/test_scale.py -s
"""

from __future__ import annotations

import asyncio
import math
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
    errors_of,
    pages_signed_in,
    server_errors,
    sleep_until,
    visits_of,
    wrongly_signed_out,
)
from tests.processes import Site, app_site, cpu_seconds, status_of, workers

PEOPLE = int(os.environ.get("SCALE_PEOPLE", "100"))
SIGNIN_SECONDS = float(os.environ.get("SCALE_SIGNIN_SECONDS", "20"))  # sign-ins spread over
BROWSE_SECONDS = float(os.environ.get("SCALE_BROWSE_SECONDS", "40"))  # all browse, after that
REVALIDATE_SECONDS = int(os.environ.get("SCALE_REVALIDATE_SECONDS", "5"))
JWT_EXP = int(os.environ.get("SCALE_JWT_EXP", "12"))
PAGE_EVERY = 5.0  # seconds between two pages of one person
ACCOUNT_EVERY = 4  # every fourth page is /account, which asks Supabase for the user itself
SIGN_OUTS_AT_ONCE = 20
WORKERS, THREADS = 2, 4
GUNICORN = ["-w", str(WORKERS), "-k", "gthread", "--threads", str(THREADS),
            "--log-level", "warning"]
# The app refreshes a token this long before it expires (the rule in sessions.py).
MARGIN = min(REFRESH_MARGIN, JWT_EXP / 4)
# iat and the time of the last check are whole seconds, so either may be up to 1 s early.
WHOLE_SECOND = 1
JWKS_MAX_AGE, SETTINGS_MAX_AGE = 600, 60  # how long a process keeps each (tokens.py)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(SIGNIN_SECONDS + BROWSE_SECONDS + 180)]


@dataclass
class ScaleRun:
    """What the people saw and what the app asked Supabase, by phase."""

    people: list[Person]
    browsing: Counter[tuple[str, int]]  # emulator calls while signing in and browsing
    signing_out: Counter[tuple[str, int]]  # emulator calls while everyone signed out
    seconds: float  # from the first sign-in to the end of browsing
    skipped: int  # pages not asked for because the load client was a whole interval behind
    warm: dict[int, dict[str, int]]  # app worker pid -> threads and RSS, all signed in
    end: dict[int, dict[str, int]]  # the same when browsing ended
    emulator: tuple[dict[str, int], dict[str, int]]  # the emulator process, at the same times
    cpu: dict[str, float]  # CPU seconds used between those two samples, by process
    sampled: tuple[float, float]  # time.monotonic() of the two samples

    def calls(self, kind: str, status: int | None = None, *, phase: str = "browsing") -> int:
        """Calls of ``kind`` (with ``status``, when given) during ``phase``."""
        counted = self.browsing if phase == "browsing" else self.signing_out
        return sum(n for (seen, code), n in counted.items()
                   if seen == kind and status in (None, code))


def browsed_seconds(person: Person) -> float:
    """From the person's first signed-in page to their last one."""
    pages = pages_signed_in(person)
    return pages[-1].sent - pages[0].sent if pages else 0.0


def account_views(run: ScaleRun) -> int:
    """/account pages served; each asked Supabase for the user once, itself."""
    return sum(visit.path == "/account" and visit.status == 200
               for person in run.people for visit in pages_signed_in(person))


def calls_due(person: Person, every: float) -> int:
    """Calls a rule "call when ``every`` seconds passed since the last call" makes on the
    person's pages, counting from their first signed-in page (sent times; never below 0 s).

    Spacing the calls further apart can only leave fewer of them, so with the rule's interval
    lengthened by the person's slowest answer (the app may see a request that much later than
    it was sent) this is the fewest the app can have made; shortened by it (and by the second
    a whole-second timestamp may lose), plus one for the first, it is the most.
    """
    times = [visit.sent for visit in pages_signed_in(person)]
    count, last = 0, times[0] if times else 0.0
    for moment in times[1:]:
        if moment - last >= max(every, 0.0):
            count, last = count + 1, moment
    return count


def slowest(person: Person) -> float:
    """The person's slowest answer while signed in, in seconds."""
    return max((visit.seconds for visit in pages_signed_in(person)), default=0.0)


def refresh_bounds(run: ScaleRun) -> tuple[int, int]:
    """Refreshes expected: a token is refreshed on the first page JWT_EXP - MARGIN after it was
    issued (its iat is a whole second, so up to one second sooner)."""
    due = JWT_EXP - MARGIN
    return (sum(calls_due(person, due + slowest(person)) for person in run.people),
            sum(calls_due(person, due - WHOLE_SECOND - slowest(person)) + 1
                for person in run.people))


def revalidation_bound(run: ScaleRun) -> int:
    """GET /user checks allowed: one per AUTH_REVALIDATE_SECONDS per person (the time of the
    last check is kept in whole seconds), and never more than one per page."""
    return sum(min(len(pages_signed_in(person)), calls_due(
        person, REVALIDATE_SECONDS - WHOLE_SECOND - slowest(person)) + 1)
        for person in run.people)


def checks_at_least(run: ScaleRun) -> int:
    """Checks (GET /user or a refresh) there must have been: one on the first page
    AUTH_REVALIDATE_SECONDS after the last check, for each person."""
    return sum(calls_due(person, REVALIDATE_SECONDS + slowest(person))
               for person in run.people)


async def live(person: Person, sign_in_at: float, until: float) -> int:
    """Sign in at ``sign_in_at``, then open a page every PAGE_EVERY seconds until ``until``;
    how many pages were skipped."""
    await sleep_until(sign_in_at)
    try:
        await person.sign_in()
    except (httpx.HTTPError, AssertionError) as error:
        person.failed(error)
    skipped = 0
    if person.signed_in_at is None:
        return skipped
    for page in range(1, int((until - person.signed_in_at) / PAGE_EVERY) + 1):
        moment = person.signed_in_at + page * PAGE_EVERY
        if time.monotonic() > moment + PAGE_EVERY:
            skipped += 1  # a whole interval behind (a stalled machine): skip, do not burst
            continue
        await sleep_until(moment)
        path = "/account" if (person.index + page) % ACCOUNT_EVERY == 0 else "/"
        try:
            await person.open(path)
        except httpx.HTTPError as error:
            person.failed(error)
    return skipped


async def sign_out(person: Person, at_once: asyncio.Semaphore) -> None:
    """Press Sign out, if this person got signed in."""
    if person.signed_in_at is None or person.csrf is None:
        return
    async with at_once:
        try:
            await person.sign_out()
        except (httpx.HTTPError, AssertionError) as error:
            person.failed(error)


@dataclass
class Sample:
    """Threads, RSS and CPU time of the app's workers, the emulator and this process, now."""

    workers: dict[int, dict[str, int]]
    emulator: dict[str, int]
    cpu: dict[str, float]
    at: float

    @classmethod
    def take(cls, site: Site) -> Sample:
        pids = workers(site.gunicorn.pid)
        return cls({pid: status_of(pid) for pid in pids}, status_of(site.emulator.process.pid),
                   {"app workers": sum(cpu_seconds(pid) for pid in pids),
                    "emulator": cpu_seconds(site.emulator.process.pid),
                    "load client": time.process_time()}, time.monotonic())


async def crowd(site: Site) -> ScaleRun:
    """PEOPLE sign in spread over SIGNIN_SECONDS, browse until BROWSE_SECONDS after the last
    sign-in, then sign out, SIGN_OUTS_AT_ONCE at a time."""
    log = site.emulator_log
    before = await asyncio.to_thread(log.mark)
    async with Browsers() as browsers:
        people = [Person(index, browsers, site.url) for index in range(PEOPLE)]
        start = time.monotonic()
        until = start + SIGNIN_SECONDS + BROWSE_SECONDS
        sign_ins = [start + SIGNIN_SECONDS * person.index / PEOPLE for person in people]
        browsing = asyncio.gather(*(live(person, at, until)
                                    for person, at in zip(people, sign_ins, strict=True)))
        await sleep_until(start + SIGNIN_SECONDS + min(PAGE_EVERY, BROWSE_SECONDS / 2))
        warm = Sample.take(site)
        skipped = sum(await browsing)
        end = Sample.take(site)
        browsed = await asyncio.to_thread(log.mark)
        at_once = asyncio.Semaphore(SIGN_OUTS_AT_ONCE)
        await asyncio.gather(*(sign_out(person, at_once) for person in people))
        signed_out = await asyncio.to_thread(log.mark)
    return ScaleRun(people, log.calls(before, browsed), log.calls(browsed, signed_out),
                    until - start, skipped, warm.workers, end.workers,
                    (warm.emulator, end.emulator),
                    {name: round(end.cpu[name] - warm.cpu[name], 1) for name in warm.cpu},
                    (warm.at, end.at))


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory) -> ScaleRun:
    """The app under gunicorn and the emulator (default rate limit, per Sb-Forwarded-For)."""
    settings = {"AUTH_REVALIDATE_SECONDS": REVALIDATE_SECONDS, "TRUSTED_PROXY_COUNT": 1}
    with app_site(tmp_path_factory.mktemp("scale"), settings, gunicorn_options=GUNICORN,
                  GITHUB_AUTO_LOGIN="octocat", SB_FORWARDED_FOR="true",
                  JWT_EXP=JWT_EXP) as site:
        run = asyncio.run(crowd(site))
    print("\n" + summary(run))
    return run



def summary(run: ScaleRun) -> str:
    """One line with the run's settings and numbers, and calls per person-hour by kind."""
    visits = visits_of(run.people)
    hours = sum(browsed_seconds(person) for person in run.people) / 3600
    kinds = sorted({kind for kind, _ in run.browsing})
    per_hour = {kind: round(run.calls(kind) / hours, 2) for kind in kinds if hours}
    revalidations = run.calls("user") - account_views(run)
    window = sum(run.sampled[0] <= visit.sent < run.sampled[1] for visit in visits)
    return (
        f"scale: {PEOPLE} people, sign-ins over {SIGNIN_SECONDS:.0f} s, browse "
        f"{BROWSE_SECONDS:.0f} s, page every {PAGE_EVERY:.0f} s, AUTH_REVALIDATE_SECONDS="
        f"{REVALIDATE_SECONDS}, JWT_EXP={JWT_EXP} | {len(visits)} requests, "
        f"{len(server_errors(visits))} 5xx, "
        f"{sum(bool(wrongly_signed_out(p)) for p in run.people)} wrongly signed out, "
        f"{sum(errors_of(run.people).values())} failed requests, statuses "
        f"{dict(Counter(visit.status for visit in visits))} | emulator calls while browsing "
        f"{dict(sorted(run.browsing.items()))}; revalidations {revalidations} (bound "
        f"{revalidation_bound(run)}), /account's own {account_views(run)}, refresh bounds "
        f"{refresh_bounds(run)}; while signing out {dict(sorted(run.signing_out.items()))} | "
        f"person-hours {hours:.2f}, calls per person-hour {per_hour} | app workers "
        f"{run.warm} -> {run.end}, emulator {run.emulator[0]} -> {run.emulator[1]}; CPU s "
        f"{run.cpu} over {window} requests in {run.sampled[1] - run.sampled[0]:.0f} s | "
        f"{run.skipped} pages skipped by a stalled load client | {run.seconds:.0f} s")


def test_everyone_signs_in_and_every_request_is_answered(scale_run):
    assert not errors_of(scale_run.people)
    assert all(person.signed_in_at is not None for person in scale_run.people)


def test_no_answer_is_a_server_error(scale_run):
    assert server_errors(visits_of(scale_run.people)) == []


def test_nobody_is_signed_out_wrongfully(scale_run):
    wrong = {person.index: wrongly_signed_out(person)[:3] for person in scale_run.people
             if wrongly_signed_out(person)}
    assert wrong == {}


def test_each_person_exchanges_one_code(scale_run):
    assert scale_run.calls("pkce", 200) == scale_run.calls("pkce") == PEOPLE


def test_no_call_is_rate_limited(scale_run):
    assert scale_run.calls("refresh", 429) == scale_run.calls("pkce", 429) == 0


def test_refreshes_follow_the_token_lifetime(scale_run):
    fewest, most = refresh_bounds(scale_run)
    assert fewest <= scale_run.calls("refresh", 200) == scale_run.calls("refresh") <= most


def test_revalidations_stay_within_one_per_revalidate_interval(scale_run):
    revalidations = scale_run.calls("user") - account_views(scale_run)
    assert scale_run.calls("user", 200) == scale_run.calls("user")
    assert revalidations <= revalidation_bound(scale_run)
    assert revalidations + scale_run.calls("refresh") >= checks_at_least(scale_run)


def test_sign_out_revokes_each_session_once(scale_run):
    landed = [person.visits[-1] for person in scale_run.people]
    assert all(visit.status == 200 and not visit.signed_in for visit in landed)
    assert scale_run.calls("logout", phase="signing out") == PEOPLE
    # supabase_auth refreshes a token within EXPIRY_MARGIN (10 s) of expiry before revoking it.
    assert scale_run.calls("refresh", phase="signing out") <= PEOPLE


def test_keys_and_settings_are_fetched_per_process_not_per_person(scale_run):
    seconds = scale_run.seconds + PAGE_EVERY
    assert scale_run.calls("jwks") <= WORKERS * (math.floor(seconds / JWKS_MAX_AGE) + 1)
    assert scale_run.calls("settings") <= WORKERS * (math.floor(seconds / SETTINGS_MAX_AGE) + 1)


def test_workers_keep_their_threads(scale_run):
    assert set(scale_run.end) == set(scale_run.warm)
    # A gthread worker: its main thread and its pool; nothing per person or per sign-in.
    assert all(status["threads"] <= THREADS + 1 for status in scale_run.end.values())
