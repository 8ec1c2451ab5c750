"""Passkeys in a real browser: Chromium's virtual authenticator (the Chrome DevTools Protocol
``WebAuthn`` domain, through Playwright's CDP session) on the app at http://localhost:PORT
(WebAuthn refuses IP addresses): sign in with GitHub, add a passkey, sign out, sign in with it
in one touch, rename it, remove it, and the removed passkey is refused."""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browsers import Console, add_virtual_authenticator, bounded_context, check_png, expect
from tests.helpers import live_server
from tests.test_passkeys import TOKEN_ISSUING, Recorder

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]
SCREENSHOTS = Path(tempfile.gettempdir()) / "app-passkeys"  # a fixed place to look at


class Site:
    """The app on localhost and its emulator; the app's calls to Supabase are recorded."""

    def __init__(self, url: str, emulator, network: Recorder) -> None:
        self.url = url
        self.emulator = emulator
        self.network = network


@pytest.fixture
def site() -> Iterator[Site]:
    """The app on http://localhost:PORT against an emulator with passkeys on for that origin."""
    from app import create_app
    from emulator.serve import start_background

    emulators: list = []
    network = Recorder()
    instance = tempfile.TemporaryDirectory(prefix="app-instance-")  # never the repository's

    def build(loopback_url: str):
        url = loopback_url.replace("127.0.0.1", "localhost")
        emulator = start_background({
            "DATABASE": ":memory:", "SITE_URL": url, "PASSKEY_ENABLED": True,
            "WEBAUTHN_RP_ID": "localhost", "WEBAUTHN_RP_DISPLAY_NAME": "Flask + Supabase Auth",
            "WEBAUTHN_RP_ORIGINS": url})
        emulators.append((emulator, url))
        return create_app({
            "TESTING": True, "SECRET_KEY": secrets.token_urlsafe(32), "SITE_URL": url,
            "SUPABASE_URL": emulator.url, "SUPABASE_KEY": emulator.publishable_key,
            "GITHUB_API_URL": f"{emulator.url}/github/api/v3", "INSTANCE_PATH": instance.name,
            "SUPABASE_TRANSPORT": network,
        })

    try:
        with live_server(build):
            emulator, url = emulators[0]
            yield Site(url, emulator, network)
    finally:
        for emulator, _url in emulators:
            emulator.stop()
        instance.cleanup()


@pytest.fixture
def page(chromium, site):
    """A page with a virtual platform authenticator that verifies the person at once."""
    with bounded_context(chromium) as context:
        page = context.new_page()
        page.goto(site.url + "/")
        add_virtual_authenticator(context, page)
        yield page


