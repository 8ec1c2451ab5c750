"""One HTTP pool per process, one Supabase client per request (the shape of flaskr's db.py)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from flask import Flask, current_app, g
from supabase import Client
from supabase.lib.client_options import SyncClientOptions

from flask_storage import FlaskSessionStorage
from tokens import TokenVerifier

EXTENSION = "supabase"


@dataclass(frozen=True)
class SupabaseExtension:
    """What every request shares: the project's address and key, the HTTP pool, the JWKS cache."""

    url: str
    key: str
    http: httpx.Client
    tokens: TokenVerifier


def init_app(app: Flask) -> None:
    """Create the process-wide HTTP pool and token verifier, and close clients on teardown."""
    url = app.config["SUPABASE_URL"].rstrip("/")
    key = app.config["SUPABASE_KEY"]
    timeout = app.config["SUPABASE_TIMEOUT"]
    http = httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        transport=app.config.get("SUPABASE_TRANSPORT"),
    )
    verifier = TokenVerifier(
        http=http,
        jwks_url=f"{url}/auth/v1/.well-known/jwks.json",
        headers={"apikey": key},
        issuer=app.config["SUPABASE_JWT_ISSUER"] or f"{url}/auth/v1",
        jwt_secret=app.config["SUPABASE_JWT_SECRET"],
    )
    app.extensions[EXTENSION] = SupabaseExtension(url=url, key=key, http=http, tokens=verifier)
    app.teardown_appcontext(close)


def extension() -> SupabaseExtension:
    """The current app's shared Supabase state."""
    return current_app.extensions[EXTENSION]


def get_supabase() -> Client:
    """The request's Supabase client, created on first use.

    It stores its session in the Flask session, uses PKCE, and never starts the refresh timer
    thread: the app refreshes tokens itself, inside a request. ``Client(...)`` is used rather
    than ``create_client(...)``, which would read the stored session and might refresh it as a
    side effect of construction.
    """
    if "supabase_client" not in g:
        shared = extension()
        options = SyncClientOptions(
            storage=FlaskSessionStorage(),
            flow_type="pkce",
            auto_refresh_token=False,
            httpx_client=shared.http,
        )
        g.supabase_client = Client(shared.url, shared.key, options)
    return g.supabase_client


def close(exception: BaseException | None = None) -> None:
    """Drop the request's client; the shared HTTP pool stays open for the next request."""
    g.pop("supabase_client", None)
