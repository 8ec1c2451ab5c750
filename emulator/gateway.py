"""The API gateway in front of Auth: the Host check, the ``apikey`` check and Authorization.

Every route answers only under a loopback name or PUBLIC_URL's host (any port): a page on
another domain whose name resolves to 127.0.0.1 (DNS rebinding) reaches nothing, neither the
dashboard nor the API with the published demo keys.

Both key generations are accepted: the legacy anon / service_role JWTs and the opaque
publishable / secret keys. As the Supabase CLI's gateway does, an opaque key is never passed on
as a token: when the request carries no Authorization, or ``Bearer sb_…``, the gateway forwards
``Bearer <the role's JWT>`` instead (publishable → anon, secret → service_role). A secret key
is refused from a browser, which Supabase recognises by its ``User-Agent``.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from .errors import gateway_error
from .tokens import api_key

PREFIX = "/auth/v1/"
OPEN_PATHS = {"/auth/v1/authorize", "/auth/v1/callback", "/auth/v1/verify",
              "/auth/v1/.well-known/jwks.json"}
OPAQUE_BEARER = "Bearer sb_"  # the CLI gateway's test, case-sensitive like it
BROWSER_AGENT = "Mozilla/"  # how every browser's User-Agent starts
HOST_HEADER = re.compile(r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WRONG_HOST = ("This emulator answers only at 127.0.0.1, localhost, [::1] or its PUBLIC_URL's "
              "host. Open it under one of those names.\n")


@dataclass(frozen=True)
class ApiKey:
    """What a key stands for: its role, and the JWT forwarded for an opaque (sb_…) key."""

    role: str
    forwarded: str | None = None  # None: a legacy JWT key, itself a token


def init_app(app: Flask) -> None:
    """Compute the accepted keys once and check them before every /auth/v1 request."""
    secret = app.config["JWT_SECRET"]
    anon, service_role = api_key("anon", secret), api_key("service_role", secret)
    app.extensions["emulator.api_keys"] = {
        anon: ApiKey("anon"),
        service_role: ApiKey("service_role"),
        app.config["PUBLISHABLE_API_KEY"]: ApiKey("anon", anon),
        app.config["SECRET_API_KEY"]: ApiKey("service_role", service_role),
    }
    app.extensions["emulator.hosts"] = LOOPBACK_NAMES | {
        urlsplit(app.config["PUBLIC_URL"]).hostname}
    app.before_request(check_host)  # the app's first hook: before anything reads the request
    app.before_request(check_api_key)


def host_name(host: str) -> str | None:
    """The name in a Host header, lower case, without port or IPv6 brackets (None if garbled)."""
    match = HOST_HEADER.fullmatch(host)
    return match.group(1).lower().strip("[]") if match else None


def check_host() -> Response | None:
    """400 unless the request's Host names the emulator (a loopback name or PUBLIC_URL's)."""
    if host_name(request.headers.get("Host", "")) in current_app.extensions["emulator.hosts"]:
        return None
    return Response(WRONG_HOST, 400, mimetype="text/plain")


def is_browser(user_agent: str) -> bool:
    """True for a browser's User-Agent (they all start ``Mozilla/``)."""
    return user_agent.startswith(BROWSER_AGENT)


def forward_authorization(key: ApiKey) -> None:
    """Keep a user's token; otherwise put the opaque key's role JWT in Authorization."""
    authorization = request.headers.get("Authorization")
    if authorization is not None and not authorization.startswith(OPAQUE_BEARER):
        return
    if key.forwarded is not None:
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {key.forwarded}"
    else:  # Bearer sb_… next to a legacy key is no token at all
        request.environ.pop("HTTP_AUTHORIZATION", None)


def check_api_key() -> Response | None:
    """401 with the gateway's JSON unless the request carries a usable API key."""
    path = request.path
    if not path.startswith(PREFIX) or path.rstrip("/") in OPEN_PATHS:
        return None
    key = request.headers.get("apikey") or request.args.get("apikey")
    if not key:
        return gateway_error("No API key found in request")
    found = current_app.extensions["emulator.api_keys"].get(key)
    if found is None:
        return gateway_error("Invalid API key")
    if key.startswith("sb_secret_") and is_browser(request.headers.get("User-Agent", "")):
        return gateway_error("Forbidden use of secret API key in browser")
    forward_authorization(found)
    return None
