"""SQLite storage: schema, one shared connection, and BEGIN IMMEDIATE transactions."""

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, current_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    aud TEXT NOT NULL,
    role TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    email_confirmed_at REAL,
    phone TEXT NOT NULL DEFAULT '',
    phone_confirmed_at REAL,
    confirmation_token TEXT,
    last_sign_in_at REAL,
    app_metadata TEXT NOT NULL DEFAULT '{}',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    banned_until REAL,
    deleted_at REAL,
    is_anonymous INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS users_email ON users (lower(email));
CREATE TABLE IF NOT EXISTS identities (
    id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    identity_data TEXT NOT NULL,
    provider TEXT NOT NULL,
    email TEXT,
    last_sign_in_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (provider, provider_id)
);
CREATE INDEX IF NOT EXISTS identities_user ON identities (user_id);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    aal TEXT NOT NULL DEFAULT 'aal1',
    amr TEXT NOT NULL DEFAULT '[]',
    factor_id TEXT,
    refreshed_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS mfa_factors (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friendly_name TEXT NOT NULL DEFAULT '',
    factor_type TEXT NOT NULL,
    status TEXT NOT NULL,
    secret TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    last_challenged_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mfa_factors_user ON mfa_factors (user_id, created_at);
CREATE TABLE IF NOT EXISTS mfa_challenges (
    id TEXT PRIMARY KEY,
    factor_id TEXT NOT NULL REFERENCES mfa_factors (id) ON DELETE CASCADE,
    ip_address TEXT NOT NULL,
    verified_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mfa_challenges_factor ON mfa_challenges (factor_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    parent TEXT,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session ON refresh_tokens (session_id, revoked);
CREATE TABLE IF NOT EXISTS flow_states (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    auth_code TEXT,
    code_challenge_method TEXT,
    code_challenge TEXT,
    provider_type TEXT NOT NULL,
    provider_access_token TEXT DEFAULT '',
    provider_refresh_token TEXT DEFAULT '',
    authentication_method TEXT NOT NULL,
    auth_code_issued_at REAL,
    invite_token TEXT,
    referrer TEXT,
    linking_target_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_states_auth_code ON flow_states (auth_code);
CREATE TABLE IF NOT EXISTS stand_in_accounts (
    provider TEXT NOT NULL,
    id INTEGER NOT NULL,
    login TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    verified INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    PRIMARY KEY (provider, id),
    UNIQUE (provider, login)
);
CREATE TABLE IF NOT EXISTS stand_in_codes (
    code TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    FOREIGN KEY (provider, account_id) REFERENCES stand_in_accounts (provider, id)
        ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS stand_in_tokens (
    token TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    FOREIGN KEY (provider, account_id) REFERENCES stand_in_accounts (provider, id)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS stand_in_tokens_account ON stand_in_tokens (provider, account_id);
CREATE TABLE IF NOT EXISTS audit_log_entries (
    instance_id TEXT,
    id TEXT PRIMARY KEY,
    payload TEXT,
    created_at REAL,
    ip_address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_entries_created ON audit_log_entries (created_at);
CREATE TABLE IF NOT EXISTS webauthn_credentials (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id BLOB NOT NULL UNIQUE,
    public_key BLOB NOT NULL,
    attestation_type TEXT NOT NULL DEFAULT '',
    aaguid TEXT,
    sign_count INTEGER NOT NULL DEFAULT 0,
    transports TEXT NOT NULL DEFAULT '[]',
    backup_eligible INTEGER NOT NULL DEFAULT 0,
    backed_up INTEGER NOT NULL DEFAULT 0,
    friendly_name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_used_at REAL
);
CREATE INDEX IF NOT EXISTS webauthn_credentials_user ON webauthn_credentials (user_id);
CREATE TABLE IF NOT EXISTS webauthn_challenges (
    id TEXT PRIMARY KEY,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    challenge_type TEXT NOT NULL
        CHECK (challenge_type IN ('signup', 'registration', 'authentication')),
    session_data TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webauthn_challenges_expires ON webauthn_challenges (expires_at);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('standby', 'in_use', 'previously_used', 'revoked')),
    private_jwk TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


class Database:
    """One SQLite connection shared by all threads, serialised by a lock."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            create_private(Path(path))
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        with self.lock:
            self.conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self.conn.execute("PRAGMA busy_timeout = 5000")
            self.conn.executescript(SCHEMA)
            self.upgrade()

    def upgrade(self) -> None:
        """Add columns that databases created by older emulator versions lack."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(flow_states)")}
        if "linking_target_id" not in columns:
            self.conn.execute("ALTER TABLE flow_states ADD COLUMN linking_target_id TEXT")
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(sessions)")}
        if "factor_id" not in columns:
            self.conn.execute("ALTER TABLE sessions ADD COLUMN factor_id TEXT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; roll back if it raises."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """Return the first row of a query, or None."""
        with self.lock:
            return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Return every row of a query."""
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


def create_private(path: Path) -> None:
    """Make the database file readable by its owner only (0600) before SQLite opens it.

    It holds private signing keys, refresh tokens and TOTP secrets. SQLite creates its -wal
    and -shm files with the database file's mode; files left by an older emulator are tightened.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            side.chmod(0o600)


def reset(path: str) -> None:
    """Delete the database file (and its WAL side files) so the next start is fresh."""
    if path == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def init_app(app: Flask) -> Database:
    """Open the app's database once and keep it in ``app.extensions``."""
    database = Database(app.config["DATABASE"])
    app.extensions["emulator.db"] = database
    return database


def get_db() -> Database:
    """Return the current app's database."""
    return current_app.extensions["emulator.db"]
