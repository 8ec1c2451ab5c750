"""Every page of the app and of the emulator on a phone (390 × 844) and on a desktop (1280 px).

Each page in PAGES is opened once in Debian's chromium, then looked at in both sizes: nothing
may reach past the window's width (no sideways scroll), nothing may be cut off or scroll
inside itself but a table's own scroller (``.table-wrap``), and no page may report an error in
its console (CSP violations included). A screenshot of each lands in /tmp/page-screenshots as
``<page>-390.png`` and ``<page>-1280.png``, for people to look at. To add a page, add one line
to PAGES.

One signed-in person is set up once for the module, as a person would do it: GitHub with a long
name and email, GitLab linked, an authenticator app, the admin role and long user_metadata; and
a passkey with a long name, seeded through the emulator's data file (the pages about it need no
WebAuthn ceremony, and the app runs on 127.0.0.1, where browsers refuse passkeys).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.browsers import bounded_context, check_png, expect
from tests.helpers import live_site_with_emulator, move_app_clock
from tests.webauthn_authenticator import b64url, cose_key

SCREENSHOTS = Path(tempfile.gettempdir()) / "page-screenshots"
SIZES = ((390, 844), (1280, 800))  # a phone, a desktop
VISITOR, PERSON, DASHBOARD = "a fresh browser", "the signed-in person", "the emulator"

LOGIN = "maximiliane-konstantinopoulou-fitzgera"  # GitHub allows 39 characters
NAME = "Maximiliane Wilhelmina Konstantinopoulou-Fitzgerald"
EMAIL = "maximiliane.wilhelmina.konstantinopoulou-fitzgerald@research-institute.example.com"
FACTOR = "Pixel 8 Pro (Google Authenticator)"
PASSKEY = "iCloud Keychain on Maximiliane's MacBook Pro (work, second floor office)"
LONG_METADATA = {
    "bio": "Works on analytical engines, difference engines and the notes that explain them "
           "to people who were not in the room when they were built.",
    "website": "https://example.com/people/maximiliane-wilhelmina-konstantinopoulou-fitzgerald/"
               "publications/2026/notes-on-the-analytical-engine-and-its-programs.pdf",
    "token_like_value": "x" * 160,
}

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


# --- the site and the person ------------------------------------------------------------------


class SupabaseSwitch(httpx.BaseTransport):
    """The app's way to Supabase, where a test can make the code exchange fail."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchange_fault: int | str | None = None  # a status, or "refused"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.exchange_fault and request.url.params.get("grant_type") == "pkce":
            if self.exchange_fault == "refused":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(self.exchange_fault, request=request, json={
                "code": self.exchange_fault, "error_code": "over_request_rate_limit",
                "msg": "Request rate limit reached"})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Site:
    """The app on a real port, its emulator, and what the pages need to know."""

    url: str
    emulator: object
    switch: SupabaseSwitch
    ids: dict[str, str]

    def admin(self) -> httpx.Client:
        key = self.emulator.service_role_key
        return httpx.Client(base_url=f"{self.emulator.url}/auth/v1", timeout=5,
                            headers={"apikey": key, "Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """The app (GitHub, GitLab and Google) against its own emulator, with stand-in accounts."""
    switch = SupabaseSwitch()
    emulator_settings = {"PROVIDERS": "github,gitlab,google", "MANUAL_LINKING": True,
                         "PASSKEY_ENABLED": True, "WEBAUTHN_RP_ID": "localhost",
                         "WEBAUTHN_RP_DISPLAY_NAME": "Flask + Supabase Auth",
                         "WEBAUTHN_RP_ORIGINS": "http://localhost:5000"}
    with live_site_with_emulator(emulator_settings, AUTH_PROVIDERS="github,gitlab,google",
                                 SUPABASE_TRANSPORT=switch) as (url, emulator):
        stand_ins = f"{emulator.url}/{{}}/_accounts"
        for provider, account in (
                ("github", {"login": LOGIN, "name": NAME, "email": EMAIL}),
                ("github", {"login": "unverified-ursula", "name": "Ursula Unverified",
                            "email": "ursula@example.com", "verified": False}),
                ("gitlab", {"login": "max-k-f", "name": NAME, "email": EMAIL})):
            response = httpx.post(stand_ins.format(provider), json=account, timeout=5)
            assert response.status_code in (200, 201), response.text
        live = Site(url, emulator, switch, {})
        with live.admin() as admin:
            for email in ("grace.hopper@example.com", "linus@example.com"):
                assert admin.post("/admin/users", json={"email": email}).status_code == 200
            keys = admin.post("/admin/signing-keys/rotate").json()["keys"]
        live.ids["revocable_kid"] = next(k["id"] for k in keys if k["status"] == "previously_used")
        yield live


@pytest.fixture(scope="module")
def person(chromium, site) -> Iterator[object]:
    """A browser context signed in as the person: GitHub, then GitLab linked, the admin role,
    an authenticator app (so at aal2), and long user_metadata."""
    with bounded_context(chromium) as context:
        page = context.new_page()
        page.goto(site.url + "/")
        authorize(page, "Sign in with GitHub", LOGIN)
        page.wait_for_url(site.url + "/")
        with site.admin() as admin:
            user = admin.get("/admin/users", params={"filter": EMAIL}).json()["users"][0]
            site.ids["user_id"] = user["id"]
            assert admin.put(f"/admin/users/{user['id']}", json={
                "app_metadata": {"role": "admin"},
                "user_metadata": LONG_METADATA}).status_code == 200
        page.goto(site.url + "/account")
        page.get_by_role("button", name="Link GitLab").click()
        authorize(page, None, "max-k-f")
        page.wait_for_url(site.url + "/account")
        site.ids["factor_id"] = set_up_authenticator(page, FACTOR)
        site.ids["passkey_id"] = seed_passkey(site, site.ids["user_id"], PASSKEY)
        expect(page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Admin")).to_be_visible()  # the role came with the aal2 token
        page.close()
        yield context


def authorize(page, button: str | None, login: str) -> None:
    """Click ``button`` (if any), then pick ``login`` on the stand-in's consent page."""
    if button:
        page.get_by_role("button", name=button).click()
    expect(page).to_have_title(re.compile(r"^Authorize "))
    page.get_by_role("radio", name=re.compile(rf"^{re.escape(login)}\b")).check()
    page.get_by_role("button", name="Authorize", exact=True).click()


def set_up_authenticator(page, name: str) -> str:
    """Add an authenticator app from /account/two-factor; its factor id."""
    page.goto(page.url.split("/account")[0] + "/account/two-factor")
    page.get_by_label(re.compile("^Name it")).fill(name)
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = re.sub(r"\s", "", page.locator("code.secret").inner_text())
    factor_id = re.search(r"/account/two-factor/([0-9a-f-]{36})/confirm",
                          page.locator("form.code-form").get_attribute("action")).group(1)
    page.get_by_label("Six-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    page.wait_for_url(re.compile(r"/account$"))
    return factor_id


def seed_passkey(site: Site, user_id: str, name: str) -> str:
    """Give the person a passkey (a fresh P-256 key) through the emulator's export and import,
    which keep their identities, factors and sessions; its id."""
    headers = {"apikey": site.emulator.service_role_key,
               "Authorization": f"Bearer {site.emulator.service_role_key}"}
    with httpx.Client(base_url=f"{site.emulator.url}/emulator/v1", headers=headers,
                      timeout=5) as control:
        exported = control.get("/export").json()
        entry = next(user for user in exported["users"] if user["id"] == user_id)
        passkey_id = "5a9e7d1c-3b2f-4c8e-9d6a-1f0e2b3c4d5e"
        entry["passkeys"] = [{
            "id": passkey_id, "friendly_name": name,
            "credential_id": b64url(secrets.token_bytes(32)),
            "public_key": b64url(cose_key(ec.generate_private_key(ec.SECP256R1()).public_key())),
            "sign_count": 0, "transports": ["internal", "hybrid"]}]
        response = control.post("/import", json={"version": 1, "users": [entry]})
        assert response.status_code == 200, response.text
    return passkey_id


# --- pages that take more than opening an address ---------------------------------------------


def expired_form(page, site: Site) -> None:
    """Submit a form whose CSRF token no longer matches (as after a long pause): a 400."""
    page.locator("input[name=csrf_token]").first.evaluate("input => { input.value = 'stale'; }")
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()


def exchange_fails(fault: int | str) -> Callable[[object, Site], None]:
    """Sign in, with Supabase answering the code exchange with ``fault``: a 429 or 503 page."""
    def steps(page, site: Site) -> None:
        page.get_by_role("button", name="Sign in with GitHub").click()
        expect(page).to_have_title(re.compile(r"^Authorize "))
        site.switch.exchange_fault = fault
        try:
            page.get_by_role("button", name="Authorize", exact=True).click()
            expect(page.get_by_role("link", name="Try again")).to_be_visible()
        finally:
            site.switch.exchange_fault = None
    return steps


def challenge(page, site: Site) -> None:
    """Sign in as the person, who has an authenticator app: the code is asked for."""
    authorize(page, "Sign in with GitHub", LOGIN)
    page.wait_for_url(re.compile(r"/two-factor"))


def wrong_code(page, site: Site) -> None:
    """Start adding a second authenticator app and enter a wrong code."""
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = re.sub(r"\s", "", page.locator("code.secret").inner_text())
    totp, now = pyotp.TOTP(secret), time.time()
    accepted = {totp.at(now + step) for step in (-60, -30, 0, 30, 60)}
    page.get_by_label("Six-digit code").fill(next(
        code for code in ("123456", "654321", "111111") if code not in accepted))
    page.get_by_role("button", name="Turn on two-factor authentication").click()


def stale_sign_in(page, site: Site) -> None:
    """Sign out everywhere more than ten minutes after signing in: confirm it is you first."""
    with pytest.MonkeyPatch.context() as patch:
        move_app_clock(patch, 11 * 60)
        page.get_by_role("main").get_by_role("button", name="Sign out everywhere").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")


def passkey_offer(page, site: Site) -> None:
    """Sign in with GitHub as someone with no passkey: the home page offers one, once."""
    authorize(page, "Sign in with GitHub", "octocat")
    page.wait_for_url(site.url + "/")
    expect(page.get_by_role("heading", name="Sign in faster next time")).to_be_visible()


def leaving(page, site: Site) -> None:
    """Link Google: the page that moves on to Google's stand-in (held here, a 204)."""
    page.route(re.compile(r"/authorize\?"), lambda route: route.fulfill(status=204))
    with page.expect_request(re.compile(r"/authorize\?")):
        page.get_by_role("button", name="Link Google").click()


# --- the pages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """A page to look at: who opens it, where, what the title starts with, how to get there
    from that address (link or button names to click, or steps)."""

    name: str
    who: str
    path: str
    title: str
    click: tuple[str, ...] = ()
    steps: Callable[[object, Site], None] | None = None


PAGES = [
    Shot("home-signed-out", VISITOR, "/", "Home"),
    Shot("signin", VISITOR, "/signin", "Sign in"),
    Shot("sign-in-failed", VISITOR, "/callback?error=access_denied", "Sign-in did not complete"),
    Shot("error-404", VISITOR, "/no-such-page", "Page not found"),
    Shot("error-429", VISITOR, "/", "Too many requests", steps=exchange_fails(429)),
    Shot("error-503", VISITOR, "/", "Temporarily unavailable", steps=exchange_fails("refused")),
    Shot("stand-in-consent", VISITOR, "/", "Authorize", click=("Sign in with GitHub",)),
    Shot("two-factor-challenge", VISITOR, "/", "Enter your code", steps=challenge),
    Shot("home-signed-in", PERSON, "/", "Home"),
    Shot("home-passkey-offer", VISITOR, "/", "Home", steps=passkey_offer),
    Shot("account", PERSON, "/account", "Your account"),
    Shot("admin", PERSON, "/admin", "Admin"),
    Shot("two-factor-setup", PERSON, "/account/two-factor", "Two-factor authentication"),
    Shot("two-factor-enrol", PERSON, "/account/two-factor", "Add",
         click=("Set up an authenticator app",)),
    Shot("two-factor-wrong-code", PERSON, "/account/two-factor", "Add", steps=wrong_code),
    Shot("two-factor-remove", PERSON, "/account/two-factor/{factor_id}/remove", "Remove"),
    Shot("passkey-rename", PERSON, "/account/passkeys/{passkey_id}/rename", "Rename"),
    Shot("passkey-remove", PERSON, "/account/passkeys/{passkey_id}/remove", "Remove"),
    Shot("unlink", PERSON, "/account", "Unlink GitLab", click=("Unlink GitLab",)),
    Shot("sign-out-everywhere", PERSON, "/account", "Sign out everywhere",
         click=("Sign out everywhere",)),
    Shot("sign-in-again", PERSON, "/account/sign-out-everywhere", "Confirm it is you",
         steps=stale_sign_in),
    Shot("leaving", PERSON, "/account", "Continuing to Google", steps=leaving),
    Shot("error-400", PERSON, "/", "Bad request", steps=expired_form),
    Shot("emulator-index", DASHBOARD, "/", "Home · Supabase Auth emulator"),
    Shot("emulator-stand-in", DASHBOARD, "/stand-ins/github", "GitHub stand-in"),
    Shot("emulator-users", DASHBOARD, "/dashboard", "Users"),
    Shot("emulator-user", DASHBOARD, "/dashboard/users/{user_id}", NAME),
    Shot("emulator-audit", DASHBOARD, "/dashboard/audit", "Audit log"),
    Shot("emulator-signing-keys", DASHBOARD, "/dashboard/signing-keys", "Signing keys"),
    Shot("emulator-confirm-delete", DASHBOARD, "/dashboard/users/{user_id}/delete", "Delete"),
    Shot("emulator-confirm-factor", DASHBOARD,
         "/dashboard/users/{user_id}/factors/{factor_id}/remove", "Remove the factor"),
    Shot("emulator-confirm-revoke-key", DASHBOARD,
         "/dashboard/signing-keys/{revocable_kid}/revoke", "Revoke the signing key"),
]


# --- looking at a page --------------------------------------------------------------------------

# Elements reaching past their own box that the page does not let scroll on purpose (a table's
# scroller may; so may what is hidden on purpose, one pixel wide, and form fields).
CUT_OFF = """() => [...document.querySelectorAll("body *")].filter(element =>
    element.scrollWidth > element.clientWidth + 1 && element.clientWidth > 1
    && getComputedStyle(element).overflowX !== "visible"
    && !element.matches(".table-wrap, .visually-hidden, input, select, textarea")
).map(element => element.outerHTML.slice(0, 120))"""


# The innermost elements reaching past the window's right edge: what makes a page too wide.
TOO_WIDE = """width => [...document.querySelectorAll("body *")].filter(element =>
    element.getBoundingClientRect().right > width + 1 && !element.closest(".table-wrap")
    && ![...element.children].some(child => child.getBoundingClientRect().right > width + 1)
).slice(0, 3).map(element => element.outerHTML.slice(0, 120))"""


def console_errors(page) -> list[str]:
    """Collect what the page reports as an error, but the page's own error status (a 404 page
    is meant to answer 404)."""
    errors: list[str] = []

    def seen(message) -> None:
        own_status = (message.text.startswith("Failed to load resource: the server responded")
                      and message.location.get("url") == page.url)
        if message.type == "error" and not own_status:
            errors.append(f"{page.url}: {message.text}")

    page.on("console", seen)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    return errors


def look(page, name: str) -> None:
    """At each size: save the screenshot, then check for sideways scroll and cut-off parts."""
    problems = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        path = SCREENSHOTS / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        check_png(path)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            problems.append(f"{scroll_width} px wide at {width} px because of "
                            f"{page.evaluate(TOO_WIDE, width)}")
        problems += [f"cut off at {width} px: {html}" for html in page.evaluate(CUT_OFF)]
    assert problems == [], f"{name}: {problems}"


@pytest.fixture(scope="module", autouse=True)
def fresh_screenshots() -> None:
    """Start with an empty folder, so every file in it is from this run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir()


@pytest.fixture
def page_for(chromium, person):
    """A page in the right browser: a fresh one, the signed-in person's, or the emulator's (the
    person is set up first either way: some pages show what they did)."""
    contexts = []

    def open_as(who: str):
        if who == PERSON:
            return person.new_page()
        context = bounded_context(chromium)
        contexts.append(context)
        return context.__enter__().new_page()

    yield open_as
    for context in contexts:
        context.__exit__(None, None, None)


@pytest.mark.parametrize("shot", PAGES, ids=[shot.name for shot in PAGES])
def test_page_fits_a_phone_and_a_desktop(shot: Shot, site: Site, page_for):
    """Open the page as its visitor would, then look at it in both sizes."""
    page = page_for(shot.who)
    errors = console_errors(page)
    base = site.emulator.url if shot.who == DASHBOARD else site.url
    page.goto(base + shot.path.format(**site.ids))
    for name in shot.click:
        page.get_by_role("link", name=name, exact=True).or_(
            page.get_by_role("button", name=name, exact=True)).first.click()
    if shot.steps:
        shot.steps(page, site)
    page.wait_for_load_state()
    expect(page).to_have_title(re.compile("^" + re.escape(shot.title)))
    look(page, shot.name)
    page.close()
    assert errors == []
