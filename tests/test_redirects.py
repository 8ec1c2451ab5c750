"""Open redirects: every known trick in `next` and redirect parameters stays on this site."""

from __future__ import annotations

import html
import re
import time
import types
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

import auth
from tests.helpers import SITE_URL, csrf_token, move_app_clock

EVIL = "evil.example"
BYPASSES = [
    f"//{EVIL}", f"///{EVIL}", f"////{EVIL}/", f"/\\{EVIL}", f"\\\\{EVIL}", f"/\\/{EVIL}",
    f"\\/{EVIL}", f"%2F%2F{EVIL}", f"/%2F{EVIL}", f"%5C%5C{EVIL}", f"/%5C{EVIL}",
    f"%252F%252F{EVIL}", f"/\t/{EVIL}", f"/\n/{EVIL}", f"/\r\n/{EVIL}", f"\t//{EVIL}",
    f" //{EVIL}", f"/ /{EVIL}", f"/%09/{EVIL}", f"/%0a/{EVIL}", f"/%0d%0aLocation:%20//{EVIL}",
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "/javascript:alert(1)//", "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "DATA:text/html;base64,PHNjcmlwdD4=",
    "vbscript:msgbox(1)", f"https://{EVIL}/", f"HTTPS://{EVIL}", f"http:{EVIL}",
    f"http:/{EVIL}", f"https:/\\{EVIL}", f"//{EVIL}@127.0.0.1:5000", f"/@{EVIL}",
    f"http://127.0.0.1:5000@{EVIL}/", f"{SITE_URL.replace('http:', 'https:')}/account",
    f"{SITE_URL}/account", "ftp://127.0.0.1:5000/", f"//{EVIL}%2F..", f"/.{EVIL}",
    "//ⓔⓥⓘⓛ.example", "/\u2215\u2215evil.example", "/\uff0f\uff0fevil.example",
    "//evil\u3002example", "/\u202e//evil.example", "/\u00a0//evil.example",
    "/" + "a" * 5000, f"//{EVIL}/" + "a" * 3000, "account", "", "?next=//evil.example",
    "#//evil.example", f"/<script>{EVIL}", '/"><img src=x onerror=alert(1)>',
]
# Parameter names tried on every route: none of them should steer a redirect.
REDIRECT_PARAMS = ["next", "redirect_to", "redirect", "return_to", "returnTo", "url", "continue",
                   "callback", "goto", "dest", "destination", "target"]


def assert_same_site(location: str) -> None:
    """As a browser resolves it (backslash as slash, tab and newline stripped) on this site."""
    assert location.startswith("/"), location
    for trick in ("\\", "\t", "\n", "\r"):
        assert trick not in location, location
    assert not location.startswith("//"), location
    resolved = urlsplit(urljoin(SITE_URL + "/", location))
    assert f"{resolved.scheme}://{resolved.netloc}" == SITE_URL, location


def with_param(path: str, name: str, value: str) -> str:
    return f"{path}?{httpx.QueryParams({name: value})}"


def test_at_least_thirty_bypasses_are_tried():
    assert len(BYPASSES) >= 30


@pytest.mark.parametrize("target", BYPASSES)
def test_signed_in_signin_page_redirects_on_site(client, signed_in, target):
    response = client.get(with_param("/signin", "next", target))
    assert response.status_code == 302
    assert_same_site(response.headers["Location"])


@pytest.mark.parametrize("target", BYPASSES)
def test_sign_in_remembers_only_a_same_site_next(client, target):
    client.get(with_param("/signin/github", "next", target))
    with client.session_transaction() as sess:
        remembered = sess[auth.FLOWS_KEY][-1]["next"]
    assert_same_site(remembered)


@pytest.mark.parametrize("target", BYPASSES)
def test_sign_in_round_trip_lands_on_site(browser, github_account, target):
    consent = browser.start(with_param("/signin/github", "next", target))
    response = browser.approve(github_account(), consent)
    assert response.status_code == 302
    assert_same_site(response.headers["Location"])


