"""Sign-outs Supabase has not heard of yet: ended here at once, at Supabase as soon as it answers.

Signing out clears the cookie, but the session lives on at Supabase until it is told (a copy of
the cookie kept elsewhere would still work). When Supabase cannot be reached at sign-out, the
tokens needed to end the session there are kept in an outbox shared by the server's workers
(the instance folder's database, owner-only, and sealed with a key derived from SECRET_KEY), and
sent at the first request that finds Supabase reachable again: one call per request at the most,
and only when the back-off lets a call through, so no request waits on more than one. A worker
claims an entry for a while before sending it, so two workers never send the same one.

The outbox holds MAX_PENDING sign-outs; when it is full a new one is not kept (what was
promised to earlier ones stands) and the person is told that copies of their session stay
valid. Entries are never logged with their tokens.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, replace

from cryptography.fernet import InvalidToken, MultiFernet
from flask import Flask, current_app, request
from supabase_auth import SyncGoTrueClient, SyncMemoryStorage
from supabase_auth.errors import AuthApiError
from supabase_auth.helpers import decode_jwt

import instance_data
from flask_storage import sealer
from supabase_client import FORWARDED_FOR, client_address, extension
from supabase_errors import REFRESH_ENDING, SUPABASE_ERRORS, Failure, classify, out_of_reach

log = logging.getLogger(__name__)

EXTENSION = "pending_sign_outs"
MAX_PENDING = 1000  # sign-outs kept at once, over all workers
LOOK_EVERY = 1.0  # seconds between two looks at an outbox found empty, per process
LOOK_AFTER_TROUBLE = 30.0  # seconds before a process looks again after its database failed
WAIT_AFTER_REFUSAL = 60.0  # seconds before retrying one Supabase refused for another reason
TOKEN_MARGIN = 30  # seconds: an access token this close to its expiry is refreshed first
QUIET_ENDPOINTS = frozenset({"static", "pages.healthz", "pages.favicon"})
SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_sign_outs (
    session TEXT PRIMARY KEY,       -- a digest of the session's id: no secret
    sealed BLOB NOT NULL,           -- the tokens that end it and the person's address
    kept_at REAL NOT NULL,          -- when the person signed out (time.time())
    not_before REAL NOT NULL DEFAULT 0  -- claimed by a worker sending it, or waiting
);
"""


class Outcome(enum.Enum):
    """What became of a sign-out at Supabase."""

    DONE = "Supabase ended the session"
    PENDING = "kept in the outbox: sent when Supabase answers"
    NOT_KEPT = "Supabase could not be reached, and the outbox is full (or failed)"


@dataclass(frozen=True)
class Pending:
    """What ending one session at Supabase takes (secret: as good as the cookie)."""

    access_token: str | None  # None once Supabase called it invalid: refresh first
    refresh_token: str
    address: str | None  # the person's, for Supabase's per-address limits


def init_app(app: Flask) -> None:
    """Open the outbox and send what it holds, one entry per request, when Supabase answers."""
    app.extensions[EXTENSION] = Outbox(app)
    app.before_request(send_one_due)


def sign_out(tokens: dict) -> Outcome:
    """End this browser's session at Supabase now, or keep it for when Supabase is back."""
    pending = Pending(tokens["access_token"], tokens["refresh_token"], client_address())
    backoff = extension().backoff
    if backoff.ready():
        try:
            for _ in range(2):  # a refresh first, when the access token cannot be used
                pending = _step(pending)
                if pending is None:
                    break
        except SUPABASE_ERRORS as error:
            _not_sent(error)
        else:
            backoff.succeeded()
            if pending is None:
                return Outcome.DONE
    return _outbox().keep(pending)


def send_one_due() -> None:
    """Before a request: send one pending sign-out, if there is one and Supabase may be asked."""
    if request.endpoint in QUIET_ENDPOINTS:
        return
    outbox = _outbox()
    if outbox.maybe_empty() or extension().backoff.remaining() > 0:
        return  # nothing to send, or calls are paused: no query, no call
    try:
        outbox.send_one()
    except sqlite3.Error as error:  # the page matters more than the outbox
        outbox.look_later(LOOK_AFTER_TROUBLE)
        log.error("the pending sign-outs could not be read or updated: %s", error)


