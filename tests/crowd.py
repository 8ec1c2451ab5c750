"""Many people at once for end-to-end tests: each has a session cookie and an address of their own.

The load client stands in for the one trusted proxy in front of the app (TRUSTED_PROXY_COUNT=1):
every request of a person carries ``X-Forwarded-For: <their address>``, a made-up 10.x.y.z value
that is only a header value (all traffic goes to 127.0.0.1). One httpx.AsyncClient carries
everyone's requests on a new connection each; it keeps no cookies itself, each Person keeps their
own session cookie. A Person made with ``keep_alive`` has a client (one connection) of their own
and keeps it open between pages, as a browser does; when the server closes it just as a request
goes out (a worker recycled, a keep-alive timeout), the request is sent once more on a new
connection, as browsers do, and counted in ``retried``.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import SimpleCookie
from urllib.parse import urljoin, urlsplit

import httpx
import pyotp
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from tests.helpers import SECRET, FormParser
from tests.processes import read_session

SIGNED_IN = 'action="/signout"'  # every page of a signed-in person has the sign-out form
FROM_TOKEN = "could not be loaded"  # /account served from the token (Supabase unreachable)
SECRET_SHOWN = re.compile(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>')
FACTOR_TO_CONFIRM = re.compile(r"/account/two-factor/([0-9a-f-]{36})/confirm")
# A kept-alive connection the server closed as the request went out (no answer began).
CLOSED_UNDER_US = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
TRY_AGAIN = re.compile(r'<a [^>]*href="([^"]*)"[^>]*>\s*Try again\s*</a>')
MAX_HOPS = 10  # redirects in one sign-in round trip, at the most


def address(index: int) -> str:
    """A distinct made-up client address per person: 10.0.0.1, 10.0.0.2, …"""
    number = index + 1
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


class Browsers:
    """The whole crowd's HTTP client, with at most ``at_once`` requests in flight.

    Requests beyond that wait here, not in httpx: its pool rescans every queued request
    against every connection on each event, which with a thousand people queued takes all the
    CPU and the load client stalls. Each request opens a new connection, as the README's nginx
    does towards gunicorn (its upstream has no ``keepalive``): reusing idle connections would
    race gunicorn's 2 s keep-alive whenever this process stalls (a request written as the
    server closes gets no answer). The client's own cookie jar accepts nothing.
    """

    def __init__(self, at_once: int = 32) -> None:
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(60),
            limits=httpx.Limits(max_connections=at_once, max_keepalive_connections=0),
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        self.slots = asyncio.Semaphore(at_once)

    async def __aenter__(self) -> Browsers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()


async def sleep_until(moment: float) -> None:
    """Sleep until time.monotonic() reaches ``moment`` (not at all when it has)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


@dataclass(slots=True)
class Visit:
    """One answer of the app to a person, as they saw it (pages themselves are not kept)."""

    person: int
    path: str
    sent: float  # time.monotonic() when the request left
    seconds: float  # until the whole answer was in
    status: int
    signed_in: bool  # the page has the sign-out form
    greeted: bool  # "Hello," (the home page of a signed-in person)
    suspended: bool  # the page says the account was suspended
    renewed: bool  # the answer set a new session cookie (e.g. after a check with Supabase)
    from_token: bool = False  # the page says some details could not be loaded


