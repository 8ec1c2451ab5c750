"""The Flask application factory: named setup steps, then the pages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix

import account
import auth
import config
import passkeys
import pending_sign_outs
import roles
import security
import supabase_client
import two_factor
from flask_storage import CheckedCookieSessionInterface

log = logging.getLogger(__name__)
pages = Blueprint("pages", __name__)
RETRYABLE = frozenset({429, 502, 503})  # error pages that offer to try the same page again


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app from the environment, or from ``test_config`` in tests."""
    app = Flask(__name__)
    app.session_interface = CheckedCookieSessionInterface()
    config.load(app, test_config)
    config.check(app)
    supabase_client.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    pending_sign_outs.init_app(app)  # after auth: sends while the user is loaded
    two_factor.init_app(app)  # after auth: its check needs the user
    passkeys.init_app(app)
    app.register_blueprint(pages)
    app.register_blueprint(account.bp)
    app.register_blueprint(roles.bp)
    register_error_pages(app)
    register_template_helpers(app)
    trust_proxies(app)
    return app


def trust_proxies(app: Flask) -> None:
    """Read the client's address, scheme and host from TRUSTED_PROXY_COUNT proxies' headers."""
    hops = app.config["TRUSTED_PROXY_COUNT"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


@pages.get("/")
def index():
    """The home page: a sign-in button, or who is signed in."""
    if request.args.get("code") or request.args.get("error_description"):
        # Supabase falls back to SITE_URL when the redirect URL is not on its allow-list.
        log.warning(
            "Sign-in came back to / instead of /callback: add %s/callback?flow=* to the Redirect "
            "URLs of your Supabase project (Authentication > URL Configuration).",
            current_app.config["SITE_URL"],
        )
        return auth.finish_sign_in(request.args)
    return render_template("index.html", providers=auth.enabled_providers())


@pages.get("/favicon.ico")
def favicon():
    """Browsers ask for it at the root whatever the page links."""
    return current_app.send_static_file("favicon.ico")


@pages.get("/healthz")
def healthz():
    """Liveness for load balancers: the process answers, nothing else is checked."""
    return {"status": "ok"}


def register_template_helpers(app: Flask) -> None:
    """Filters and globals the templates use."""
    app.add_template_global(auth.provider_name)
    app.add_template_filter(format_datetime, "datetime")


def format_datetime(value: datetime | None) -> str:
    """A timestamp as people read it, in UTC."""
    return value.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC") if value else "—"


def register_error_pages(app: Flask) -> None:
    """Every error a person can meet gets a page with its status and a way on."""

    @app.errorhandler(SecurityError)
    def untrusted_host(error: SecurityError):
        # Not in TRUSTED_HOSTS: Flask could not bind URLs to it, so no page can be built.
        return "This site does not answer to that host name.\n", 400, {
            "Content-Type": "text/plain; charset=utf-8"}

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Keep what the exception adds, e.g. Retry-After on 429 and 503.
        headers = [(name, value) for name, value in error.get_headers()
                   if name.lower() != "content-type"]
        # Werkzeug's stock sentence ("The requested URL was not found on the server…") gives
        # way to the page's own; a description a view wrote stays.
        stock = error.description == type(error).description
        return render_error(error.code or 500, None if stock else error.description), \
            error.code, headers

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        message = "This form expired or did not come from this site. Reload the page and try again."
        return render_error(400, message), 400

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500, None), 500


def render_error(status: int, message: str | None) -> str:
    """The error page: what happened and what to do next (for a passing failure, a retry of
    the same address when it is a same-site path)."""
    retry = auth.safe_next(auth.current_path()) if status in RETRYABLE else None
    return render_template("error.html", status=status, message=message, retry=retry)
