"""What browser tests share: Debian's chromium through Playwright, bounded and kept offline.

The ``chromium`` fixture in conftest.py launches it once per module; ``bounded_context`` gives
each test fresh cookies, bounded waits and no traffic beyond 127.0.0.1 and localhost;
``Console`` collects what a page reports as an error; ``check_png`` reads a saved screenshot
back.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by ``launched``: a failure in CI, a skip elsewhere
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
# localhost too: WebAuthn refuses IP addresses, so passkey tests open the site by that name.
OFF_LOOPBACK = re.compile(r"^(?!http://(127\.0\.0\.1|localhost):)")
WAIT_MS = 10_000  # the longest any single step may take
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def no_browser(reason: str) -> None:
    """CI must run the browser tests; elsewhere they are skipped with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@contextmanager
def launched() -> Iterator:
    """Debian's chromium, launched headless through Playwright; stopped afterwards."""
    if not CHROMIUM.exists():
        no_browser(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if sync_playwright is None:
        no_browser("Playwright for Python is not installed (requirements-dev.txt)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             timeout=WAIT_MS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@contextmanager
def bounded_context(browser, **options) -> Iterator:
    """A fresh browser context (no cookies), every wait bounded, nothing beyond loopback."""
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(**options)
    # Everything the pages need is served on loopback; anything else would leave the machine.
    context.route(OFF_LOOPBACK, lambda route: route.abort())
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


class Console:
    """Errors a page reports: console errors (CSP violations, failed loads) and uncaught ones."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page) -> None:
        """Start collecting from this page."""
        page.on("console", lambda message: message.type == "error"
                and self.errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))


def check_png(path: Path) -> tuple[int, int]:
    """A screenshot that is a real, non-empty PNG; its width and height."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no PNG header chunk"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0 and len(data) > 2_000, f"{path} is empty"
    return width, height


def add_virtual_authenticator(context, page) -> None:
    """Chromium's virtual platform authenticator on ``page`` (the DevTools WebAuthn domain):
    passkeys kept in it, and the person verified at once, as by a fingerprint reader."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