class Person:
    """One browser: a session cookie, an address, and every answer the app gave it."""

    def __init__(self, index: int, browsers: Browsers, app_url: str, *,
                 keep_alive: bool = False) -> None:
        self.index = index
        self.address = address(index)
        self.login = f"person{index}"  # their GitHub stand-in account, where one is created
        self.browsers = browsers
        self.app_url = app_url
        self.cookie: str | None = None
        self.visits: list[Visit] = []
        self.errors: Counter[str] = Counter()
        self.csrf: str | None = None
        self.callback_path: str | None = None
        self.signed_in_at: float | None = None  # when the first signed-in page was asked for
        self.signed_out_at: float | None = None  # when this person pressed Sign out
        self.keep_alive = keep_alive
        self.own_http = httpx.AsyncClient(
            timeout=httpx.Timeout(60), limits=httpx.Limits(max_connections=1),
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[]))) if keep_alive else None
        self.retried = 0  # requests sent again after the server closed a kept-alive connection

    async def open(self, path: str, method: str = "GET",
                   data: dict | None = None) -> tuple[httpx.Response, Visit]:
        """Request ``path`` of the app as this person, without following redirects."""
        headers = {"X-Forwarded-For": self.address}
        if self.cookie is not None:
            headers["Cookie"] = f"session={self.cookie}"
        async with self.browsers.slots:
            sent = time.monotonic()
            response = await self._send(method, self.app_url + path, headers, data)
        renewed = self._keep_cookie(response)
        page = response.text
        visit = Visit(self.index, urlsplit(path).path, sent, time.monotonic() - sent,
                      response.status_code, SIGNED_IN in page, "Hello," in page,
                      "suspended" in page, renewed, FROM_TOKEN in page)
        self.visits.append(visit)
        if visit.signed_in and (token := CSRF_FIELD.search(page)):
            self.csrf = token.group(1)
        return response, visit

    async def _send(self, method: str, url: str, headers: dict,
                    data: dict | None) -> httpx.Response:
        if self.own_http is None:
            return await self.browsers.http.request(method, url, headers=headers, data=data)
        try:
            return await self.own_http.request(method, url, headers=headers, data=data)
        except CLOSED_UNDER_US:
            if method != "GET":
                raise
            self.retried += 1
            return await self.own_http.request(method, url, headers=headers, data=data)

    async def close(self) -> None:
        """Close this person's own connection, if they keep one."""
        if self.own_http is not None:
            await self.own_http.aclose()

    async def set_up_authenticator(self) -> None:
        """Add an authenticator app on /account/two-factor as a person does (read the key off
        the page, enter its code): the session is at aal2 afterwards."""
        form, _ = await self.open("/account/two-factor")
        token = CSRF_FIELD.search(form.text).group(1)
        shown, _ = await self.open("/account/two-factor", "POST",
                                   {"csrf_token": token, "name": "Phone"})
        assert shown.status_code == 200, f"enrolment answered {shown.status_code}"
        secret = SECRET_SHOWN.search(shown.text).group(1).replace(" ", "")
        factor = FACTOR_TO_CONFIRM.search(shown.text).group(1)
        done, _ = await self.open(f"/account/two-factor/{factor}/confirm", "POST", {
            "csrf_token": CSRF_FIELD.search(shown.text).group(1),
            "code": pyotp.TOTP(secret).now()})
        assert done.status_code == 302, f"confirming the app answered {done.status_code}"

    async def follow(self, response: httpx.Response) -> tuple[httpx.Response, Visit | None]:
        """Follow the app's redirects (same-site paths) to the page they lead to."""
        visit = None
        for _ in range(MAX_HOPS):
            if not response.is_redirect:
                return response, visit
            location = response.headers["Location"].removeprefix(self.app_url)
            assert location.startswith("/"), f"the app sent {self.index} off-site: {location}"
            response, visit = await self.open(location)
        raise AssertionError(f"more than {MAX_HOPS} redirects in the app")

    async def start_sign_in(self) -> httpx.Response:
        """Sign in with GitHub up to the app's answer at /callback (not followed further)."""
        start, _ = await self.open("/signin/github")
        assert start.status_code == 303, f"/signin/github answered {start.status_code}"
        back = await self._through_provider(urljoin(self.app_url, start.headers["Location"]))
        parts = urlsplit(back)
        self.callback_path = f"{parts.path}?{parts.query}"
        callback, _ = await self.open(self.callback_path)
        return callback

    async def land(self, callback: httpx.Response) -> Visit | None:
        """The page the callback's redirect leads to; notes when the person is signed in."""
        _, visit = await self.follow(callback)
        if visit is not None and visit.status == 200 and visit.greeted:
            self.signed_in_at = visit.sent
        return visit

    async def sign_in(self) -> Visit | None:
        """The whole round trip; the page it lands on."""
        return await self.land(await self.start_sign_in())

    async def sign_out(self) -> Visit | None:
        """Press Sign out on the last page; the page it lands on."""
        assert self.csrf is not None, f"person {self.index} never saw a sign-out form"
        self.signed_out_at = time.monotonic()
        response, _ = await self.open("/signout", "POST",
                                      {"csrf_token": self.csrf, "scope": "local"})
        _, visit = await self.follow(response)
        return visit

    def user_id(self) -> str:
        """The Supabase user id (the access token's ``sub``) from the session cookie."""
        tokens = read_session(self.cookie, SECRET)[STORAGE_KEY]
        return decode_jwt(tokens["access_token"])["payload"]["sub"]

    def failed(self, error: Exception) -> None:
        """Note a request that got no answer (or an answer a step could not use)."""
        try:
            request = error.request  # httpx errors carry the request that failed
            where = f" ({request.method} {request.url.host}:{request.url.port}{request.url.path})"
        except (AttributeError, RuntimeError):
            where = ""
        self.errors[f"{type(error).__name__}{where}: {str(error)[:120]}"] += 1

    async def _through_provider(self, location: str) -> str:
        """Follow Supabase and the GitHub stand-in (creating this person's account on its
        consent page when it shows one) until they send the browser back; that address."""
        for _ in range(MAX_HOPS):
            if location.startswith(self.app_url):
                return location
            async with self.browsers.slots:
                response = await self.browsers.http.get(location)
            if response.status_code == 200:
                response = await self._approve(response)
            assert response.is_redirect, (
                f"the emulator answered {response.status_code}: {response.text[:200]}")
            location = urljoin(str(response.url), response.headers["Location"])
        raise AssertionError(f"more than {MAX_HOPS} redirects on the way to the app")

    async def _approve(self, consent: httpx.Response) -> httpx.Response:
        parser = FormParser()
        parser.feed(consent.text)
        form = next(form for form in parser.forms if "state" in form["fields"])
        fields = {**form["fields"], "action": "authorize", "new_login": self.login,
                  "new_name": f"Person {self.index}", "new_email": f"{self.login}@example.com",
                  "new_verified": "1"}
        # The form's CSRF token belongs to the emulator's cookie that came with the page.
        emulator_cookie = SimpleCookie(consent.headers.get("set-cookie", "")).get(
            "emulator_session")
        headers = {"Cookie": f"emulator_session={emulator_cookie.value}"} \
            if emulator_cookie else {}
        async with self.browsers.slots:
            return await self.browsers.http.post(urljoin(str(consent.url), form["action"]),
                                                 data=fields, headers=headers)

    def _keep_cookie(self, response: httpx.Response) -> bool:
        """Keep (or drop) the session cookie the answer sets; whether it set a new one."""
        renewed = False
        for header in response.headers.get_list("set-cookie"):
            morsel = SimpleCookie(header).get("session")
            if morsel is not None:
                deleted = not morsel.value or morsel["max-age"] == "0"
                self.cookie = None if deleted else morsel.value
                renewed = not deleted
        return renewed


