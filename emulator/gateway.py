"""The API gateway's key check (Kong key-auth on hosted projects and `supabase start`)."""

from flask import Flask, Response, current_app, request

from .errors import gateway_error
from .tokens import api_key

PREFIX = "/auth/v1/"
OPEN_PATHS = {"/auth/v1/authorize", "/auth/v1/callback", "/auth/v1/verify",
              "/auth/v1/.well-known/jwks.json"}


def init_app(app: Flask) -> None:
    """Compute the accepted keys once and check them before every /auth/v1 request."""
    secret = app.config["JWT_SECRET"]
    app.extensions["emulator.api_keys"] = frozenset(
        {api_key("anon", secret), api_key("service_role", secret)})
    app.before_request(check_api_key)


def check_api_key() -> Response | None:
    """401 with the gateway's JSON unless the request carries a known API key."""
    path = request.path
    if not path.startswith(PREFIX) or path.rstrip("/") in OPEN_PATHS:
        return None
    key = request.headers.get("apikey") or request.args.get("apikey")
    if not key:
        return gateway_error("No API key found in request")
    if key not in current_app.extensions["emulator.api_keys"]:
        return gateway_error("Invalid API key")
    return None
