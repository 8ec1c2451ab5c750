"""The emulator's own HTML pages (consent pages, dashboard): CSRF, Origin and strict headers.

The CSRF token is per browser (Flask-WTF's: a random value in the emulator's own signed
session cookie, and a signed copy in each form), so a page that learned one browser's token
cannot use it from another. The session cookie is ``emulator_session``, never ``session``:
cookies ignore ports, and the app under development on the same host uses that name.
"""

from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# A consent form's POST is answered by redirects to the client's redirect_uri, on any origin,
# and browsers apply form-action to those redirects too: the consent pages leave it out.
CONSENT_CSP = CSP.replace(" form-action 'self';", "")


def init_app(app: Flask) -> None:
    """Name and scope the session cookie that carries the per-browser CSRF token."""
    app.config.update(
        SESSION_COOKIE_NAME="emulator_session", SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["PUBLIC_URL"].startswith("https:"),
        WTF_CSRF_TIME_LIMIT=None)  # valid while the browser's session lasts
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """The token every emulator form carries in a hidden ``csrf_token`` field."""
    return generate_csrf()


def check_csrf() -> None:
    """Refuse a form POST from another origin, or whose token is not this browser's (400)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in own_origins():
        abort(400, "This form was sent from another site, so it was not acted on. Open the "
                   "emulator's page yourself and submit the form there.")
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        abort(400, "The form's CSRF token is missing or wrong; reload the page and retry.")


def own_origins() -> set[str]:
    """The origins the emulator's own pages are served from: this request's and PUBLIC_URL's."""
    public = urlsplit(current_app.config["PUBLIC_URL"])
    return {request.host_url.rstrip("/"), f"{public.scheme}://{public.netloc}"}


def strict_headers(response: Response, policy: str = CSP) -> Response:
    """No inline script or style, nothing framed, nothing sniffed or cached."""
    response.headers.setdefault("Content-Security-Policy", policy)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
