"""JWT signing keys with Supabase's states, kept in the emulator's SQLite database.

A key is ``standby`` (advertised in the JWKS, signs nothing yet), ``in_use`` (the current key:
signs every new access token), ``previously_used`` (still trusted, signs nothing) or
``revoked`` (trusted no more, gone from the JWKS). These are the Management API's status names.
Rotation makes the standby key current and the current key previously used, then generates a
new standby key; revocation moves a previously used key to revoked.

States are read from the database on every use, so a change made by ``python -m emulator keys``
in another process applies to a running emulator at once.
"""

import functools
import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from jwt.algorithms import ECAlgorithm

from . import keys
from .db import Database

STANDBY, IN_USE, PREVIOUSLY_USED, REVOKED = "standby", "in_use", "previously_used", "revoked"
STATES = (IN_USE, STANDBY, PREVIOUSLY_USED, REVOKED)  # the order keys are listed in
VERIFYING = (IN_USE, PREVIOUSLY_USED)  # a standby key has signed nothing yet
ADVERTISED = (IN_USE, STANDBY, PREVIOUSLY_USED)  # what the JWKS lists


class SigningKeyError(Exception):
    """An action the key's state does not allow."""


class UnknownSigningKey(SigningKeyError):
    """No key has that kid."""


@functools.lru_cache(maxsize=64)
def load_private(jwk: str) -> Any:
    """Parse a private JWK once (key material never changes for a kid)."""
    return ECAlgorithm.from_jwk(jwk)


@dataclass(frozen=True)
class SigningKey:
    """One signing key: its kid, algorithm, state and private JWK."""

    kid: str
    alg: str
    state: str
    private_jwk: dict[str, Any] = field(repr=False)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def private_key(self) -> Any:
        """The key object that signs."""
        return load_private(json.dumps(self.private_jwk, sort_keys=True))

    @property
    def public_key(self) -> Any:
        """The key object that verifies."""
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry: public material only, for verification."""
        public = {k: self.private_jwk[k] for k in ("kty", "crv", "x", "y")}
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig",
                "key_ops": ["verify"]}


def new_jwk() -> dict[str, Any]:
    """A fresh random P-256 private JWK with a UUID kid, as the platform makes them."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private, as_dict=True)
    return {**jwk, "kid": str(uuid.uuid4()), "alg": "ES256", "use": "sig",
            "key_ops": ["sign", "verify"]}


def from_row(row: sqlite3.Row) -> SigningKey:
    """Build a SigningKey from a signing_keys row."""
    return SigningKey(row["kid"], row["alg"], row["state"], json.loads(row["private_jwk"]),
                      row["created_at"], row["updated_at"])


class SigningKeys:
    """The signing keys of one emulator database, and the state changes between them."""

    def __init__(self, database: Database, clock: Callable[[], float]) -> None:
        self.database = database
        self.clock = clock

    def ensure(self) -> None:
        """On a new database: the fixed dev key as the current key and a random standby key."""
        with self.database.transaction() as conn:
            if conn.execute("SELECT 1 FROM signing_keys LIMIT 1").fetchone() is None:
                insert(conn, keys.JWT_PRIVATE_JWK, IN_USE, self.clock())
                insert(conn, new_jwk(), STANDBY, self.clock())

    def all(self) -> list[SigningKey]:
        """Every key: current, standby, previously used, revoked; oldest first within each."""
        found = [from_row(row) for row in self.database.all("SELECT * FROM signing_keys")]
        return sorted(found, key=lambda k: (STATES.index(k.state), k.created_at, k.kid))

    def signing_key(self) -> SigningKey:
        """The current key."""
        row = self.database.one("SELECT * FROM signing_keys WHERE state = ?", (IN_USE,))
        if row is None:
            raise SigningKeyError("the database has no signing key in use")
        return from_row(row)

    def verifying_key(self, kid: str) -> SigningKey | None:
        """The key with this kid if tokens signed with it are still trusted."""
        row = self.database.one("SELECT * FROM signing_keys WHERE kid = ?", (kid,))
        return from_row(row) if row is not None and row["state"] in VERIFYING else None

    def public_jwks(self) -> list[dict[str, Any]]:
        """The JWKS entries: current, standby and previously used keys, never revoked ones."""
        return [key.public_jwk() for key in self.all() if key.state in ADVERTISED]

    def rotate(self) -> SigningKey:
        """Standby → current, current → previously used, and a new standby; return the current."""
        now = self.clock()
        with self.database.transaction() as conn:
            standby = conn.execute("SELECT kid FROM signing_keys WHERE state = ? "
                                   "ORDER BY created_at, kid LIMIT 1", (STANDBY,)).fetchone()
            kid = standby["kid"] if standby else insert(conn, new_jwk(), STANDBY, now)
            set_state(conn, PREVIOUSLY_USED, now, "state = ?", (IN_USE,))
            set_state(conn, IN_USE, now, "kid = ?", (kid,))
            insert(conn, new_jwk(), STANDBY, now)
        return self.signing_key()

    def revoke(self, kid: str) -> SigningKey:
        """Previously used → revoked: tokens signed with it fail and the JWKS drops it."""
        with self.database.transaction() as conn:
            row = conn.execute("SELECT state FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
            if row is None:
                raise UnknownSigningKey(f"no signing key has kid {kid}")
            if row["state"] != PREVIOUSLY_USED:
                raise SigningKeyError(f"only a previously used key can be revoked; {kid} is "
                                      f"{row['state'].replace('_', ' ')}")
            set_state(conn, REVOKED, self.clock(), "kid = ?", (kid,))
        return from_row(self.database.one("SELECT * FROM signing_keys WHERE kid = ?", (kid,)))


def insert(conn: sqlite3.Connection, jwk: dict[str, Any], state: str, now: float) -> str:
    """Store a key in a state; return its kid."""
    conn.execute("INSERT INTO signing_keys (kid, alg, state, private_jwk, created_at, updated_at)"
                 " VALUES (?, ?, ?, ?, ?, ?)",
                 (jwk["kid"], jwk["alg"], state, json.dumps(jwk), now, now))
    return jwk["kid"]


def set_state(conn: sqlite3.Connection, state: str, now: float, where: str,
              args: tuple[Any, ...]) -> None:
    """Move the keys matching a condition to a state."""
    conn.execute(f"UPDATE signing_keys SET state = ?, updated_at = ? WHERE {where}",  # noqa: S608
                 (state, now, *args))


class FixedKeyring:
    """The fixed dev key alone, current, without storage (for a TokenService on its own)."""

    def __init__(self) -> None:
        self.key = SigningKey(keys.JWT_PRIVATE_JWK["kid"], "ES256", IN_USE, keys.JWT_PRIVATE_JWK)

    def signing_key(self) -> SigningKey:
        """The dev key."""
        return self.key

    def verifying_key(self, kid: str) -> SigningKey | None:
        """The dev key if the kid is its kid."""
        return self.key if kid == self.key.kid else None

    def public_jwks(self) -> list[dict[str, Any]]:
        """The dev key's JWKS entry."""
        return [self.key.public_jwk()]


def init_app(app: Flask) -> SigningKeys:
    """Seed the keys of a new database and keep the keyring in ``app.extensions``."""
    keyring = SigningKeys(app.extensions["emulator.db"], app.config["CLOCK"])
    keyring.ensure()
    app.extensions["emulator.signing_keys"] = keyring
    return keyring
