"""End to end in a real browser: Debian's chromium, the app on a live server, the emulator."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.browsers import bounded_context, expect
from tests.helpers import live_site_with_emulator

SCREENSHOT = Path("/tmp/signed-in.png")  # noqa: S108 - a fixed place for people to look at

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


class EmulatorClock:
    """The emulator's CLOCK: real time plus what a test adds (to let a challenge expire)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class LiveSite:
    """The app on a real port, and the emulator whose SITE_URL is that port."""

    def __init__(self, url: str, emulator, clock: EmulatorClock) -> None:
        self.url = url
        self.emulator = emulator
        self.clock = clock


@pytest.fixture
def live_site() -> Iterator[LiveSite]:
    """Serve the app on a free loopback port against its own emulator; stop both afterwards."""
    clock = EmulatorClock()
    emulator_settings = {"PROVIDERS": "github,gitlab", "MANUAL_LINKING": True, "CLOCK": clock}
    with live_site_with_emulator(emulator_settings, AUTH_PROVIDERS="github,gitlab") as (
            url, emulator):
        yield LiveSite(url, emulator, clock)


@pytest.fixture
def page(chromium, live_site):
    """A fresh browser context (no cookies), every wait bounded, nothing beyond loopback."""
    with bounded_context(chromium) as context:
        yield context.new_page()


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
    expect(page.get_by_role("status")).to_have_text(
        "You have been signed out everywhere: every browser and device that was signed in to "
        "your account, this one included.")
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()


def make_admin(site: LiveSite, login: str) -> None:
    """Give a stand-in account's user the admin role through the admin API, as the team does."""
    key = site.emulator.service_role_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"{site.emulator.url}/auth/v1", headers=headers, timeout=5) as api:
        users = api.get("/admin/users", params={"filter": f"{login}@"}).json()["users"]
        api.put(f"/admin/users/{users[0]['id']}", json={"app_metadata": {"role": "admin"}})


def enter_code(page, code: str) -> None:
    page.get_by_label("Six-digit code").fill(code)
    page.get_by_role("button", name="Continue").click()


def test_two_factor_set_up_then_the_challenge_on_the_next_sign_in(page, live_site):
    """Set up an authenticator app, sign out, sign in with GitHub, answer the challenge (a
    wrong code, an expired check, then the right code) to reach /admin; a replay is refused."""
    console = []
    page.on("console", lambda message: console.append(message))
    site = live_site
    page.goto(site.url + "/")
    start_sign_in(page, site)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    section = page.get_by_role("region", name="Two-factor authentication")
    expect(section).to_contain_text("Off.")
    section.get_by_label("Name it").fill("Phone")
    section.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("heading", name="Add “Phone”")).to_be_visible()
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    expect(qr).to_be_visible()
    assert qr.evaluate("image => image.complete && image.naturalWidth > 0")
    secret = page.get_by_label("Secret key").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Six-digit code").fill(totp.at(site.clock()))
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    page.wait_for_url(site.url + "/account")
    expect(page.get_by_role("status")).to_contain_text("Two-factor authentication is on")
    expect(section.get_by_role("cell", name="Phone", exact=True)).to_be_visible()
    assert csp_errors(console) == []

    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.url + "/")
    make_admin(site, "octocat")
    start_sign_in(page, site)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/two-factor?next=/")
    page.goto(site.url + "/admin")  # an aal2 page: the challenge first, then back here
    page.wait_for_url(site.url + "/two-factor?next=/admin")
    expect(page.get_by_role("heading", name="Enter the code from your authenticator app")) \
        .to_be_visible()

    enter_code(page, next(code for code in ("000000", "111111", "222222")
                          if code not in {totp.at(site.clock() + s) for s in (-30, 0, 30)}))
    expect(page.get_by_role("alert")).to_contain_text(
        "That code is not right. You can try 4 more times.")

    site.clock.offset = 301  # the check lasts five minutes at Supabase
    enter_code(page, totp.at(site.clock()))
    expect(page.get_by_role("alert")).to_contain_text("That took too long")

    captured = page.context.cookies()  # the browser's state before the right code
    code = totp.at(site.clock())
    enter_code(page, code)
    page.wait_for_url(site.url + "/admin")
    expect(page.get_by_role("heading", name="Admin")).to_be_visible()

    page.context.clear_cookies()
    page.context.add_cookies(captured)  # someone replays the captured state and code
    page.goto(site.url + "/two-factor?next=/admin")
    enter_code(page, code)
    expect(page.get_by_role("alert")).to_contain_text("That code was already used.")
    page.goto(site.url + "/admin")
    page.wait_for_url(re.compile(r"/two-factor\?next=/admin$"))  # still not aal2
    assert csp_errors(console) == []
