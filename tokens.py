"""Local verification of Supabase access tokens: one JWKS cache and one claims cache per process."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import httpx
import jwt

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})


class InvalidToken(Exception):
    """The token was not issued by this project's Supabase Auth, or was tampered with."""


class KeysUnavailable(Exception):
    """The project's signing keys could not be fetched (network, timeout or a bad answer)."""


class TokenVerifier:
    """Verifies access tokens and remembers verified claims until the token expires."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        jwks_url: str,
        headers: dict[str, str],
        issuer: str,
        audience: str = "authenticated",
        jwt_secret: str | None = None,
        max_entries: int = 1024,
        jwks_ttl: float = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._jwks_url = jwks_url
        self._headers = headers
        self._issuer = issuer
        self._audience = audience
        self._jwt_secret = jwt_secret
        self._max_entries = max_entries
        self._jwks_ttl = jwks_ttl
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at = float("-inf")
        self._keys_lock = threading.Lock()
        # Keyed by the token's SHA-256, not the token: 32 bytes instead of ~1.2 KB per entry.
        # Never by its signature alone: a copied signature would then vouch for any payload.
        self._claims: dict[bytes, dict] = {}

    def verify(self, token: str) -> dict | None:
        """Return the token's claims, even if expired; None when only the server can tell.

        Raises InvalidToken for a forged, malformed or foreign token, and KeysUnavailable when
        the JWKS is needed but cannot be fetched. Expiry is the caller's decision: an expired
        but genuine token is a reason to refresh, not to sign the person out.
        """
        claims = self._claims.get(_digest(token))
        if claims is not None:
            return claims
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm == "HS256" and self._jwt_secret:
            key: object = self._jwt_secret
        elif algorithm == "HS256":
            return None
        elif algorithm in ASYMMETRIC_ALGORITHMS and isinstance(header.get("kid"), str):
            key = self._key(header["kid"], algorithm)
        else:
            raise InvalidToken(f"unsupported signing algorithm {algorithm!r}")
        claims = self._decode(token, key, algorithm)
        self.remember(token, claims)
        return claims

    def remember(self, token: str, claims: dict) -> None:
        """Cache claims for a token that was verified here or confirmed by the server."""
        if len(self._claims) >= self._max_entries:
            self._evict()
        self._claims[_digest(token)] = claims

    def forget(self, token: str) -> None:
        """Drop a token's claims once it was refreshed or signed out: it is no use to anyone."""
        self._claims.pop(_digest(token), None)

    def _decode(self, token: str, key: object, algorithm: str) -> dict:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"verify_exp": False, "require": ["exp", "sub", "iat"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error

    def _key(self, kid: str, algorithm: str) -> jwt.PyJWK:
        with self._keys_lock:
            stale = self._clock() - self._keys_fetched_at > self._jwks_ttl
            if stale or kid not in self._keys:
                self._keys = self._fetch_keys()
                self._keys_fetched_at = self._clock()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken(f"no signing key {kid!r} in the project's JWKS")
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"key {kid!r} is not an {algorithm} key")
        return key

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        try:
            response = self._http.get(self._jwks_url, headers=self._headers)
            response.raise_for_status()
            keys = response.json()["keys"]
            return {jwk["kid"]: jwt.PyJWK(jwk) for jwk in keys if jwk.get("kid")}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, jwt.PyJWTError) as error:
            raise KeysUnavailable(f"could not load {self._jwks_url}: {error}") from error

    def _evict(self) -> None:
        now = self._clock()
        live = {key: c for key, c in self._claims.items() if c.get("exp", 0) > now}
        if len(live) >= self._max_entries:
            # Dicts keep insertion order: drop the older half rather than one entry per call.
            live = dict(list(live.items())[len(live) // 2 :])
        self._claims = live


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _header(token: str) -> dict:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
