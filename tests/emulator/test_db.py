"""Storage: transactions roll back, data survives a restart, :memory: is shared."""

import threading

import pytest

from emulator import close_app, create_app
from emulator.db import Database


def test_transaction_rolls_back_on_error():
    db = Database(":memory:")
    try:
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute("DELETE FROM github_accounts")
            raise RuntimeError
        assert db.one("SELECT count(*) FROM github_accounts")[0] == 1
    finally:
        db.close()


def test_memory_database_is_shared_by_threads():
    db = Database(":memory:")
    try:
        def write():
            with db.transaction() as conn:
                conn.execute("INSERT INTO github_accounts (id, login, created_at)"
                             " VALUES (7, 'threaded', 0)")
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        assert db.one("SELECT login FROM github_accounts WHERE id = 7")[0] == "threaded"
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
            "SELECT 1 FROM github_accounts WHERE login = 'kept'")
    finally:
        close_app(second)
