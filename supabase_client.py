"""One HTTP pool per process, one Supabase client per request (the shape of flaskr's db.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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
    settings: ProjectSettings = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", ProjectSettings(self))


class ProjectSettings:
    """The project's public /auth/v1/settings, fetched at most once a minute per process."""

    TTL = 60.0

    def __init__(self, shared: SupabaseExtension) -> None:
        self._shared = shared
        self._external: dict[str, bool] | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def provider_enabled(self, provider: str) -> bool | None:
        """True/False as the project says, or None when it cannot be asked right now."""
        with self._lock:
            if time.monotonic() - self._fetched_at > self.TTL:
                self._external = self._fetch()
                self._fetched_at = time.monotonic()
            external = self._external
        return None if external is None else bool(external.get(provider, False))

    def _fetch(self) -> dict[str, bool] | None:
        shared = self._shared
        try:
            response = shared.http.get(f"{shared.url}/auth/v1/settings",
                                       headers={"apikey": shared.key})
            response.raise_for_status()
            external = response.json()["external"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None  # Supabase itself will answer at /authorize
        return external if isinstance(external, dict) else None


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
