"""CSRF protection for the emulator's own HTML forms (consent page, dashboard)."""

import hmac
import secrets

from flask import Flask, abort, current_app, request


def init_app(app: Flask) -> None:
    """Create the per-process form secret once."""
    app.extensions["emulator.csrf"] = secrets.token_urlsafe(24)
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    """The token every emulator form carries in a hidden ``csrf_token`` field."""
    return current_app.extensions["emulator.csrf"]


def check_csrf() -> None:
    """Refuse a form POST whose token is missing or wrong (400)."""
    sent = request.form.get("csrf_token", "")
    if not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        abort(400, "The form's CSRF token is missing or wrong; reload the page and retry.")
