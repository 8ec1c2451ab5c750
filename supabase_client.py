"""One HTTP pool per process, one Supabase client per request (the shape of flaskr's db.py)."""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from flask import Flask, current_app, g, has_request_context, request
from supabase import Client
from supabase.lib.client_options import SyncClientOptions

from flask_storage import FlaskSessionStorage, stored_tokens
from refetched import Refetched
from tokens import TokenVerifier

EXTENSION = "supabase"
SAVED_KEYS = "jwks.json"  # the last good JWKS, in the instance folder (instance_data.py)
START_WAIT = 1.0  # seconds a starting worker waits for the JWKS, at the most
SPARE_REFRESHES = 4  # see SupabaseExtension.spare_refreshes
# Supabase applies its per-address rate limits to this address instead of the app server's.
FORWARDED_FOR = "Sb-Forwarded-For"


@dataclass(frozen=True)
class SupabaseExtension:
    """What every request shares: the project's address and key, the HTTP pool, the JWKS cache."""

    url: str
    key: str
    http: httpx.Client
    tokens: TokenVerifier
    backoff: Backoff
    settings: ProjectSettings = field(init=False)
    # Refreshes of tokens that are still valid, in flight at once at the most: a crowd due at
    # once (Supabase back after an outage) is spread over the following pages.
    spare_refreshes: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(SPARE_REFRESHES))

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", ProjectSettings(self))


class Backoff:
    """After Supabase could not be reached, calls that can wait pause for a while instead of
    every request trying again: 1 s, then 2, 4, … up to ``longest`` while failures go on.

    Once a pause is over, ``ready()`` hands out exactly one retry (per process) and says no to
    everyone else until that retry is reported: ``failed()`` (a longer pause), ``succeeded()``
    (calls go on as usual) or ``release()`` (Supabase answered, but about one session only).
    A retry never reported (its request died) is handed out again after ``hold`` seconds.
    """

    def __init__(self, longest: float, hold: float = 30.0, clock=time.monotonic) -> None:
        self._longest = longest
        self._hold = hold
        self._clock = clock
        self._failures = 0
        self._until = float("-inf")
        self._retry_until = float("-inf")  # the retry handed out must report by then
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Whether this caller may call Supabase now (after a pause: the one retry)."""
        with self._lock:
            if self._failures == 0:
                return True
            now = self._clock()
            if now < self._until or now < self._retry_until:
                return False
            self._retry_until = now + self._hold
            return True

    def remaining(self) -> float:
        """Seconds until the pause under way ends (0 when there is none)."""
        with self._lock:
            return max(0.0, self._until - self._clock())

    def failed(self) -> None:
        """Supabase could not be reached: pause longer before the next call."""
        with self._lock:
            now = self._clock()
            if now < self._until:
                return  # calls already under way when the pause began: one failure
            self._failures += 1
            self._until = now + min(self._longest, 2.0 ** min(self._failures - 1, 16))
            self._retry_until = float("-inf")

    def succeeded(self) -> None:
        """Supabase answered: calls go on as usual."""
        with self._lock:
            self._failures = 0
            self._until = self._retry_until = float("-inf")

    def release(self) -> None:
        """The retry got an answer that says nothing about Supabase as a whole (a refused or
        rate-limited session): the pauses stay as they are, and the next caller may retry."""
        with self._lock:
            self._retry_until = float("-inf")


class ProjectSettings:
    """The project's public /auth/v1/settings, fetched at most once a minute per process."""

    TTL = 60.0

    def __init__(self, shared: SupabaseExtension) -> None:
        self._shared = shared
        self._external = Refetched(self._fetch, max_age=self.TTL, min_interval=self.TTL / 2,
                                   wait=0, may_fetch=shared.backoff.ready)

    def provider_enabled(self, provider: str) -> bool | None:
        """True/False as the project says, or None when it could not be asked yet."""
        external = self._external.get()
        return None if external is None else bool(external.get(provider, False))

    def _fetch(self) -> dict[str, bool] | None:
        shared = self._shared
        try:
            response = shared.http.get(f"{shared.url}/auth/v1/settings",
                                       headers={"apikey": shared.key})
            response.raise_for_status()
            external = response.json()["external"]
        except httpx.TransportError:
            shared.backoff.failed()
            return None  # Supabase itself will answer at /authorize
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            shared.backoff.release()
            return None
        shared.backoff.succeeded()
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
    # A retry that never reports back is handed out again once its call must have ended.
    backoff = Backoff(longest=min(15, max(app.config["AUTH_REVALIDATE_SECONDS"], 1)),
                      hold=min(timeout, 3.0) + 2 * timeout + 1)
    verifier = TokenVerifier(
        http=http,
        jwks_url=f"{url}/auth/v1/.well-known/jwks.json",
        headers={"apikey": key},
        issuer=app.config["SUPABASE_JWT_ISSUER"] or f"{url}/auth/v1",
        jwt_secret=app.config["SUPABASE_JWT_SECRET"],
        saved_keys=Path(app.instance_path) / SAVED_KEYS,
        gate=backoff,
    )
    # Every worker has the keys before a request needs them, or a saved copy when Supabase
    # cannot be reached right now; either way it starts.
    verifier.start(wait=min(timeout, START_WAIT))
    app.extensions[EXTENSION] = SupabaseExtension(url=url, key=key, http=http, tokens=verifier,
                                                  backoff=backoff)
    app.teardown_appcontext(close)


