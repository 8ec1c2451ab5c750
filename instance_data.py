"""What the app keeps on disk in its instance folder, shared by the workers of one server.

Flask's instance folder (``app.instance_path``, ``INSTANCE_PATH`` to move it) holds state that
must outlive a worker or be seen by all of a server's workers: the last good JWKS, pending
sign-outs, wrong two-factor codes. It is created 0700 and every file in it 0600: some of it
(refresh tokens waiting to be revoked) is as sensitive as the cookie.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from pathlib import Path

from flask import Flask

DATABASE = "app.sqlite3"  # the workers' shared tables, in the instance folder


def folder(app: Flask) -> Path:
    """The instance folder, created (owner-only) on first use."""
    path = Path(app.instance_path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new, never half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:  # mkstemp creates it 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class SharedDatabase:
    """One SQLite file for a server's workers; a connection per thread, WAL so readers and the
    one writer do not block each other, and a short busy timeout so nobody waits long."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use ``with connection:`` for a transaction)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=2.0, isolation_level=None,
                                         check_same_thread=False)
            # SQLite gives the WAL and SHM files the database file's mode: owner only. Never
            # open and close the file itself: closing any descriptor of it drops every POSIX
            # lock this process holds on it, and other workers then write under its readers
            # ("database disk image is malformed").
            os.chmod(self.path, 0o600)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(self._schema)
            self._local.connection = connection
        return connection


def shared_database(app: Flask, schema: str) -> SharedDatabase:
    """The instance folder's database, with ``schema`` (CREATE … IF NOT EXISTS) applied."""
    return SharedDatabase(folder(app) / DATABASE, schema)