def screenshot(page, name: str) -> None:
    """Save the page as SCREENSHOTS/<name>.png and check it is a real picture."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    check_png(path)


def header(page):
    return page.get_by_role("navigation", name="Main")


def sign_out(page, site: Site) -> None:
    header(page).get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.url + "/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def test_sign_up_with_github_then_sign_in_with_a_passkey(page, site):
    console = Console()
    console.watch(page)
    page.goto(site.url + "/")
    signin = page.get_by_role("button", name="Sign in with a passkey")
    expect(signin).to_be_visible()  # revealed by the script: this browser has WebAuthn
    conditional = page.evaluate("PublicKeyCredential.isConditionalMediationAvailable()")
    autofill = page.get_by_label("Your passkey")
    expect(autofill).to_be_visible() if conditional else expect(autofill).to_be_hidden()
    assert autofill.get_attribute("autocomplete") == "username webauthn"
    screenshot(page, "1-home")

    # Sign up with GitHub; the offer to add a passkey comes once, and is taken.
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_title(re.compile(r"^Authorize "))
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/")
    offer = page.get_by_role("region", name="Sign in faster next time")
    expect(offer).to_be_visible()
    screenshot(page, "2-offer")
    offer.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(site.url + "/account#passkeys-title")
    expect(page.get_by_role("status")).to_have_text(
        "Passkey added (Passkey). Next time, sign in with it in one touch.")
    passkeys = page.get_by_role("region", name="Passkeys")
    expect(passkeys.get_by_role("row")).to_have_count(2)  # the header and the passkey
    expect(passkeys.get_by_role("cell", name="Never")).to_be_visible()
    screenshot(page, "3-account-with-passkey")
    sign_out(page, site)

    # One touch: no trip to GitHub, one call to Supabase that issues tokens.
    site.network.calls.clear()
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(site.url + "/")
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Signed in as The Octocat.")
    assert len(site.network.paths(*TOKEN_ISSUING)) == 1
    assert site.network.paths("/github") == []
    assert visited == [site.url + "/"]  # never through Supabase's /authorize or GitHub
    expect(page.get_by_role("region", name="Sign in faster next time")).to_have_count(0)
    screenshot(page, "4-signed-in-with-passkey")

    # Rename it, then remove it.
    header(page).get_by_role("link", name="Account").click()
    passkeys = page.get_by_role("region", name="Passkeys")
    expect(passkeys.get_by_role("cell", name="Never")).to_have_count(0)  # used just now
    passkeys.get_by_role("link", name="Rename Passkey").click()
    page.get_by_label("New name").fill("This laptop")
    page.get_by_role("button", name="Save the name").click()
    expect(page.get_by_role("status")).to_have_text("Passkey renamed to “This laptop”.")
    passkeys.get_by_role("link", name="Remove This laptop").click()
    expect(page.get_by_role("heading", name="Remove the passkey “This laptop”?")).to_be_visible()
    screenshot(page, "5-remove")
    page.get_by_role("button", name="Remove it").click()
    expect(page.get_by_role("status")).to_contain_text("Passkey removed")
    expect(passkeys.get_by_text("No passkeys yet.")).to_be_visible()
    sign_out(page, site)

    # The browser still holds the passkey; the site no longer knows it.
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_role("heading", name="Sign-in did not complete")).to_be_visible()
    expect(page.get_by_text("it was removed from your account")).to_be_visible()
    screenshot(page, "6-removed-passkey-refused")
    # The refusal page's own 401 is the only error any page reported (no CSP violation).
    assert [e for e in console.errors if "status of 401" not in e] == [], console.errors


@pytest.mark.parametrize("answer, message", [
    (None, "The passkey request was cancelled or timed out. Nothing was changed; try again "
           "when you are ready."),  # the browser holds no passkey for the site
    ((429, {"code": "over_request_rate_limit", "message": "Request rate limit reached"}),
     "Too many passkey requests came from your network. Please try again in 10 seconds."),
    ("down", "We could not reach the sign-in service while starting a passkey sign-in. Please "
             "try again in a moment."),
    ((404, {"code": "passkey_disabled", "message": "Passkeys are disabled"}),
     "Passkeys are turned off for this site right now. Please sign in another way, such as "
     "with GitHub."),
])
def test_a_sign_in_that_cannot_start_says_why_on_the_page(page, site, answer, message):
    if answer is not None:
        site.network.answers["/auth/v1/passkeys/authentication/options"] = answer
    page.goto(site.url + "/")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("form[data-passkey-signin]").get_by_role("status")).to_have_text(message)
    expect(page).to_have_url(site.url + "/")  # still on the page, free to try another way


def test_adding_a_passkey_long_after_signing_in_links_to_sign_in_again(page, site,
                                                                      monkeypatch):
    from tests.helpers import move_app_clock

    page.get_by_role("button", name="Sign in with GitHub").click()
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/")
    move_app_clock(monkeypatch, 601)
    page.goto(site.url + "/account")
    section = page.get_by_role("region", name="Passkeys")
    section.get_by_role("button", name="Add a passkey").click()
    expect(section.get_by_role("status")).to_have_text(
        "For your security, adding a passkey needs a sign-in from the last 10 minutes. "
        "Sign in again")
    screenshot(page, "7-add-needs-recent-sign-in")
    section.get_by_role("link", name="Sign in again").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()


def test_autofill_signs_in_from_the_username_field(page, site):
    """Conditional mediation: focusing the field asks for options once, and the passkey the
    browser offers there signs the person in (the virtual authenticator picks it at once)."""
    page.get_by_role("button", name="Sign in with GitHub").click()
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(site.url + "/")
    page.get_by_role("region", name="Sign in faster next time").get_by_role(
        "button", name="Add a passkey").click()
    page.wait_for_url(site.url + "/account#passkeys-title")
    sign_out(page, site)
    if not page.evaluate("PublicKeyCredential.isConditionalMediationAvailable()"):
        pytest.fail("this Chromium offers no passkey autofill (conditional mediation)")
    site.network.calls.clear()
    page.get_by_label("Your passkey").focus()
    expect(page.get_by_role("heading", name="Hello, The Octocat")).to_be_visible()
    assert site.network.paths("/auth/v1/passkeys/") == [
        "/auth/v1/passkeys/authentication/options", "/auth/v1/passkeys/authentication/verify"]
