"""Two gunicorn instances behind Debian's nginx: one person signs in, browses and signs out.

The sign-in starts on one instance and its callback lands on the other (the PKCE verifier
travels in the signed cookie); the short-lived access token is refreshed by both instances;
each instance reads the person's address from X-Forwarded-For (TRUSTED_PROXY_COUNT=1).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY

from tests.helpers import SECRET, csrf_token
from tests.processes import (
    emulator_process,
    free_port,
    gunicorn_process,
    read_session,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NGINX = Path("/usr/sbin/nginx")
TOKEN_LIFETIME = 3  # seconds (EMULATOR_JWT_EXP): each wait past it makes the next page refresh
ROUNDS = 2  # waits for expiry, each followed by three pages: the refreshes change instance
CLIENT = "127.0.0.2"  # the person's address; nginx reaches gunicorn from 127.0.0.1
FORGED = "203.0.113.66"  # what the person claims to be in their own X-Forwarded-For
# %(h)s is REMOTE_ADDR after the app ran, i.e. as ProxyFix left it for the app.
ACCESS_LOG_FORMAT = "%(h)s|%({x-forwarded-for}i)s|%(m)s|%(U)s|%(s)s"
# Lines of the emulator's request log (werkzeug may colour them, hence the \S*).
REFRESH_CALL = re.compile(r'POST /auth/v1/token\?grant_type=refresh_token HTTP/1.1\S*" 200')
LOGOUT_CALL = re.compile(r'POST /auth/v1/logout\?scope=local HTTP/1.1\S*" 204')


@dataclass
class Site:
    """nginx in front of two instances, and where each process logs."""

    url: str
    emulator_log: Path
    access_logs: dict[str, Path]  # upstream address -> that gunicorn's access log


@dataclass
class Visit:
    """One request nginx answered, as the person's browser saw it."""

    method: str
    path: str
    status: int
    upstream: str
    signed_in: bool
    refreshed: bool = False


@dataclass
class Journey:
    """Everything one person did through nginx, in order."""

    visits: list[Visit] = field(default_factory=list)
    signed_out_home: str = ""
    account_after_sign_out: httpx.Response | None = None


def require_nginx() -> None:
    """CI must run this test; elsewhere a missing nginx skips it with the reason."""
    if NGINX.is_file() and os.access(NGINX, os.X_OK):
        return
    reason = f"{NGINX} is missing (apt-get install nginx)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the proxy test (.ci/run installs nginx)")
    pytest.skip(reason)


def nginx_config(directory: Path, port: int, upstreams: list[str]) -> str:
    """The README's upstream and proxy headers; every path nginx writes is in ``directory``."""
    servers = "".join(f"        server {address};\n" for address in upstreams)
    # Run as root (CI containers), nginx would hand its workers to "nobody", who cannot
    # enter pytest's private tmp dir to buffer a large response.
    user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
    return f"""\
daemon off;
worker_processes 1;  # one worker: strict round-robin over the upstream
{user}
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream app {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            add_header X-Upstream $upstream_addr always;  # test only: who answered
        }}
    }}
}}
"""


