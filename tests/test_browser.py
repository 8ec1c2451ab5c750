"""End to end in a real browser: Debian's chromium, the app on a live server, the emulator."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import create_app
from tests.helpers import live_server

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the ``chromium`` fixture: a failure in CI, a skip elsewhere
    expect = sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OFF_LOOPBACK = re.compile(r"^(?!http://127\.0\.0\.1:)")
WAIT_MS = 10_000  # the longest any single step may take
SCREENSHOT = Path("/tmp/signed-in.png")  # noqa: S108 - a fixed place for people to look at

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def _no_browser(reason: str) -> None:
    """CI must run the browser tests; elsewhere they are skipped with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, driven by Playwright, for this module's tests."""
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if sync_playwright is None:
        _no_browser("Playwright for Python is not installed (requirements-dev.txt)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             timeout=WAIT_MS)
    except BaseException:
        playwright.stop()
        raise
    yield browser
    browser.close()
    playwright.stop()


class LiveSite:
    """The app on a real port, and the emulator whose SITE_URL is that port."""

    def __init__(self, url: str, emulator) -> None:
        self.url = url
        self.emulator = emulator


@pytest.fixture
def live_site() -> Iterator[LiveSite]:
    """Serve the app on a free loopback port against its own emulator; stop both afterwards."""
    from emulator.serve import start_background

    emulators = []

    def build(url: str):
        # The emulator's SITE_URL is the app's address, known once the server is bound.
        emulator = start_background({"DATABASE": ":memory:", "SITE_URL": url,
                                     "PROVIDERS": "github,gitlab", "MANUAL_LINKING": True})
        emulators.append(emulator)
        return create_app({
            "TESTING": True,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SUPABASE_URL": emulator.url,
            "SUPABASE_KEY": emulator.publishable_key,
            "SITE_URL": url,
            "AUTH_PROVIDERS": "github,gitlab",
            "GITHUB_API_URL": f"{emulator.url}/github/api/v3",
        })

    with live_server(build) as (url, _app):
        yield LiveSite(url, emulators[0])
    emulators[0].stop()


@pytest.fixture
def page(chromium, live_site):
    """A fresh browser context (no cookies), every wait bounded, nothing beyond loopback."""
    expect.set_options(timeout=WAIT_MS)
    context = chromium.new_context()
    # Everything the pages need is served on loopback; anything else would leave the machine.
    context.route(OFF_LOOPBACK, lambda route: route.abort())
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    page = context.new_page()
    yield page
    context.close()


def csp_errors(messages) -> list[str]:
    """Console errors that report a Content Security Policy violation."""
    return [m.text for m in messages if m.type == "error" and "Content Security Policy" in m.text]


def start_sign_in(page, site: LiveSite) -> None:
    """From the home page, click the sign-in button and arrive on the stand-in's consent page."""
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_title(re.compile(r"^Authorize "))
    assert page.url.startswith(f"{site.emulator.url}/github/login/oauth/authorize?")
    expect(page.get_by_role("radio", name=re.compile(r"^octocat\b"))).to_be_checked()


def test_sign_in_reload_account_sign_out(page, live_site):
    """Sign in with GitHub, stay signed in across a reload, open the account, sign out."""
    console = []
    page.on("console", lambda message: console.append(message))
    home = page.goto(live_site.url + "/")
    assert home.status == 200
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    assert csp_errors(console) == []

    start_sign_in(page, live_site)
    page.get_by_role("button", name="Authorize", exact=True).click()

    page.wait_for_url(live_site.url + "/")
    expect(page.get_by_role("status")).to_have_text("Signed in as The Octocat.")
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_be_visible()
    expect(page.get_by_text("octocat@example.com")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert csp_errors(console) == []

    page.reload()
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_be_visible()
    expect(page.get_by_text("octocat@example.com")).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)  # the flash was shown once

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.wait_for_url(live_site.url + "/account")
    expect(page.get_by_role("heading", name="The Octocat", exact=True)).to_be_visible()
    identities = page.get_by_role("table")
    expect(identities.get_by_role("row")).to_have_count(2)  # the header and one identity
    expect(identities.get_by_role("row").nth(1).get_by_role("cell")).to_contain_text(
        ["GitHub", "octocat", "octocat@example.com"])

    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_site.url + "/")
    expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_have_count(0)
    assert csp_errors(console) == []


def test_cancel_on_consent_page(page, live_site):
    """Cancel at the provider: a 401 page that says so and offers to try again."""
    page.goto(live_site.url + "/")
    start_sign_in(page, live_site)

    def back_at_app(response) -> bool:
        return (response.url.startswith(live_site.url + "/")
                and response.request.resource_type == "document")

    with page.expect_response(back_at_app) as landed:
        page.get_by_role("button", name="Cancel", exact=True).click()

    assert landed.value.status == 401
    expect(page.get_by_text("Sign-in was cancelled.")).to_be_visible()
    expect(page.get_by_role("link", name="Try again")).to_be_visible()


def test_link_a_second_provider_see_github_and_sign_out_everywhere(page, live_site):
    """/account: the GitHub profile, link GitLab on its consent page, sign out everywhere."""
    page.goto(live_site.url + "/")
    start_sign_in(page, live_site)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(live_site.url + "/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    github = page.get_by_role("region", name="GitHub")
    expect(github.get_by_role("link", name="octocat")).to_be_visible()
    expect(github.get_by_text("Public repositories")).to_be_visible()
    expect(github.locator("dd").nth(1)).to_have_text("3")

    page.get_by_role("button", name="Link GitLab").click()  # a POST, then a page moving on
    expect(page).to_have_title(re.compile(r"^Authorize "))
    assert page.url.startswith(f"{live_site.emulator.url}/gitlab/")
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(live_site.url + "/account")
    expect(page.get_by_role("status")).to_have_text("GitLab is now linked to your account.")
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(3)  # the header, GitHub and GitLab
    expect(rows.nth(2)).to_contain_text("GitLab")
    expect(github.locator("dd").nth(1)).to_have_text("3")  # GitHub's token survived the link

    page.get_by_role("button", name="Sign out everywhere").click()  # to the confirmation
    expect(page.get_by_role("heading", name="Sign out everywhere?")).to_be_visible()
    page.get_by_role("main").get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_url(live_site.url + "/")
    expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
