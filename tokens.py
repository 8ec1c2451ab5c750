"""Local verification of Supabase access tokens: one JWKS cache and one claims cache per process,
and the last good JWKS kept in the instance folder for workers started while Supabase is away."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import httpx
import jwt
from cachetools import TLRUCache

from instance_data import write_atomically
from refetched import Refetched

log = logging.getLogger(__name__)
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
JWKS_MIN_INTERVAL = 30.0  # seconds between two fetches of the JWKS, at the most often


class Gate(Protocol):
    """When Supabase may be called, and what came of a call (supabase_client.Backoff)."""

    def ready(self) -> bool: ...
    def failed(self) -> None: ...
    def succeeded(self) -> None: ...
    def release(self) -> None: ...


class InvalidToken(Exception):
    """The token was not issued by this project's Supabase Auth, or was tampered with."""


class UnknownSigningKey(InvalidToken):
    """The token names a signing key the project's JWKS does not list (even after a refetch).

    Either it is forged, or the project rotated its keys and revoked this one: a refresh, not a
    sign-out, tells the two apart.
    """


class KeysUnavailable(Exception):
    """The project's signing keys could not be fetched (network, timeout or a bad answer), and
    no copy of them was kept."""


class TokenVerifier:
    """Verifies access tokens and remembers verified claims until the token expires.

    Safe under threaded workers: the claims cache is locked, the JWKS is swapped whole, and the
    claims handed out are read-only (a view cannot change what the next request sees).

    The last good JWKS is also kept in ``saved_keys`` (a file shared by the server's workers),
    so that a worker started while Supabase cannot be reached still verifies tokens: the copy
    is read only when fetching fails and nothing was fetched yet, and replaced by the first
    fetch that succeeds. ``gate`` (the process's back-off) says when a fetch may be tried and
    hears whether Supabase could be reached.
    """

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
        keys_clock: Callable[[], float] = time.monotonic,
        saved_keys: Path | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._http = http
        self._jwks_url = jwks_url
        self._headers = headers
        self._issuer = issuer
        self._audience = audience
        self._jwt_secret = jwt_secret
        self._saved_keys = saved_keys
        self._gate = gate
        self._jwks = Refetched(self._fetch_keys, max_age=jwks_ttl, min_interval=JWKS_MIN_INTERVAL,
                               wait=_wait_for(http), clock=keys_clock,
                               may_fetch=gate.ready if gate else lambda: True,
                               fallback=self._read_saved_keys)
        # Keyed by the token's SHA-256, not the token: 32 bytes instead of ~1.2 KB per entry.
        # Never by its signature alone: a copied signature would then vouch for any payload.
        # An entry lives until its token expires (or the least recently used goes first).
        self._claims: TLRUCache = TLRUCache(max_entries, _until_expiry, timer=clock)
        self._claims_lock = threading.Lock()

    def start(self, wait: float) -> None:
        """Fetch the keys before any request needs them, waiting at most ``wait`` seconds; when
        that fails the saved copy (if any) stands in. Never raises: a worker starts anyway."""
        self._jwks.put(self._fetch_keys(timeout=wait))

    def verify(self, token: str) -> Mapping | None:
        """Return the token's claims, even if expired; None when only the server can tell.

        Raises InvalidToken for a forged, malformed or foreign token (UnknownSigningKey when its
        key is not in the JWKS), and KeysUnavailable when the JWKS is needed but could never be
        fetched and no copy was kept. Expiry is the caller's decision: an expired but genuine
        token is a reason to refresh, not to sign the person out.
        """
        digest = _digest(token)
        with self._claims_lock:
            claims = self._claims.get(digest)
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
        return self.remember(token, self._decode(token, key, algorithm))

    def remember(self, token: str, claims: dict) -> Mapping:
        """Cache claims for a token verified here or handed over by the server; the frozen copy."""
        frozen = freeze(claims)
        with self._claims_lock:
            self._claims[_digest(token)] = frozen
        return frozen

    def remember_issued(self, token: str, claims: dict) -> Mapping:
        """Cache the claims of a token Supabase itself just handed over (no check needed), and
        make sure its signing key is in hand for when a token must be verified here."""
        frozen = self.remember(token, claims)
        try:
            header = _header(token)
        except InvalidToken:
            return frozen
        kid = header.get("kid")
        if header.get("alg") in ASYMMETRIC_ALGORITHMS and isinstance(kid, str):
            keys = self._jwks.get()
            if keys is None or kid not in keys:
                self._jwks.refetch()  # a new key; at most once per JWKS_MIN_INTERVAL
        return frozen

    def forget(self, token: str) -> None:
        """Drop a token's claims once it was refreshed or signed out: it is no use to anyone."""
        with self._claims_lock:
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
        keys = self._jwks.get()
        if keys is None or kid not in keys:
            keys = self._jwks.refetch()  # a rotated key; at most once per JWKS_MIN_INTERVAL
        if keys is None:
            raise KeysUnavailable(f"could not load {self._jwks_url} (and no copy was kept)")
        key = keys.get(kid)
        if key is None:
            raise UnknownSigningKey(f"no signing key {kid!r} in the project's JWKS")
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"key {kid!r} is not an {algorithm} key")
        return key

    def _fetch_keys(self, timeout: float | None = None) -> dict[str, jwt.PyJWK] | None:
        try:
            response = self._http.get(
                self._jwks_url, headers=self._headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
            response.raise_for_status()
            listed = response.json()["keys"]
            keys = _parsed(listed)
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError,
                jwt.PyJWTError) as error:
            log.warning("could not load %s (keeping the keys fetched before, if any): %s: %s",
                        self._jwks_url, type(error).__name__, error)
            self._report(out_of_reach=_out_of_reach(error))
            return None
        self._report(out_of_reach=None)
        self._save(listed)
        return keys

    def _report(self, out_of_reach: bool | None) -> None:
        """Tell the gate: reached (None), not reachable (True), or a bad answer (False)."""
        if self._gate is None:
            return
        if out_of_reach is None:
            self._gate.succeeded()
        elif out_of_reach:
            self._gate.failed()
        else:
            self._gate.release()

    def _save(self, listed: list) -> None:
        """Keep the JWKS for the next worker that cannot fetch it (public keys only)."""
        if self._saved_keys is None:
            return
        data = json.dumps({"jwks_url": self._jwks_url, "keys": listed}, sort_keys=True,
                          indent=1).encode()
        try:
            if self._saved_keys.is_file() and self._saved_keys.read_bytes() == data:
                return  # every worker fetches; the file changes only when the keys do
            self._saved_keys.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(self._saved_keys, data)
        except OSError as error:
            log.warning("could not keep the signing keys in %s: %s", self._saved_keys, error)

    def _read_saved_keys(self) -> dict[str, jwt.PyJWK] | None:
        """The JWKS kept by the last fetch that succeeded (in any worker), for this project."""
        if self._saved_keys is None or not self._saved_keys.is_file():
            return None
        try:
            saved = json.loads(self._saved_keys.read_bytes())
            if saved["jwks_url"] != self._jwks_url:
                return None  # another project's, or SUPABASE_URL moved
            keys = _parsed(saved["keys"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError,
                jwt.PyJWTError) as error:
            log.warning("could not read the signing keys kept in %s: %s: %s", self._saved_keys,
                        type(error).__name__, error)
            return None
        log.warning("verifying tokens with the signing keys kept in %s until %s answers",
                    self._saved_keys, self._jwks_url)
        return keys


def _parsed(listed: list) -> dict[str, jwt.PyJWK]:
    return {jwk["kid"]: jwt.PyJWK(jwk) for jwk in listed if jwk.get("kid")}


def _out_of_reach(error: Exception) -> bool:
    """No answer at all, or a server error: nobody could have fetched the keys just now."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def freeze(value):
    """A read-only copy of JSON-shaped data: mappings become proxies, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def _until_expiry(_digest: bytes, claims: Mapping, _now: float) -> float:
    # Expired claims stay a little longer: the next request refreshes with them in hand.
    return claims["exp"] + 300


def _wait_for(http: httpx.Client) -> float:
    """How long a request may wait for another thread's JWKS fetch: one call's timeout."""
    timeout = http.timeout
    return sum(part or 0 for part in (timeout.connect, timeout.read)) or 5.0


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _header(token: str) -> dict:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
