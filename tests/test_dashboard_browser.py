"""The emulator's dashboard in a real browser, next to the app: find, ban, unban, give a role.

The app re-checks sessions every AUTH_REVALIDATE_SECONDS (1 s here), so what the dashboard
does shows in the app at its next page: a ban signs the person out, a role opens /admin.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.browsers import Console, bounded_context, check_png, expect
from tests.helpers import live_site_with_emulator

REVALIDATE_SECONDS = 1
SCREENSHOTS = Path(tempfile.gettempdir()) / "emulator-dashboard"  # a fixed place to look at

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@dataclass
class Site:
    """The app on a real port and the emulator it signs people in with."""

    url: str
    emulator: object


@pytest.fixture
def site() -> Iterator[Site]:
    """The app, re-checking sessions every second, against its own in-memory emulator."""
    with live_site_with_emulator(AUTH_REVALIDATE_SECONDS=REVALIDATE_SECONDS) as (url, emulator):
        yield Site(url, emulator)


@pytest.fixture
def context(chromium):
    with bounded_context(chromium, viewport={"width": 1280, "height": 900}) as fresh:
        yield fresh


def add_people(site: Site) -> str:
    """A GitHub stand-in account with a unique login, and two other users; the login."""
    login = f"ada-{secrets.token_hex(3)}"
    account = {"login": login, "name": "Ada Lovelace", "email": f"{login}@example.com"}
    assert httpx.post(f"{site.emulator.url}/github/_accounts", json=account,
                      timeout=5).status_code == 201
    key = site.emulator.service_role_key
    for email in ("grace@example.com", "linus@example.com"):
        response = httpx.post(f"{site.emulator.url}/auth/v1/admin/users", json={"email": email},
                              headers={"apikey": key, "Authorization": f"Bearer {key}"},
                              timeout=5)
        assert response.status_code == 200
    return login


def sign_in(page, site: Site, login: str) -> None:
    """Sign in to the app as this stand-in account, from the app's home page."""
    page.goto(site.url + "/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_title(re.compile(r"^Authorize "))
    page.get_by_role("radio", name=re.compile(rf"^{login}\b")).check()
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/")
    expect(page.get_by_role("status")).to_have_text("Signed in as Ada Lovelace.")


def after_the_next_check(page) -> None:
    """Let the app's revalidation interval pass, then load the page again."""
    time.sleep(REVALIDATE_SECONDS + 0.2)
    page.reload()


def through_two_factor(page) -> None:
    """If the app asks an admin for an authenticator app first (aal2), set one up."""
    page.wait_for_load_state()
    start = page.get_by_role("button", name="Set up an authenticator app")
    if start.count() == 0:
        return
    start.click()
    secret = re.sub(r"\s", "", page.locator("code.secret").inner_text())
    page.get_by_label("Six-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-factor authentication").click()


def screenshot(page, name: str, title: str) -> None:
    """Save the page as SCREENSHOTS/<name>.png and check the file and the page title."""
    expect(page).to_have_title(title)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    width, _height = check_png(path)
    assert width == 1280


def find_and_ban(dashboard, site: Site, login: str) -> None:
    """Search the Users page by GitHub login, open the person, ban them for an hour."""
    dashboard.goto(site.emulator.url + "/dashboard")
    expect(dashboard.get_by_role("heading", name="Users")).to_be_visible()
    expect(dashboard.get_by_role("table").get_by_role("row")).to_have_count(4)  # header + 3
    dashboard.get_by_role("searchbox").fill(login)
    dashboard.get_by_role("button", name="Search").click()
    rows = dashboard.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(2)  # the header and Ada
    expect(rows.nth(1)).to_contain_text(f"{login}@example.com")
    expect(rows.nth(1)).to_contain_text("active")
    screenshot(dashboard, "users-search", "Users · Supabase Auth emulator")
    rows.nth(1).get_by_role("link", name="Ada Lovelace").click()
    expect(dashboard.get_by_role("heading", name="Ada Lovelace", level=1)).to_be_visible()
    expect(dashboard.get_by_role("region", name="Identities")).to_contain_text(login)
    dashboard.get_by_label("Ban for").select_option(label="1 hour")
    dashboard.get_by_role("button", name="Ban", exact=True).click()
    expect(dashboard.get_by_role("status")).to_have_text(
        f"Banned {login}@example.com for 1 hour.")
    expect(dashboard.locator(".badge-banned")).to_contain_text("banned until")
    screenshot(dashboard, "user-banned", "Ada Lovelace · Supabase Auth emulator")


def test_ban_unban_and_role_from_the_dashboard_reach_the_app(context, site):
    """Find Ada, ban her (the app signs her out), unban, make her admin (/admin opens)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    login = add_people(site)
    console = Console()
    app, dashboard = context.new_page(), context.new_page()
    console.watch(app)
    console.watch(dashboard)

    sign_in(app, site, login)
    find_and_ban(dashboard, site, login)

    after_the_next_check(app)
    expect(app.get_by_role("status")).to_have_text(
        "Your account has been suspended, so you have been signed out.")
    expect(app.get_by_role("button", name="Sign in with GitHub")).to_be_visible()

    dashboard.get_by_role("button", name="Unban").click()
    expect(dashboard.get_by_role("status")).to_have_text(f"Unbanned {login}@example.com.")
    expect(dashboard.locator(".badge-active")).to_have_text("active")

    sign_in(app, site, login)
    main_nav = app.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link", name="Admin")).to_have_count(0)

    dashboard.get_by_label("Role (app_metadata.role)").fill("admin")
    dashboard.get_by_role("button", name="Save role").click()
    expect(dashboard.get_by_role("status")).to_have_text(
        f"Set the role of {login}@example.com to admin.")
    screenshot(dashboard, "user-admin", "Ada Lovelace · Supabase Auth emulator")

    after_the_next_check(app)
    main_nav.get_by_role("link", name="Admin").click()
    through_two_factor(app)
    app.wait_for_url(site.url + "/admin")
    expect(app.get_by_role("heading", name="Admin")).to_be_visible()
    expect(app.get_by_text("admin", exact=True)).to_be_visible()

    dashboard.get_by_role("navigation", name="Dashboard").get_by_role("link",
                                                                     name="Audit log").click()
    log = dashboard.get_by_role("table")
    expect(log).to_contain_text("user_modified")  # the ban, the unban and the role
    expect(log).to_contain_text("token_refreshed")  # the refresh that carried the role
    screenshot(dashboard, "audit-log", "Audit log · Supabase Auth emulator")
    assert console.errors == []
