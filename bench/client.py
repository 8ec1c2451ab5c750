"""A small HTTP client on http.client, and the sign-in round trip a browser makes.

No cookie jar and no redirect magic: each step of the sign-in is spelled out, so the benchmark
counts exactly the requests a browser sends (gunicorn's sync worker closes every connection,
so each request opens its own).
"""

from __future__ import annotations

import http.client
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin, urlsplit

TIMEOUT = 30.0
COOKIE_NAME = "session"
SIGNED_IN_MARKER = "Hello, "  # index.html greets a signed-in person; the bare page does too
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Response:
    """What the benchmark needs from an answer."""

    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def cookie(self, name: str = COOKIE_NAME) -> str | None:
        """The ``name=value`` this response sets (``name=`` when it deletes), or None."""
        for header in self.headers.get_all("Set-Cookie") or []:
            pair = header.split(";", 1)[0].strip()
            if pair.startswith(name + "="):
                return pair
        return None


def fetch(method: str, url: str, *, cookie: str | None = None, form: dict[str, str] | None = None,
          json_body: object = None, headers: dict[str, str] | None = None) -> Response:
    """One request on a new connection."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {**(headers or {}), **({"Cookie": cookie} if cookie else {})}
    body = None
    if form is not None:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif json_body is not None:
        body = json.dumps(json_body)
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read().decode("utf-8", "replace"))
    finally:
        connection.close()


class SignInFailed(RuntimeError):
    """A step of the round trip answered something a browser would not expect."""


@dataclass
class SignIn:
    """A finished sign-in: the cookie the browser now holds and how long the round trip took."""

    cookie: str
    seconds: float
    page: str


class Browser:
    """Signs stand-in GitHub accounts in to one app, the way a browser does it.

    The GitHub stand-in is approved by posting its consent form directly (one request, as an
    instant approval is): ``EMULATOR_GITHUB_AUTO_LOGIN`` can only name one account per emulator
    process, and the benchmark needs many distinct accounts against the same process.
    """

    def __init__(self, app_url: str) -> None:
        self.app_url = app_url.rstrip("/")
        # The stand-in's form token and the emulator cookie it belongs to (one browser's).
        self._consent_token: str | None = None
        self._consent_cookie: str | None = None

    def sign_in(self, login: str, *, name: str | None = None, email: str | None = None) -> SignIn:
        """sign-in -> Supabase -> stand-in approval -> Supabase callback -> app callback -> /."""
        started = time.perf_counter()
        answer = self._expect(fetch("GET", self.app_url + "/signin/github"), 303, "start")
        cookie = answer.cookie()
        answer = self._expect(fetch("GET", answer.location), 302, "authorize")
        answer = self._expect(self._approve(answer.location, login, name, email), 302, "approve")
        answer = self._expect(fetch("GET", answer.location), 302, "supabase callback")
        if not answer.location.startswith(self.app_url):
            raise SignInFailed(f"Supabase sent the browser to {answer.location}")
        answer = self._expect(fetch("GET", answer.location, cookie=cookie), 302, "app callback")
        cookie = answer.cookie() or cookie
        page = self._expect(fetch("GET", urljoin(self.app_url + "/", answer.location),
                                  cookie=cookie), 200, "first page")
        # The first page adds the CSRF token and drops the flash: keep the cookie, as a browser
        # would.
        cookie = page.cookie() or cookie
        if SIGNED_IN_MARKER not in page.body:
            raise SignInFailed("the first page after sign-in is not the signed-in page")
        return SignIn(cookie, time.perf_counter() - started, page.body)

    def _approve(self, authorize_url: str, login: str, name: str | None,
                 email: str | None) -> Response:
        if self._consent_token is None:
            page = self._expect(fetch("GET", authorize_url), 200, "consent page")
            match = CSRF_FIELD.search(page.body)
            if not match:
                raise SignInFailed("the stand-in's consent page has no csrf_token")
            self._consent_token = match.group(1)
            self._consent_cookie = page.cookie("emulator_session")
        form = {"csrf_token": self._consent_token, "action": "authorize", "new_login": login,
                "new_name": name or login, "new_email": email or f"{login}@example.com",
                "new_verified": "1"}
        return fetch("POST", authorize_url, form=form, cookie=self._consent_cookie)

    @staticmethod
    def _expect(answer: Response, status: int, step: str) -> Response:
        if answer.status != status:
            raise SignInFailed(f"{step}: expected {status}, got {answer.status} "
                               f"{answer.location or answer.body[:200]!r}")
        return answer