def extension() -> SupabaseExtension:
    """The current app's shared Supabase state."""
    return current_app.extensions[EXTENSION]


def get_supabase() -> Client:
    """The request's Supabase client, created on first use.

    It stores its session in the Flask session, uses PKCE, and never starts the refresh timer
    thread: the app refreshes tokens itself, inside a request. ``Client(...)`` is used rather
    than ``create_client(...)``, which would read the stored session and might refresh it as a
    side effect of construction. Its calls are made on the person's behalf, so they carry the
    person's address for Supabase's per-address limits.
    """
    if "supabase_client" not in g:
        shared = extension()
        options = SyncClientOptions(
            storage=FlaskSessionStorage(),
            flow_type="pkce",
            auto_refresh_token=False,
            httpx_client=shared.http,
        )
        address = client_address()
        if address is not None:
            options.headers[FORWARDED_FOR] = address
        client = Client(shared.url, shared.key, options)
        tokens = stored_tokens() if has_request_context() else None
        act_as(client, tokens["access_token"] if tokens else None)
        # After a refresh (or sign-out) in this request, data calls use the new token (or none).
        client.auth.on_auth_state_change(
            lambda _event, session: act_as(client, session.access_token if session else None))
        g.supabase_client = client
    return g.supabase_client


def act_as(client: Client, access_token: str | None) -> None:
    """Data calls (PostgREST, Storage, Functions) as the person, for row-level security.

    supabase-py sends ``Authorization: Bearer <project key>`` until a sign-in or refresh happens
    in the same request, so RLS would see an anonymous caller. The project key belongs in
    ``apikey`` only; without a person there is no bearer at all (never ``Bearer sb_…``).
    """
    # The data clients are built lazily from these headers (and dropped by supabase-py's own
    # listener, which runs before ours, whenever the session changes).
    headers = client.options.headers
    if access_token is None:
        headers.pop("Authorization", None)
    else:
        headers["Authorization"] = f"Bearer {access_token}"


def client_address() -> str | None:
    """The person's IP address as the trusted proxies report it; None when it is not one."""
    if not has_request_context():
        return None
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # As servers parse it: an IPv4 client seen through an IPv6 socket, and no zone id.
        address = address.ipv4_mapped or ipaddress.IPv6Address(int(address))
    return str(address)


def close(exception: BaseException | None = None) -> None:
    """Drop the request's client; the shared HTTP pool stays open for the next request."""
    g.pop("supabase_client", None)
