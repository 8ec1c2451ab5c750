"""Pages, error pages and the headers every response carries."""

from __future__ import annotations

import pytest
from flask import request

from app import create_app


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


@pytest.mark.parametrize("method, path, status, title", [
    ("GET", "/no-such-page", 404, "Page not found"),
    ("GET", "/signout", 405, "Not allowed"),
    ("POST", "/", 405, "Not allowed"),
    ("GET", "/signin/unknown", 404, "Page not found"),
])
def test_error_pages_have_their_status_and_a_way_home(client, method, path, status, title):
    response = client.open(path, method=method)
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert f"<h1 id=\"error-title\">{title}</h1>" in page
    assert "Back to the home page" in page


def test_an_unexpected_error_is_a_500_page_without_a_traceback(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail sk_live_123")

    response = app.test_client().get("/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert "Traceback" not in page and "sk_live_123" not in page


def test_security_headers(client):
    headers = client.get("/").headers
    csp = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_signed_out_pages_may_be_cached_signed_in_pages_not(client, browser, github_account):
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")
    browser.sign_in(github_account())
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_session_cookie_flags(client, browser, github_account):
    response = client.get("/signin/github")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # SITE_URL is http://127.0.0.1 in these tests


def test_secure_cookie_when_site_is_https(make_app):
    app = make_app(SITE_URL="https://app.example.com")
    response = app.test_client().get("/signin/github", base_url="https://app.example.com")
    assert "Secure" in response.headers["Set-Cookie"]


# What one proxy in front would send about a person at 198.51.100.7, who also sent a forged
# X-Forwarded-For of their own; the app's TCP peer is the proxy, 192.0.2.1.
FORWARDED = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "app.example.com"}
PROXY = {"REMOTE_ADDR": "192.0.2.1"}


def request_as_seen(app, headers: dict) -> dict:
    """The client address, scheme and host the app sees for a request with ``headers``."""

    @app.get("/as-seen")
    def as_seen():
        return {"remote_addr": request.remote_addr, "secure": request.is_secure,
                "scheme": request.scheme, "host": request.host}

    return app.test_client().get("/as-seen", headers=headers, environ_base=PROXY).json


def test_without_trusted_proxies_forwarded_headers_change_nothing(make_app):
    seen = request_as_seen(make_app(TRUSTED_PROXY_COUNT=0), FORWARDED)
    assert seen == {"remote_addr": "192.0.2.1", "secure": False, "scheme": "http",
                    "host": "localhost"}


def test_one_trusted_proxy_gives_its_client_address_scheme_and_host(make_app):
    seen = request_as_seen(make_app(TRUSTED_PROXY_COUNT=1), FORWARDED)
    # The last X-Forwarded-For entry is the one the proxy added; the forged one before it is
    # ignored.
    assert seen == {"remote_addr": "198.51.100.7", "secure": True, "scheme": "https",
                    "host": "app.example.com"}


def test_app_module_does_nothing_at_import():
    import app as module

    assert not hasattr(module, "application") and callable(module.create_app)
    assert create_app.__doc__