class Outbox:
    """The pending sign-outs in the instance folder's database, shared by the workers."""

    def __init__(self, app: Flask) -> None:
        self._database = instance_data.shared_database(app, SCHEMA)
        # A worker sending an entry has it this long (one call: connecting, then answering).
        self._lease = 2 * app.config["SUPABASE_TIMEOUT"] + 5.0
        self._look_after = 0.0  # time.monotonic() before which this process does not look

    def keep(self, pending: Pending) -> Outcome:
        """Add a sign-out to send later, unless MAX_PENDING are waiting."""
        now = time.time()
        try:
            with self._database.connect() as connection:
                added = connection.execute(
                    "INSERT INTO pending_sign_outs (session, sealed, kept_at) SELECT ?, ?, ? "
                    "WHERE (SELECT COUNT(*) FROM pending_sign_outs) < ? ON CONFLICT (session) "
                    "DO UPDATE SET sealed = excluded.sealed, not_before = 0",
                    (_session_key(pending), _seal(pending), now, MAX_PENDING)).rowcount
        except sqlite3.Error as error:
            log.error("a sign-out could not be kept for later: %s", error)
            return Outcome.NOT_KEPT
        if not added:
            log.warning("a sign-out could not be kept for later: %d are waiting already "
                        "(Supabase unreachable); copies of that session stay valid", MAX_PENDING)
            return Outcome.NOT_KEPT
        log.warning("Supabase could not be reached at sign-out: the sign-out is kept and will "
                    "be sent when it answers")
        self._look_after = 0.0
        return Outcome.PENDING

    def look_later(self, seconds: float) -> None:
        """Do not look at the outbox again in this process for ``seconds``."""
        self._look_after = time.monotonic() + seconds

    def maybe_empty(self) -> bool:
        """Whether this process looked lately and found nothing to send (no query then)."""
        return time.monotonic() < self._look_after

    def send_one(self) -> None:
        """Claim the oldest sign-out no other worker is sending, and take one step with it
        (when the back-off lets this request call Supabase)."""
        claimed = self._claim()
        if claimed is None:
            return self.look_later(LOOK_EVERY)
        key, sealed, kept_at = claimed
        backoff = extension().backoff
        if not backoff.ready():  # another request has the pause's one retry
            return self._release(key, sealed, 0.0)
        pending = _unseal(sealed)
        if pending is None:
            backoff.release()
            log.warning("dropping a pending sign-out sealed under a SECRET_KEY no longer known")
            return self._forget(key)
        try:
            pending = _step(pending)
        except SUPABASE_ERRORS as error:
            wait = 0.0 if _not_sent(error) else WAIT_AFTER_REFUSAL
            return self._release(key, sealed, wait)
        backoff.succeeded()
        if pending is None:
            log.info("a pending sign-out reached Supabase, %.0f s after the person signed out",
                     time.time() - kept_at)
            return self._forget(key)
        self._release(key, _seal(pending), 0.0)  # refreshed: the sign-out itself comes next

    def _claim(self) -> tuple[str, bytes, float] | None:
        now = time.time()
        with self._database.connect() as connection:
            rows = connection.execute(
                "UPDATE pending_sign_outs SET not_before = ? WHERE session = ("
                "SELECT session FROM pending_sign_outs WHERE not_before <= ? "
                "ORDER BY kept_at LIMIT 1) RETURNING session, sealed, kept_at",
                (now + self._lease, now)).fetchall()  # all: the statement must end
        return rows[0] if rows else None

    def _release(self, key: str, sealed: bytes, wait: float) -> None:
        with self._database.connect() as connection:
            connection.execute(
                "UPDATE pending_sign_outs SET sealed = ?, not_before = ? WHERE session = ?",
                (sealed, time.time() + wait if wait else 0.0, key))

    def _forget(self, key: str) -> None:
        with self._database.connect() as connection:
            connection.execute("DELETE FROM pending_sign_outs WHERE session = ?", (key,))
        self._look_after = 0.0  # there may be more


def _step(pending: Pending) -> Pending | None:
    """One call towards ending the session: None once it is over at Supabase, else what to
    send next (tokens fresh from a refresh). Raises when Supabase gave no usable answer."""
    client = _auth_client(pending.address)
    if pending.access_token is not None and _usable(pending.access_token):
        try:
            client.admin.sign_out(pending.access_token, "local")
        except AuthApiError as error:
            if error.code == "bad_jwt":  # e.g. its signing key was revoked: refresh first
                return replace(pending, access_token=None)
            if classify(error) is not Failure.ENDED:
                raise
        return None
    try:
        session = client.refresh_session(pending.refresh_token).session
    except AuthApiError as error:
        if classify(error, ending=REFRESH_ENDING) is Failure.ENDED:
            return None  # nothing left to end
        raise
    return replace(pending, access_token=session.access_token,
                   refresh_token=session.refresh_token)


def _not_sent(error: Exception) -> bool:
    """Report a call that did not end the session; whether Supabase was out of reach. Only
    that pauses everyone's calls: a refusal concerns this one session."""
    unreachable = out_of_reach(error)
    if unreachable:
        extension().backoff.failed()
    else:
        extension().backoff.release()
    log.warning("a sign-out did not reach Supabase (%s: %s)", type(error).__name__,
                getattr(error, "code", None) or "no answer")
    return unreachable


def _auth_client(address: str | None) -> SyncGoTrueClient:
    """A Supabase Auth client over the shared pool that keeps nothing in the person's cookie."""
    shared = extension()
    headers = {"apikey": shared.key}
    if address is not None:
        headers[FORWARDED_FOR] = address
    return SyncGoTrueClient(url=f"{shared.url}/auth/v1", headers=headers,
                            http_client=shared.http, auto_refresh_token=False,
                            persist_session=False, storage=SyncMemoryStorage())


def _usable(access_token: str) -> bool:
    """Whether the token will still be valid when Supabase reads it (a quarter of a short
    lifetime, TOKEN_MARGIN at the most, to spare)."""
    claims = decode_jwt(access_token)["payload"]
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, int):
        return False
    lifetime = expires - issued if isinstance(issued, int) else 0
    return expires - min(TOKEN_MARGIN, lifetime / 4) > time.time()


def _session_key(pending: Pending) -> str:
    claims = decode_jwt(pending.access_token)["payload"] if pending.access_token else {}
    name = claims.get("session_id") or pending.refresh_token
    return hashlib.sha256(f"pending_sign_outs\0{name}".encode()).hexdigest()


def _outbox() -> Outbox:
    return current_app.extensions[EXTENSION]


def _seal(pending: Pending) -> bytes:
    data = {"access_token": pending.access_token, "refresh_token": pending.refresh_token,
            "address": pending.address}
    return _fernet().encrypt(json.dumps(data).encode())


def _unseal(sealed: bytes) -> Pending | None:
    try:
        data = json.loads(_fernet().decrypt(sealed))
    except InvalidToken:
        return None
    return Pending(data["access_token"], data["refresh_token"], data["address"])


def _fernet() -> MultiFernet:
    """A copy of the database alone reveals no token, and a key rotation (SECRET_KEY_FALLBACKS)
    does not lose what is waiting."""
    return sealer("pending_sign_outs")