def try_again_link(page: str) -> str | None:
    """The href of an error page's Try again button."""
    match = TRY_AGAIN.search(page)
    return html.unescape(match.group(1)) if match else None


def visits_of(people: Iterable[Person]) -> list[Visit]:
    """Every answer any of ``people`` saw."""
    return [visit for person in people for visit in person.visits]


def server_errors(visits: Iterable[Visit]) -> list[Visit]:
    """The answers with a 5xx status."""
    return [visit for visit in visits if visit.status >= 500]


def errors_of(people: Iterable[Person]) -> Counter[str]:
    """Requests that got no usable answer, by error, over everyone."""
    total: Counter[str] = Counter()
    for person in people:
        total.update(person.errors)
    return total


def pages_signed_in(person: Person) -> list[Visit]:
    """The answers from the person's first signed-in page up to (not including) Sign out."""
    if person.signed_in_at is None:
        return []
    end = person.signed_out_at if person.signed_out_at is not None else float("inf")
    return [visit for visit in person.visits if person.signed_in_at <= visit.sent < end]


def wrongly_signed_out(person: Person) -> list[Visit]:
    """Pages after sign-in that did not show the person signed in (the home page greets them)."""
    return [visit for visit in pages_signed_in(person)
            if visit.status != 200 or not visit.signed_in or (visit.path == "/"
                                                                and not visit.greeted)]
