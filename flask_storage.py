"""supabase_auth storage backed by the Flask session, which is kept in an encrypted cookie."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import zlib
from collections.abc import Sequence

from cachetools import LRUCache
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, session
from flask.sessions import SecureCookieSessionInterface, session_json_serializer
from itsdangerous import BadSignature
from supabase_auth import SyncSupportedStorage
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

# What a signed-in browser carries. supabase_auth writes the whole session, user and identities
# included (3-6 KB for a GitHub user with a few identities), but a cookie holds 4,096 bytes. The
# access token already carries the user's id, email and metadata, and the page that lists
# identities asks the server for them, so only the tokens, their expiry and the one user field
# the token lacks (created_at, which supabase_auth's User model requires) are kept.
TOKEN_FIELDS = ("access_token", "refresh_token", "expires_at")

# provider_token is the provider's own OAuth token (GitHub's gho_…). Supabase hands it over once,
# at the code exchange, and never refreshes it, so it must live with the session; there is no
# server-side store to put it in. The whole cookie is encrypted, so it is as unreadable as the
# Supabase tokens next to it.
PROVIDER_TOKEN = "provider_token"  # noqa: S105 - a field name, not a secret

# How many verified MFA factors the user had when Supabase last answered (token responses and
# GET /user carry the factors); left out when none. It tells whether the next level is aal2
# without a call per request. Never the factors themselves, and never a secret.
MFA_FACTORS = "mfa_factors"

# The factor types the app can challenge (two_factor.py); WebAuthn joins when the app can ask
# for it. MFA_FACTORS counts verified factors of every type, as Supabase does for the next
# level: a factor enrolled through another client that the app cannot challenge keeps its
# owner at the challenge, told why, instead of letting them through at aal1.
CHALLENGEABLE_FACTORS = frozenset({"totp"})

# A short digest of the user's app_metadata as Supabase last handed it over with tokens (the
# token response's user, not the token's claims). The periodic GET /user check compares with
# it to tell whether the team changed app_metadata since: a custom access token hook may put
# anything in the token's own app_metadata, so the token cannot be the reference.
APP_METADATA_DIGEST = "app_metadata_digest"

TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")  # a sealed cookie: unpadded base64url


class FlaskSessionStorage(SyncSupportedStorage):
    """Keeps supabase_auth's items in ``flask.session``, trimming the session to fit a cookie."""

    def get_item(self, key: str) -> str | None:
        """Return the stored value, rebuilding the session JSON supabase_auth expects."""
        value = session.get(key)
        if key == STORAGE_KEY and value is not None:
            return _expand(value)
        return value

    def set_item(self, key: str, value: str) -> None:
        """Store a value; a session is cut down to its tokens first."""
        session[key] = _compact(value, stored_tokens()) if key == STORAGE_KEY else value

    def remove_item(self, key: str) -> None:
        """Forget a value; forgetting one that is not there is fine."""
        session.pop(key, None)


class CheckedCookieSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session, encrypted, reading a cookie of an unexpected shape as empty.

    The cookie carries the access and refresh tokens, so it is sealed (SealedSession: AES-GCM,
    keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS), not merely signed: whoever holds
    it cannot read the tokens and call Supabase around the app. A cookie signed by an earlier
    release (Flask's itsdangerous format) is read once and sealed in the response.

    A signed-in browser sends the same cookie on every page until its tokens change, so each
    opened cookie is remembered (per process, bounded, by its exact value and keys): a repeat
    visit costs a lookup and a copy instead of AES-GCM, zlib and JSON.
    """

    MAX_REMEMBERED = 64  # cookies of the browsers active this moment; ~4.5 KB each

    def __init__(self) -> None:
        # (sealer, cookie) -> (sealed at, data); shared by a worker's threads, hence the lock
        self._remembered: LRUCache = LRUCache(self.MAX_REMEMBERED)
        self._lock = threading.Lock()
        self._sealers: dict[tuple, SealedSession] = {}
        self._signers: dict[tuple, object] = {}

    def get_signing_serializer(self, app) -> SealedSession | None:
        """What Flask's save_session writes the cookie with: here it encrypts, one per key set."""
        keys = secret_keys(app)
        if not keys:
            return None
        sealer = self._sealers.get(keys)
        if sealer is None:
            sealer = self._sealers[keys] = SealedSession(keys)
        return sealer

    def legacy_serializer(self, app):
        """Flask's signing serializer, for cookies written before the session was encrypted."""
        keys = secret_keys(app)
        signer = self._signers.get(keys)
        if signer is None:
            signer = self._signers[keys] = super().get_signing_serializer(app)
        return signer

    def open_session(self, app, request):
        """Open the session; a payload Flask or Flask-WTF would choke on counts as unreadable."""
        sealer = self.get_signing_serializer(app)
        value = request.cookies.get(self.get_cookie_name(app))
        if sealer is None or not value:
            return super().open_session(app, request)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        with self._lock:
            remembered = self._remembered.get((sealer, value))
        if remembered is None or time.time() - remembered[0] > max_age:
            try:
                data, sealed_at = sealer.loads(value, max_age)
            except UnreadableCookie:
                return self._upgraded(app, value, max_age)
            if not _looks_like_session(data):
                return self.session_class({})
            remembered = (sealed_at, data)
            with self._lock:
                self._remembered[(sealer, value)] = remembered
        opened = self.session_class(_copied(remembered[1]))
        opened.in_cookie = remembered[1]  # never changed: views get copies
        return opened

    def should_set_cookie(self, app, session) -> bool:
        """Flask's rule, but a session written back unchanged keeps the cookie it came in.

        A sealed cookie never repeats (a random nonce each time), so each needless rewrite
        would cost the next request a full open instead of a remembered one.
        """
        unchanged = dict(session) == getattr(session, "in_cookie", None)
        return super().should_set_cookie(app, session) and not unchanged

    def _upgraded(self, app, value: str, max_age: int):
        """A signed cookie from before encryption (or junk): read once, then rewritten sealed."""
        try:
            data = self.legacy_serializer(app).loads(value, max_age=max_age)
        except BadSignature:
            data = None
        if not _looks_like_session(data):
            return self.session_class({})
        tokens = data.get(STORAGE_KEY)
        if isinstance(tokens, dict):
            _unseal_legacy_provider_token(tokens, secret_keys(app))
        upgraded = self.session_class(data)
        upgraded.modified = True  # the response carries the sealed cookie
        return upgraded


class UnreadableCookie(Exception):
    """A cookie value that no key opens, or whose seal is older than the session lifetime."""


class SealedSession:
    """The session cookie's format: the session sealed with AES-256-GCM, in unpadded base64url.

    A cookie is ``version | nonce (12 random bytes) | ciphertext | tag``, the version byte also
    being the associated data. Inside: when it was sealed (it bounds the cookie's age), then the
    supabase_auth tokens, compressed on their own, then everything else, not compressed: the rest
    holds what another site can choose (a sign-in's ``next`` path), and compressing that next to
    the tokens would let the cookie's length betray them (CRIME, BREACH). Random nonces are safe
    for far more cookies than one key seals (NIST's bound is 2**32 per key).
    """

    VERSION = b"\x01"

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._ciphers = [AESGCM(cookie_key(key)) for key in keys]  # the first one seals

    def dumps(self, data: dict) -> str:
        """Seal a session (with the first key) into a cookie value."""
        rest, packed = data, b""
        if isinstance(data, dict) and STORAGE_KEY in data:
            rest = {key: value for key, value in data.items() if key != STORAGE_KEY}
            packed = zlib.compress(session_json_serializer.dumps(data[STORAGE_KEY]).encode())
        plain = b"".join((int(time.time()).to_bytes(8, "big"), len(packed).to_bytes(4, "big"),
                          packed, session_json_serializer.dumps(rest).encode()))
        nonce = os.urandom(12)
        sealed = self._ciphers[0].encrypt(nonce, plain, self.VERSION)
        return base64.urlsafe_b64encode(self.VERSION + nonce + sealed).decode().rstrip("=")

    def loads(self, value: str, max_age: int | None = None) -> tuple[dict, int]:
        """The session in a cookie value and when it was sealed; UnreadableCookie if none."""
        plain = self._opened(value)
        sealed_at = int.from_bytes(plain[:8], "big")
        if max_age is not None and time.time() - sealed_at > max_age:
            raise UnreadableCookie("sealed longer ago than the session lifetime")
        length = int.from_bytes(plain[8:12], "big")
        try:
            data = session_json_serializer.loads(plain[12 + length:])
            if length:
                data[STORAGE_KEY] = session_json_serializer.loads(
                    zlib.decompress(plain[12:12 + length]))
        except (ValueError, TypeError, zlib.error) as error:  # sealed by us, never by another shape
            raise UnreadableCookie("not a session") from error
        return data, sealed_at

    def _opened(self, value: str) -> bytes:
        # Strictly base64url: a lenient decoder would ignore whatever follows padding.
        if not TOKEN_CHARACTERS.fullmatch(value) or len(value) % 4 == 1:
            raise UnreadableCookie("not base64url")
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if raw[:1] != self.VERSION or len(raw) < 1 + 12 + 16:  # version, nonce, tag
            raise UnreadableCookie("not a sealed session")
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(raw[1:13], raw[13:], self.VERSION)
            except InvalidTag:
                continue
        raise UnreadableCookie("no key opens it")


def secret_keys(app) -> tuple:
    """SECRET_KEY first (it seals), then SECRET_KEY_FALLBACKS (still read); () if unset."""
    if not app.secret_key:
        return ()
    return (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))


def cookie_key(secret: str | bytes) -> bytes:
    """The AES-256 key for session cookies derived from one secret key (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"flask_storage session cookie v1").derive(_as_bytes(secret))


def sealer(purpose: str) -> MultiFernet:
    """Authenticated encryption for what the app keeps outside the cookie on a person's behalf
    (``purpose`` names it): a key per secret key, derived by HKDF, SECRET_KEY sealing and its
    fallbacks still opening."""
    return MultiFernet([Fernet(base64.urlsafe_b64encode(HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            _as_bytes(key)))) for key in secret_keys(current_app)])


def stored_tokens() -> dict | None:
    """The compact session of the current request's cookie, or None when signed out."""
    tokens = session.get(STORAGE_KEY)
    return tokens if _looks_like_tokens(tokens) else None


