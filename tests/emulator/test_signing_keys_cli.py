"""python -m emulator keys list|rotate|revoke KID, on the database file."""

import subprocess
import sys

import pytest

from emulator import __main__ as cli
from emulator import keys
from emulator.db import Database
from emulator.signing_keys import SigningKeys

DEV_KID = keys.JWT_PRIVATE_JWK["kid"]


@pytest.fixture
def database(tmp_path, monkeypatch):
    path = tmp_path / "auth.sqlite3"
    monkeypatch.setenv("EMULATOR_DATABASE", str(path))
    return path


def states(path) -> dict[str, str]:
    database = Database(str(path))
    try:
        return {key.kid: key.state for key in SigningKeys(database, lambda: 0.0).all()}
    finally:
        database.close()


def test_list_seeds_a_new_database(database, capsys):
    assert cli.main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kid", "alg", "state", "changed"]
    assert lines[1].startswith(DEV_KID) and "in use" in lines[1]
    assert "standby" in lines[2]


def test_rotate_then_revoke(database, capsys):
    assert cli.main(["keys", "rotate"]) == 0
    assert states(database)[DEV_KID] == "previously_used"
    assert "is now the current key" in capsys.readouterr().out
    assert cli.main(["keys", "revoke", DEV_KID]) == 0
    assert states(database)[DEV_KID] == "revoked"
    assert f"Revoked {DEV_KID}" in capsys.readouterr().out


@pytest.mark.parametrize("kid", [DEV_KID, "no-such-kid"])
def test_refused_revoke_exits_1(database, capsys, kid):
    assert cli.main(["keys", "revoke", kid]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert states(database)[DEV_KID] == "in_use"


def test_database_option(tmp_path, capsys):
    path = tmp_path / "other.sqlite3"
    assert cli.main(["keys", "--database", str(path), "rotate"]) == 0
    assert states(path)[DEV_KID] == "previously_used"


def test_missing_action_is_a_usage_error(database):
    with pytest.raises(SystemExit) as exited:
        cli.main(["keys"])
    assert exited.value.code == 2


def test_rotation_reaches_a_running_emulator(database, make_app):
    app = make_app(DATABASE=str(database))
    subprocess.run([sys.executable, "-m", "emulator", "keys", "rotate"], check=True,
                   capture_output=True, timeout=30)
    current = app.extensions["emulator.tokens"].keyring.signing_key()
    assert current.kid != DEV_KID
    kids = [k["kid"] for k in app.test_client().get("/auth/v1/.well-known/jwks.json").json["keys"]]
    assert kids[0] == current.kid and DEV_KID in kids
