"""The instance folder's shared database: workers (processes) and their threads at once."""

from __future__ import annotations

import subprocess
import sys
import threading

from flask import Flask

import instance_data

SCHEMA = "CREATE TABLE IF NOT EXISTS things (name TEXT);"
# SQLite's read locks on a database file lie in this byte range (os_unix.c: SHARED_FIRST, 510).
SHARED_FIRST, SHARED_SIZE = 0x40000002, 510
CAN_LOCK_ALL = f"""
import fcntl, sys
with open(sys.argv[1], "rb+") as file:
    try:
        fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB, {SHARED_SIZE}, {SHARED_FIRST})
    except OSError:
        print("held")
    else:
        print("free")
"""


def another_process_sees(path) -> str:
    """Whether another process could lock the whole database file ("free") or not ("held")."""
    return subprocess.run([sys.executable, "-c", CAN_LOCK_ALL, str(path)],  # noqa: S603
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_thread_connecting_keeps_the_other_threads_locks(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    database = instance_data.shared_database(app, SCHEMA)
    first = database.connect()
    first.execute("INSERT INTO things VALUES ('a')")
    assert another_process_sees(database.path) == "held"  # an open WAL connection reads
    second = threading.Thread(target=database.connect)
    second.start()
    second.join()
    # Closing any descriptor of the file would drop this process's locks: another worker could
    # then checkpoint and delete the WAL under this one.
    assert another_process_sees(database.path) == "held"
    first.close()


def test_the_database_and_its_companions_are_owner_only(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    database = instance_data.shared_database(app, SCHEMA)
    database.connect().execute("INSERT INTO things VALUES ('a')")
    files = list(database.path.parent.iterdir())
    assert {path.name for path in files} >= {"app.sqlite3", "app.sqlite3-wal", "app.sqlite3-shm"}
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files)
