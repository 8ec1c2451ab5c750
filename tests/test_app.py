"""Pages, error pages and the headers every response carries."""

from __future__ import annotations

import pytest

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


def test_app_module_does_nothing_at_import():
    import app as module

    assert not hasattr(module, "application") and callable(module.create_app)
    assert create_app.__doc__