def provider_token() -> str | None:
    """The provider's OAuth token kept with this session, if any."""
    tokens = stored_tokens()
    token = tokens.get(PROVIDER_TOKEN) if tokens else None
    return token if isinstance(token, str) else None


def forget_provider_token() -> None:
    """Drop the provider token (revoked, or it belongs to a provider the app does not call)."""
    tokens = stored_tokens()
    if tokens and tokens.pop(PROVIDER_TOKEN, None) is not None:
        session.modified = True


def _compact(raw_session: str, previous: dict | None) -> dict:
    data = json.loads(raw_session)
    kept = {field: data[field] for field in TOKEN_FIELDS}
    kept["user_created_at"] = data["user"]["created_at"]
    if data.get(PROVIDER_TOKEN):
        kept[PROVIDER_TOKEN] = data[PROVIDER_TOKEN]
    elif previous and PROVIDER_TOKEN in previous and _same_user(previous, data):
        kept[PROVIDER_TOKEN] = previous[PROVIDER_TOKEN]  # a refresh: Supabase sends none
    factors = verified_factors(data["user"].get("factors"))
    if factors:
        kept[MFA_FACTORS] = factors
    kept[APP_METADATA_DIGEST] = app_metadata_digest(data["user"].get("app_metadata"))
    return kept


def app_metadata_digest(app_metadata) -> str:
    """16 hex digits that change whenever a user's app_metadata does (canonical JSON, SHA-256)."""
    canonical = json.dumps(app_metadata or {}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def verified_factors(factors, types: frozenset[str] | None = None) -> int:
    """How many of a user's MFA factors (JSON objects or supabase_auth Factors) are verified:
    of every type, or of ``types`` only (e.g. CHALLENGEABLE_FACTORS)."""
    return sum(_field(factor, "status") == "verified"
               and (types is None or _field(factor, "factor_type") in types)
               for factor in factors or ())


def _field(factor, name: str):
    return factor.get(name) if isinstance(factor, dict) else getattr(factor, name, None)


def _same_user(previous: dict, data: dict) -> bool:
    return decode_jwt(previous["access_token"])["payload"].get("sub") == data["user"]["id"]


def _expand(tokens: dict) -> str | None:
    if not _looks_like_tokens(tokens):
        return None
    claims = decode_jwt(tokens["access_token"])["payload"]
    user = {
        "id": claims.get("sub"),
        "aud": claims.get("aud"),
        "role": claims.get("role"),
        "email": claims.get("email"),
        "phone": claims.get("phone"),
        "app_metadata": claims.get("app_metadata") or {},
        "user_metadata": claims.get("user_metadata") or {},
        "is_anonymous": bool(claims.get("is_anonymous")),
        "created_at": tokens.get("user_created_at"),
    }
    fields = {field: tokens[field] for field in TOKEN_FIELDS}
    expires_in = max(int(tokens["expires_at"]) - int(claims.get("iat", 0)), 0)
    return json.dumps({**fields, "expires_in": expires_in, "token_type": "bearer", "user": user})


def _unseal_legacy_provider_token(tokens: dict, keys: Sequence[str | bytes]) -> None:
    # Before the whole cookie was encrypted, the provider token was encrypted on its own, with
    # a key hashed from SECRET_KEY; one that none of the keys opens is dropped.
    sealed = tokens.get(PROVIDER_TOKEN)
    if not isinstance(sealed, str):
        return
    fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(
        b"flask_storage.provider_token\0" + _as_bytes(key)).digest())) for key in keys])
    try:
        tokens[PROVIDER_TOKEN] = fernet.decrypt(sealed.encode()).decode()
    except InvalidToken:
        del tokens[PROVIDER_TOKEN]


def _as_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else str(secret).encode()


def _looks_like_tokens(value: object) -> bool:
    # The cookie is sealed, so only this app wrote it, but an older release may have written
    # another shape: anything unexpected counts as signed out rather than as an error.
    return (
        isinstance(value, dict)
        and isinstance(value.get("access_token"), str)
        and isinstance(value.get("refresh_token"), str)
        and isinstance(value.get("expires_at"), int)
    )


def _copied(value):
    """A copy of session data (JSON-shaped: dicts, lists, tuples, scalars), faster than deepcopy.

    Views change nested values in place (flash() appends to a list), and the remembered copy
    must not see that.
    """
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(item) for item in value)
    return value


def _looks_like_session(data: object) -> bool:
    # Sealed or signed by this app's key, yet an older release (or a leaked key) may have written
    # another shape; Flask's flashes and Flask-WTF's token would raise on one, so it reads as empty.
    if not isinstance(data, dict) or not isinstance(data.get("csrf_token", ""), str):
        return False
    flashes = data.get("_flashes", [])
    return isinstance(flashes, list) and all(
        isinstance(entry, list | tuple) and len(entry) == 2
        and all(isinstance(part, str) for part in entry) for entry in flashes)
