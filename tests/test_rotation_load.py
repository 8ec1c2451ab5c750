"""A signing-key rotation, then a revocation of the old key, while many people browse.

gunicorn (2 workers × 4 threads) and the emulator as processes on loopback; the load client is
the one trusted proxy (TRUSTED_PROXY_COUNT=1), giving everyone an address of their own, which the
emulator honours for its /token limit as a project with Sb-Forwarded-For does. The team rotates
(standby → current) while everyone browses, then revokes the previously used key. Nobody may be
signed out and no page may be a 5xx; afterwards everyone's token is signed with the new key.

Sizes: ROTATION_PEOPLE (40) browsing a page every ROTATION_PAGE_EVERY seconds (1).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import jwt
import pytest
from supabase_auth.constants import STORAGE_KEY

from tests.crowd import (
    Browsers,
    Person,
    server_errors,
    sleep_until,
    visits_of,
    wrongly_signed_out,
)
from tests.helpers import SECRET
from tests.processes import Site, app_site, read_session

PEOPLE = int(os.environ.get("ROTATION_PEOPLE", "40"))
PAGE_EVERY = float(os.environ.get("ROTATION_PAGE_EVERY", "1"))
REVALIDATE_SECONDS = 3
SIGN_IN_SECONDS, ROTATE_AT, REVOKE_AT, END_AT = 6.0, 10.0, 16.0, 26.0  # from the start
GUNICORN = ["-w", "2", "-k", "gthread", "--threads", "4", "--log-level", "warning"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(END_AT + 120)]


def kid_of(person: Person) -> str:
    token = read_session(person.cookie, SECRET)[STORAGE_KEY]["access_token"]
    return jwt.get_unverified_header(token)["kid"]


async def team(site: Site, action: str) -> dict:
    """The team's call in the dashboard (here, the emulator's admin API with the service role)."""
    key = site.emulator.service_role_key
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{site.emulator.url}/auth/v1/admin/signing-keys/{action}",
            headers={"apikey": key, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


async def browse(person: Person, sign_in_at: float, until: float) -> None:
    await sleep_until(sign_in_at)
    try:
        await person.sign_in()
        while person.signed_in_at is not None and time.monotonic() < until:
            await asyncio.sleep(PAGE_EVERY)
            await person.open("/" if person.index % 3 else "/account")
    except (httpx.HTTPError, AssertionError) as error:
        person.failed(error)


async def rotation_run(site: Site) -> dict:
    start = time.monotonic()
    async with Browsers() as browsers:
        people = [Person(index, browsers, site.url) for index in range(PEOPLE)]
        crowd = [asyncio.create_task(browse(person, start + SIGN_IN_SECONDS * i / PEOPLE,
                                            start + END_AT)) for i, person in enumerate(people)]
        await sleep_until(start + ROTATE_AT)
        old = {kid_of(person) for person in people if person.cookie}
        await team(site, "rotate")
        await sleep_until(start + REVOKE_AT)
        [old_kid] = old
        await team(site, f"{old_kid}/revoke")
        await asyncio.gather(*crowd)
    return {"people": people, "old": old_kid}


@pytest.fixture(scope="module")
def rotation(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rotation")
    settings = {"TRUSTED_PROXY_COUNT": 1, "AUTH_REVALIDATE_SECONDS": REVALIDATE_SECONDS}
    with app_site(directory, settings, gunicorn_options=GUNICORN,
                  SB_FORWARDED_FOR="true") as site:
        run = asyncio.run(rotation_run(site))
    visits = visits_of(run["people"])
    print(f"\nrotation: {PEOPLE} people, {len(visits)} pages, "
          f"{len(server_errors(visits))} × 5xx, "
          f"{sum(bool(wrongly_signed_out(p)) for p in run['people'])} signed out wrongly")
    return run


def test_everyone_signed_in_and_was_answered(rotation):
    assert all(person.signed_in_at is not None for person in rotation["people"])
    assert [dict(person.errors) for person in rotation["people"] if person.errors] == []


def test_no_page_is_a_server_error(rotation):
    assert server_errors(visits_of(rotation["people"])) == []


def test_nobody_is_signed_out(rotation):
    assert [p.index for p in rotation["people"] if wrongly_signed_out(p)] == []


def test_everyone_ends_on_a_token_signed_with_the_new_key(rotation):
    kids = {kid_of(person) for person in rotation["people"]}
    assert rotation["old"] not in kids and len(kids) == 1