@pytest.mark.parametrize("target", BYPASSES)
def test_signin_page_buttons_carry_only_a_same_site_next(client, target):
    page = client.get(with_param("/signin", "next", target)).get_data(as_text=True)
    start = page.index('href="/signin/github')
    href = page[start + 6: page.index('"', start + 6)].replace("&amp;", "&")
    nexts = parse_qs(urlsplit(href).query).get("next", [])
    for remembered in nexts:
        assert_same_site(remembered)


def callback_path(browser, login: str, consent) -> str:
    """Approve on the consent page; the callback path, not yet opened in the app."""
    app_client, browser.client = browser.client, types.SimpleNamespace(get=lambda path: path)
    try:
        return browser.approve(login, consent)
    finally:
        browser.client = app_client


@pytest.mark.parametrize("name", REDIRECT_PARAMS)
def test_callback_ignores_redirect_parameters(client, browser, github_account, name):
    path = callback_path(browser, github_account(), browser.start())
    response = client.get(f"{path}&{httpx.QueryParams({name: f'//{EVIL}'})}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("name", REDIRECT_PARAMS)
def test_sign_out_ignores_redirect_parameters(client, signed_in, name):
    token = csrf_token(client.get("/").get_data(as_text=True))
    response = client.post(with_param("/signout", name, f"//{EVIL}"),
                           data={"csrf_token": token, name: f"https://{EVIL}/"})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("name", REDIRECT_PARAMS)
def test_signin_ignores_other_redirect_parameters(client, name):
    client.get(with_param("/signin/github", name, f"//{EVIL}") + "&next=/account")
    with client.session_transaction() as sess:
        remembered = sess[auth.FLOWS_KEY][-1]["next"]
    assert remembered == ("/account" if name != "next" else "/")


@pytest.mark.parametrize("path", ["/account", "/account?x=//evil.example",
                                  "/account?next=https://evil.example"])
def test_login_required_next_is_the_page_itself(client, path):
    location = client.get(path).headers["Location"]
    assert_same_site(location)
    assert parse_qs(urlsplit(location).query)["next"] == [path]


# -- "Try again" on the 429 and 503 pages is built from the request's own path ----------------

# Paths as they arrive in the request line (the test client would read "//host" as a host).
TRICK_PATHS = [f"//{EVIL}", f"///{EVIL}", f"//{EVIL}/callback", f"/\\{EVIL}", f"/\\/{EVIL}",
               f"/\\\\{EVIL}/login", "/javascript:alert(1)//", f"/\t/{EVIL}", f"/ /{EVIL}",
               "/\u2215\u2215evil.example", "/" + "a" * 3000]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def try_again_links(page: str) -> list[str]:
    return [html.unescape(link) for link in re.findall(r'href="([^"]*)">Try again', page)]


@pytest.mark.parametrize("path", TRICK_PATHS)
def test_try_again_on_the_503_page_stays_on_site(make_app, client, signed_in, monkeypatch, path):
    down = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(refuse)).test_client()
    down.set_cookie("session", client.get_cookie("session").value)
    move_app_clock(monkeypatch, 3601)  # the token has expired, and Supabase is down
    raw = path.encode().decode("latin-1")  # WSGI carries the request line's bytes as latin-1
    response = down.get("/", environ_overrides={"PATH_INFO": raw, "QUERY_STRING": "code=x"})
    assert response.status_code == 503
    for link in try_again_links(response.get_data(as_text=True)):
        assert_same_site(link)


@pytest.mark.parametrize("path", TRICK_PATHS)
def test_try_again_on_the_429_page_stays_on_site(make_app, path):
    def rate_limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"code": "over_request_rate_limit", "message": "slow"},
                              headers={"X-Supabase-Api-Version": "2024-01-01"})

    client = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(rate_limited)).test_client()
    with client.session_transaction() as sess:
        sess[auth.FLOWS_KEY] = [{"id": "f", "verifier": "v" * 43, "next": "/", "provider":
                                 "github", "intent": "signin", "started": int(time.time())}]
    query = str(httpx.QueryParams({"code": "abc", "flow": "f", "x": path}))
    response = client.get("/", environ_overrides={"PATH_INFO": "/callback",
                                                  "QUERY_STRING": query})
    assert response.status_code == 429
    links = try_again_links(response.get_data(as_text=True))
    assert links or len(query) > 2000  # too long to be a link it builds
    for link in links:
        assert_same_site(link)