@contextmanager
def nginx_process(directory: Path, site_url: str, upstreams: list[str]) -> Iterator[None]:
    """nginx in the foreground on SITE_URL's port, until it proxies to the instances."""
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, int(site_url.rsplit(":", 1)[1]), upstreams))
    process = subprocess.Popen(  # noqa: S603 - Debian's nginx with our own config
        [str(NGINX), "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{site_url}/healthz", process)
        yield
    finally:
        stop(process)


@contextmanager
def app_instance(address: str, settings: dict, directory: Path) -> Iterator[Path]:
    """One gunicorn (one worker) on ``address``; yields its access log."""
    port = address.rsplit(":", 1)[1]
    access_log = directory / f"access-{port}.log"
    options = ["-w", "1", "--access-logfile", str(access_log),
               "--access-logformat", ACCESS_LOG_FORMAT]
    with gunicorn_process(f"http://{address}", settings, options=options,
                          log=directory / f"gunicorn-{port}.log"):
        yield access_log


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """The emulator, two app instances sharing SECRET_KEY, and nginx in front of both."""
    require_nginx()
    directory = tmp_path_factory.mktemp("proxies")
    site_url = f"http://127.0.0.1:{free_port()}"  # nginx's address: the app's public one
    emulator_log = directory / "emulator.log"
    with emulator_process(site_url, directory / "auth.sqlite3", log=emulator_log,
                          GITHUB_AUTO_LOGIN="octocat", JWT_EXP=TOKEN_LIFETIME) as emulator:
        # TESTING only because the production guard refuses the emulator's demo key; the
        # settings are otherwise those of the README's production command lines.
        settings = {"TESTING": True, "SECRET_KEY": SECRET, "SITE_URL": site_url,
                    "SUPABASE_URL": emulator.url, "SUPABASE_KEY": emulator.anon_key,
                    "GITHUB_API_URL": f"{emulator.url}/github/api/v3",
                    "TRUSTED_PROXY_COUNT": 1}
        first, second = (f"127.0.0.1:{free_port()}" for _ in range(2))
        with (app_instance(first, settings, directory) as first_log,
              app_instance(second, settings, directory) as second_log,
              nginx_process(directory, site_url, [first, second])):
            yield Site(site_url, emulator_log, {first: first_log, second: second_log})


def session_tokens(http: httpx.Client) -> dict:
    """The tokens in the browser's session cookie, read with the instances' shared key."""
    return read_session(http.cookies.get("session"), SECRET).get(STORAGE_KEY) or {}


def is_signed_in(page: str) -> bool:
    """Every page of a signed-in person has the sign-out form in its header."""
    return 'action="/signout"' in page


def browser_at(address: str, *, follow_redirects: bool = False) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (any 127.x works on Linux)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address),
                        follow_redirects=follow_redirects, timeout=10)


class Person:
    """A browser at CLIENT that notes every answer nginx gave it."""

    def __init__(self, site_url: str) -> None:
        self.site_url = site_url
        self.http = browser_at(CLIENT, follow_redirects=True)
        self.visits: list[Visit] = []

    def open(self, method: str, path: str, **options) -> httpx.Response:
        """Request ``path`` through nginx, following redirects; note each of nginx's answers."""
        before = session_tokens(self.http).get("access_token")
        response = self.http.request(method, self.site_url + path, **options)
        for answer in [*response.history, response]:
            if str(answer.url).startswith(self.site_url):
                self.visits.append(Visit(answer.request.method, answer.url.path,
                                         answer.status_code, answer.headers["X-Upstream"],
                                         is_signed_in(answer.text)))
        after = session_tokens(self.http).get("access_token")
        self.visits[-1].refreshed = bool(before and after and after != before)
        return response

    def wait_for_expiry(self) -> None:
        """Sleep until the cookie's access token has expired."""
        expires_at = session_tokens(self.http)["expires_at"]
        time.sleep(max(expires_at - time.time(), 0) + 0.2)


@pytest.fixture(scope="module")
def journey(site) -> Journey:
    """Sign in; ROUNDS times: wait for expiry, then three pages; sign out."""
    person = Person(site.url)
    journey = Journey(person.visits)
    try:
        page = person.open("GET", "/signin/github")
        for _ in range(ROUNDS):
            person.wait_for_expiry()
            person.open("GET", "/")
            person.open("GET", "/account", headers={"X-Forwarded-For": FORGED})
            page = person.open("GET", "/")
        signed_out = person.open("POST", "/signout", data={"csrf_token": csrf_token(page.text)})
        journey.signed_out_home = signed_out.text
        journey.account_after_sign_out = person.http.get(site.url + "/account",
                                                         follow_redirects=False)
    finally:
        person.http.close()
    return journey


def access_log(path: Path) -> list[dict[str, str]]:
    """The gunicorn access log of one instance, one dict per request."""
    names = ("remote_addr", "x_forwarded_for", "method", "path", "status")
    return [dict(zip(names, line.split("|"), strict=True))
            for line in path.read_text().splitlines()]


