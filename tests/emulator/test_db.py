"""Storage: transactions roll back, data survives a restart, :memory: is shared."""

import os
import sqlite3
import stat
import threading

import pytest

from emulator import close_app, create_app
from emulator.db import Database

ADD_ACCOUNT = ("INSERT INTO stand_in_accounts (provider, id, login, created_at)"
               " VALUES ('github', ?, ?, 0)")


def test_transaction_rolls_back_on_error():
    db = Database(":memory:")
    try:
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute(ADD_ACCOUNT, (7, "rolled-back"))
            raise RuntimeError
        assert db.one("SELECT count(*) FROM stand_in_accounts")[0] == 0
    finally:
        db.close()


def test_memory_database_is_shared_by_threads():
    db = Database(":memory:")
    try:
        def write():
            with db.transaction() as conn:
                conn.execute(ADD_ACCOUNT, (7, "threaded"))
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        assert db.one("SELECT login FROM stand_in_accounts WHERE id = 7")[0] == "threaded"
    finally:
        db.close()


def test_data_survives_restart(tmp_path, clock):
    config = {"DATABASE": str(tmp_path / "auth.sqlite3"), "GITHUB_AUTO_LOGIN": "octocat"}
    first = create_app(config)
    first.test_client().post("/github/_accounts", json={"login": "kept"})
    close_app(first)
    second = create_app(config)
    try:
        assert second.extensions["emulator.db"].one(
            "SELECT 1 FROM stand_in_accounts WHERE login = 'kept'")
    finally:
        close_app(second)


def test_old_database_gains_linking_column(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE flow_states (id TEXT PRIMARY KEY, user_id TEXT, auth_code TEXT,"
                " code_challenge_method TEXT, code_challenge TEXT, provider_type TEXT NOT NULL,"
                " provider_access_token TEXT, provider_refresh_token TEXT,"
                " authentication_method TEXT NOT NULL, auth_code_issued_at REAL,"
                " invite_token TEXT, referrer TEXT, created_at REAL, updated_at REAL)")
    old.close()
    db = Database(path)
    try:
        columns = {row[1] for row in db.all("PRAGMA table_info(flow_states)")}
        assert "linking_target_id" in columns
    finally:
        db.close()


def test_the_database_and_its_side_files_are_private(tmp_path):
    """It holds private signing keys, refresh tokens and TOTP secrets: 0600, even under umask 0."""
    previous = os.umask(0)
    try:
        path = tmp_path / "data" / "auth.sqlite3"
        db = Database(str(path))
        with db.transaction() as conn:
            conn.execute(ADD_ACCOUNT, (8, "private"))
        files = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]
        modes = {file.name: stat.S_IMODE(file.stat().st_mode) for file in files}
        db.close()
    finally:
        os.umask(previous)
    assert modes == {file.name: 0o600 for file in files}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_database_left_readable_is_tightened(tmp_path):
    path = tmp_path / "auth.sqlite3"
    Database(str(path)).close()
    path.chmod(0o644)
    Database(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
