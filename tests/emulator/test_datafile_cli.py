"""python -m emulator export FILE / import FILE, and --seed FILE at start."""

import io
import json
import subprocess
import sys

from emulator import __main__ as cli
from tests.emulator.test_datafile import SEED, USER_ID


def run(*argv):
    return cli.main(list(argv))


def test_import_then_export_round_trip(tmp_path, capsys):
    database, seed, out = tmp_path / "auth.sqlite3", tmp_path / "seed.json", tmp_path / "out.json"
    seed.write_text(json.dumps(SEED))
    assert run("import", str(seed), "--database", str(database)) == 0
    assert run("export", str(out), "--database", str(database)) == 0
    err = capsys.readouterr().err
    assert f"Imported 1 user(s) and 1 stand-in account(s) from {seed}" in err
    assert f"Exported 1 user(s) and 2 stand-in account(s) to {out}" in err
    exported = json.loads(out.read_text())
    assert [u["id"] for u in exported["users"]] == [USER_ID]
    assert [a["login"] for a in exported["stand_in_accounts"]] == ["octocat", "ada"]
    fresh = tmp_path / "fresh.sqlite3"
    assert run("import", str(out), "--database", str(fresh)) == 0
    again = tmp_path / "again.json"
    assert run("export", str(again), "--database", str(fresh)) == 0
    strip = lambda d: {k: v for k, v in d.items() if k != "exported_at"}  # noqa: E731
    assert strip(json.loads(again.read_text())) == strip(exported)


def test_standard_input_and_output(tmp_path, monkeypatch, capsys):
    database = str(tmp_path / "auth.sqlite3")
    monkeypatch.setenv("EMULATOR_DATABASE", database)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(SEED)))
    assert run("import", "-") == 0
    capsys.readouterr()
    assert run("export", "-") == 0
    assert json.loads(capsys.readouterr().out)["users"][0]["email"] == "ada@example.com"


def test_a_wrong_file_is_refused_with_the_reason(tmp_path, capsys):
    database, seed = tmp_path / "auth.sqlite3", tmp_path / "seed.json"
    seed.write_text(json.dumps({**SEED, "version": 3}))
    assert run("import", str(seed), "--database", str(database)) == 1
    assert "version: this emulator reads version 1, not 3" in capsys.readouterr().err
    seed.write_text("{not json")
    assert run("import", str(seed), "--database", str(database)) == 1
    assert "not JSON" in capsys.readouterr().err
    assert run("import", str(tmp_path / "missing.json"), "--database", str(database)) == 1


def test_seed_option_reaches_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EMULATOR_DATABASE", str(tmp_path / "auth.sqlite3"))
    settings = cli.settings_for(cli.parse_args(["--seed", "people.json"]))
    assert settings["SEED"] == "people.json"
    monkeypatch.setenv("EMULATOR_SEED", "team.json")
    assert cli.settings_for(cli.parse_args([]))["SEED"] == "team.json"


def test_serving_with_a_seed_imports_it(tmp_path, monkeypatch):
    seed, database = tmp_path / "seed.json", tmp_path / "auth.sqlite3"
    seed.write_text(json.dumps(SEED))
    monkeypatch.setenv("EMULATOR_DATABASE", str(database))
    monkeypatch.setattr(cli, "serve_forever", lambda *args, **kwargs: None)
    assert run("--seed", str(seed), "--port", "5998") == 0
    out = tmp_path / "out.json"
    assert run("export", str(out)) == 0
    assert json.loads(out.read_text())["users"][0]["id"] == USER_ID


def test_module_exports_as_a_script(tmp_path):
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "emulator", "export", "-", "--database",
         str(tmp_path / "auth.sqlite3")], capture_output=True, text=True, check=True, timeout=30)
    data = json.loads(result.stdout)
    assert (data["format"], data["version"], data["users"]) == ("supabase-auth-emulator", 1, [])
