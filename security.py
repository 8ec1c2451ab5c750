"""Browser-facing protections: CSRF on state-changing requests, and headers on every response."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from cachetools import LRUCache
from flask import Flask, Response, current_app, g, redirect, request, session
from flask_wtf.csrf import CSRFProtect, generate_csrf

csrf = CSRFProtect()
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_SIGNED_TOKENS = 256  # form tokens of the sessions active this moment, per process


def init_app(app: Flask) -> None:
    """CSRF for unsafe methods, a cached form token, fixed headers, and no-store where needed."""
    # Flask-WTF's own hook looks up exemptions before it looks at the method, on every GET;
    # checking the method first is the same protection for a fraction of the cost.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    if app.debug:
        app.before_request(to_site_host)  # first: before anything reads or stores the session
    app.before_request(protect_unsafe_methods)
    app.extensions["signed_csrf_tokens"] = (LRUCache(MAX_SIGNED_TOKENS), threading.Lock())
    # Registered after Flask-WTF's context processor, so templates get this csrf_token.
    app.context_processor(lambda: {"csrf_token": csrf_token})
    app.after_request(mark_private)
    app.wsgi_app = SecurityHeaders(app.wsgi_app, fixed_headers(app))


def to_site_host() -> Response | None:
    """Debug only: a request for another name of this machine (127.0.0.1, [::1], localhost)
    goes to the same path on SITE_URL, where the session cookie and the callback belong.

    Cookies belong to a host name, so a sign-in started on one name and finished on another
    would find no verifier. The target is SITE_URL, never the request's Host header.
    """
    site = urlsplit(current_app.config["SITE_URL"])
    asked = urlsplit(f"{request.scheme}://{request.host}")
    if (asked.hostname, _port(asked)) == (site.hostname, _port(site)):
        return None
    query = request.query_string.decode("latin-1")
    target = f"{site.scheme}://{site.netloc}{request.path}" + (f"?{query}" if query else "")
    # 307 keeps a form's method (its CSRF token, from the other name's session, then fails
    # with the page that says the form expired).
    return redirect(target, code=302 if request.method in ("GET", "HEAD") else 307)


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:  # a Host header with a malformed port
        port = None
    return port or (443 if parts.scheme == "https" else 80)


def protect_unsafe_methods() -> None:
    """Every POST/PUT/PATCH/DELETE to a route needs a valid CSRF token (400 page otherwise).

    A request that matched no route (404/405) has nothing to protect and gets that answer.
    """
    if request.method in UNSAFE_METHODS and request.endpoint is not None:
        csrf.protect()


def csrf_token() -> str:
    """Flask-WTF's form token, signed once per session token rather than on every page.

    With WTF_CSRF_TIME_LIMIT = None the signature's timestamp is never checked, so a token
    signed earlier for the same session validates exactly like a fresh one.
    """
    raw = session.get(current_app.config["WTF_CSRF_FIELD_NAME"])
    if raw is None or current_app.config["WTF_CSRF_TIME_LIMIT"] is not None:
        return generate_csrf()
    signed, lock = current_app.extensions["signed_csrf_tokens"]
    with lock:
        token = signed.get(raw)
    if token is None:
        token = generate_csrf()
        with lock:
            signed[raw] = token
    return token


def mark_private(response):
    """Cache-Control: no-store on responses that show a person's data or set auth cookies."""
    if g.get("auth_user") is not None or session.modified:
        response.headers["Cache-Control"] = "no-store"
    return response


def fixed_headers(app: Flask) -> list[tuple[str, str]]:
    """The headers every response carries. The CSP allows no inline script or style."""
    supabase = urlsplit(app.config["SUPABASE_URL"])
    images = f"'self' https: data: {supabase.scheme}://{supabase.netloc}"
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    headers = [
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    ]
    max_age = app.config["HSTS_MAX_AGE"]
    if app.config["SESSION_COOKIE_SECURE"] and max_age > 0:  # served over https
        headers.append(("Strict-Transport-Security", f"max-age={max_age}"))
    return headers


class SecurityHeaders:
    """WSGI middleware adding fixed headers a view did not set itself.

    At this level they are appended to a plain list, which costs a fraction of going through
    werkzeug's Headers object in an after_request hook on every response.
    """

    def __init__(self, wsgi_app: Callable, headers: list[tuple[str, str]]) -> None:
        self.wsgi_app = wsgi_app
        self.headers = [(name.lower(), (name, value)) for name, value in headers]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers.extend(header for lower, header in self.headers if lower not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
