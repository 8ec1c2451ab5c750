"""Two-factor authentication in a real browser (Debian's chromium): two tabs signing in at once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest

from tests.browsers import Console, bounded_context, expect
from tests.helpers import live_site_with_emulator

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


@pytest.fixture
def site() -> Iterator[str]:
    """The app on a free loopback port against its own emulator; its URL."""
    with live_site_with_emulator() as (url, _emulator):
        yield url


@pytest.fixture
def context(chromium, site):
    """One browser (one cookie jar) for every tab of a test."""
    with bounded_context(chromium) as browser_context:
        yield browser_context


def to_consent(page, site: str) -> None:
    """From the home page, press the sign-in button: the stand-in's consent page."""
    page.goto(site + "/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_title(re.compile(r"^Authorize "))


def authorize(page) -> None:
    page.get_by_role("button", name="Authorize", exact=True).click()


def header(page):
    return page.get_by_role("navigation", name="Main")


def expect_signed_in(page) -> None:
    """The page and its header both say the browser is signed in."""
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_be_visible()
    expect(header(page).get_by_role("link", name="Account")).to_be_visible()
    expect(header(page).get_by_role("link", name="Sign in")).to_have_count(0)


def set_up_authenticator(page, site: str) -> pyotp.TOTP:
    """Sign in, add an authenticator app named "Phone", sign out; the app's codes."""
    to_consent(page, site)
    authorize(page)
    page.wait_for_url(site + "/")
    page.goto(site + "/account")
    section = page.get_by_role("region", name="Two-factor authentication")
    section.get_by_label("Name it").fill("Phone")
    section.get_by_role("button", name="Set up an authenticator app").click()
    totp = pyotp.TOTP(page.get_by_label("Secret key").inner_text().replace(" ", ""))
    page.get_by_label("Six-digit code").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    page.wait_for_url(site + "/account")
    header(page).get_by_role("button", name="Sign out").click()
    page.wait_for_url(site + "/")
    return totp


def test_two_tabs_the_code_is_accepted_in_the_tab_it_is_entered(context, site):
    """Issue 18: sign-in started in tabs A and B, both authorised, the code typed in tab A."""
    console = Console()
    tab_a = context.new_page()
    console.watch(tab_a)
    totp = set_up_authenticator(tab_a, site)
    tab_b = context.new_page()
    console.watch(tab_b)

    to_consent(tab_a, site)
    to_consent(tab_b, site)
    authorize(tab_a)
    tab_a.wait_for_url(site + "/two-factor?next=/")
    authorize(tab_b)
    tab_b.wait_for_url(site + "/two-factor?next=/")
    for tab in (tab_a, tab_b):  # nobody is "signed in as" anyone before the code
        expect(tab.get_by_text(re.compile("Signed in as"))).to_have_count(0)

    tab_a.get_by_label("Six-digit code").fill(totp.now())
    tab_a.get_by_role("button", name="Continue").click()
    tab_a.wait_for_url(site + "/")
    expect(tab_a.get_by_role("status")).to_have_text("Signed in as The Octocat.")
    expect_signed_in(tab_a)

    tab_b.reload()  # tab B lands signed in too, without a second code
    tab_b.wait_for_url(site + "/")
    expect_signed_in(tab_b)
    assert console.errors == []


def test_two_tabs_the_code_typed_in_the_other_tab_afterwards_lands_signed_in(context, site):
    """Both tabs at the challenge; A answers; B's form, sent later, lands signed in too."""
    tab_a = context.new_page()
    totp = set_up_authenticator(tab_a, site)
    tab_b = context.new_page()
    to_consent(tab_a, site)
    to_consent(tab_b, site)
    authorize(tab_b)  # the other order: B's sign-in finishes first
    tab_b.wait_for_url(site + "/two-factor?next=/")
    authorize(tab_a)
    tab_a.wait_for_url(site + "/two-factor?next=/")

    code = totp.now()
    tab_b.get_by_label("Six-digit code").fill(code)
    tab_b.get_by_role("button", name="Continue").click()
    tab_b.wait_for_url(site + "/")
    tab_a.get_by_label("Six-digit code").fill(code)
    tab_a.get_by_role("button", name="Continue").click()
    tab_a.wait_for_url(site + "/")
    expect_signed_in(tab_a)