def requests_logged(site: Site, at_least: int) -> list[dict[str, str]]:
    """The person's requests in both access logs (not the readiness checks), once all are in.

    gunicorn writes a line after it has sent the response, so the last one may lag a little.
    """
    deadline = time.monotonic() + 5
    while True:
        logged = [entry for path in site.access_logs.values() for entry in access_log(path)
                  if entry["path"] != "/healthz"]
        if len(logged) >= at_least or time.monotonic() > deadline:
            return logged
        time.sleep(0.05)


def test_sign_in_starts_on_one_instance_and_finishes_on_the_other(journey):
    start, callback, home = journey.visits[:3]
    assert (start.path, callback.path, home.path) == ("/signin/github", "/callback", "/")
    assert (start.status, callback.status, home.status) == (303, 302, 200)
    assert start.upstream != callback.upstream
    assert home.signed_in


def test_every_page_answers_200_signed_in(journey):
    pages = [visit for visit in journey.visits[2:] if visit.method == "GET"][:-1]
    assert len(pages) == 1 + 3 * ROUNDS
    assert all(visit.status == 200 and visit.signed_in for visit in pages), pages


def test_requests_alternate_between_the_two_instances(journey, site):
    upstreams = [visit.upstream for visit in journey.visits]
    assert set(upstreams) == set(site.access_logs)
    assert all(one != other for one, other in zip(upstreams, upstreams[1:], strict=False))


def test_each_instance_refreshes_an_expired_token(journey, site):
    # The home page refreshes only because the token expired (it calls nothing else).
    refreshed_home = [visit for visit in journey.visits if visit.refreshed and visit.path == "/"]
    assert len(refreshed_home) == ROUNDS
    assert {visit.upstream for visit in refreshed_home} == set(site.access_logs)


def test_every_refresh_went_to_supabase(journey, site):
    refreshes = sum(visit.refreshed for visit in journey.visits)
    assert refreshes >= ROUNDS
    # At least: supabase_auth's own calls (get_user, sign_out) also refresh a token that has
    # less than EXPIRY_MARGIN (10 s) left, which with a 3 s lifetime is every token.
    assert len(REFRESH_CALL.findall(site.emulator_log.read_text())) >= refreshes


def test_the_app_reads_the_client_address_from_x_forwarded_for(journey, site):
    proxied = requests_logged(site, at_least=len(journey.visits) + 1)
    # nginx connected from 127.0.0.1; the app saw the person's address instead ...
    assert {entry["remote_addr"] for entry in proxied} == {CLIENT}
    # ... also when the person sent an X-Forwarded-For of their own: only nginx's entry counts.
    assert any(entry["x_forwarded_for"] == f"{FORGED}, {CLIENT}" for entry in proxied)


def test_sign_out_through_nginx_ends_the_session(journey, site):
    sign_out, home = journey.visits[-2:]
    assert (sign_out.method, sign_out.path, sign_out.status) == ("POST", "/signout", 302)
    assert home.status == 200 and not home.signed_in
    assert "Sign in with GitHub" in journey.signed_out_home
    assert journey.account_after_sign_out.status_code == 302
    assert journey.account_after_sign_out.headers["Location"].startswith("/signin")
    assert LOGOUT_CALL.search(site.emulator_log.read_text())



@pytest.mark.parametrize("path", ["//evil.example/", "//evil.example/account"])
def test_a_script_name_header_from_the_person_never_reaches_the_app(site, path):
    # gunicorn takes SCRIPT_NAME from a trusted proxy's address as the app's mount point, so
    # with nginx's underscores_in_headers on, links and redirects would lead to evil.example.
    with browser_at(CLIENT) as http:
        response = http.get(site.url + path, headers={"SCRIPT_NAME": "//evil.example"})
    assert "//evil.example/static/" not in response.text
    assert not response.headers.get("Location", "").startswith("//evil.example")
