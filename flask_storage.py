"""supabase_auth storage backed by the Flask session, which Flask keeps in a signed cookie."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

from cachetools import LRUCache
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, session
from flask.sessions import SecureCookieSessionInterface
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
# server-side store to put it in. Unlike the refresh token, which rotates and dies at sign-out,
# a GitHub token never expires and works against GitHub directly, so the cookie carries it
# encrypted (Fernet, key derived from SECRET_KEY): reading the cookie does not reveal it.
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
    """Flask's signed-cookie session, reading a cookie of an unexpected shape as empty.

    A signed-in browser sends the same cookie on every page until its tokens change, so each
    verified and decoded cookie is remembered (per process, bounded, by its exact value): a
    repeat visit costs a lookup and a copy instead of an HMAC check, base64, zlib and JSON.
    """

    MAX_REMEMBERED = 64  # cookies of the browsers active this moment; ~4.5 KB each

    def __init__(self) -> None:
        # cookie -> (signed at, data); shared by a worker's threads, hence the lock
        self._remembered: LRUCache = LRUCache(self.MAX_REMEMBERED)
        self._lock = threading.Lock()
        self._serializers: dict[tuple, object] = {}

    def get_signing_serializer(self, app):
        """Flask builds a serializer per call; one per key and salt is enough."""
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            serializer = self._serializers[key] = super().get_signing_serializer(app)
        return serializer

    def open_session(self, app, request):
        """Open the session; a payload Flask or Flask-WTF would choke on counts as unreadable."""
        serializer = self.get_signing_serializer(app)
        value = request.cookies.get(self.get_cookie_name(app))
        if serializer is None or not value:
            return super().open_session(app, request)
        max_age = app.permanent_session_lifetime.total_seconds()
        with self._lock:
            remembered = self._remembered.get(value)
        if remembered is not None and time.time() - remembered[0] <= max_age:
            return self.session_class(_copied(remembered[1]))
        try:
            data, signed_at = serializer.loads(value, max_age=int(max_age), return_timestamp=True)
        except BadSignature:
            data = None
        if not _looks_like_session(data):
            return self.session_class({})
        with self._lock:
            self._remembered[value] = (signed_at.timestamp(), _copied(data))
        return self.session_class(data)


def stored_tokens() -> dict | None:
    """The compact session of the current request's cookie, or None when signed out."""
    tokens = session.get(STORAGE_KEY)
    return tokens if _looks_like_tokens(tokens) else None


def provider_token() -> str | None:
    """The provider's OAuth token kept with this session, if any (decrypted)."""
    tokens = stored_tokens()
    sealed = tokens.get(PROVIDER_TOKEN) if tokens else None
    if not isinstance(sealed, str):
        return None
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:  # sealed under an older SECRET_KEY: as good as absent
        return None


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
        kept[PROVIDER_TOKEN] = _fernet().encrypt(data[PROVIDER_TOKEN].encode()).decode()
    elif previous and PROVIDER_TOKEN in previous and _same_user(previous, data):
        kept[PROVIDER_TOKEN] = previous[PROVIDER_TOKEN]  # a refresh: Supabase sends none
    factors = verified_factors(data["user"].get("factors"))
    if factors:
        kept[MFA_FACTORS] = factors
    return kept


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


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"flask_storage.provider_token\0" + _secret_bytes()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _secret_bytes() -> bytes:
    secret = current_app.secret_key
    return secret if isinstance(secret, bytes) else str(secret).encode()


def _looks_like_tokens(value: object) -> bool:
    # The cookie is signed, so only this app wrote it, but an older release may have written
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
    # Signed by this app's key, yet an older release (or a leaked key) may have written another
    # shape; Flask's flashes and Flask-WTF's token would raise on one, so it reads as empty.
    if not isinstance(data, dict) or not isinstance(data.get("csrf_token", ""), str):
        return False
    flashes = data.get("_flashes", [])
    return isinstance(flashes, list) and all(
        isinstance(entry, list | tuple) and len(entry) == 2
        and all(isinstance(part, str) for part in entry) for entry in flashes)
