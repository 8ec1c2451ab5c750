"""python -m emulator: --print-env, --reset, the banner and the exposure warning."""

import subprocess
import sys

import pytest

from emulator import __main__ as cli
from emulator import keys


def test_print_env(capsys):
    assert cli.main(["--print-env"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "SUPABASE_URL=http://127.0.0.1:54321",
        f"SUPABASE_KEY={keys.PUBLISHABLE_KEY}",
        f"SUPABASE_SECRET_KEY={keys.SECRET_KEY}",
        f"SUPABASE_ANON_KEY={keys.ANON_KEY}",
        f"SUPABASE_SERVICE_ROLE_KEY={keys.SERVICE_ROLE_KEY}",
    ]


def test_print_env_follows_configured_opaque_keys(capsys, monkeypatch):
    monkeypatch.setenv("EMULATOR_PUBLISHABLE_API_KEY", "sb_publishable_mine")
    monkeypatch.setenv("EMULATOR_SECRET_API_KEY", "sb_secret_mine")
    cli.main(["--print-env"])
    out = capsys.readouterr().out.splitlines()
    assert "SUPABASE_KEY=sb_publishable_mine" in out and "SUPABASE_SECRET_KEY=sb_secret_mine" in out


def test_print_env_follows_port_and_env(capsys, monkeypatch):
    cli.main(["--print-env", "--port", "6000"])
    assert "SUPABASE_URL=http://127.0.0.1:6000" in capsys.readouterr().out
    monkeypatch.setenv("EMULATOR_PUBLIC_URL", "http://auth.test:1")
    cli.main(["--print-env"])
    assert "SUPABASE_URL=http://auth.test:1" in capsys.readouterr().out


def test_module_runs_as_script():
    result = subprocess.run([sys.executable, "-m", "emulator", "--print-env"],
                            capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout.startswith("SUPABASE_URL=")


def test_reset_wipes_the_database(tmp_path, monkeypatch, capsys):
    database = tmp_path / "auth.sqlite3"
    database.write_bytes(b"old")
    monkeypatch.setenv("EMULATOR_DATABASE", str(database))
    cli.main(["--reset", "--print-env"])
    assert not database.exists()


EXPOSED = "0.0.0.0"  # noqa: S104 - checking the warning, nothing binds here


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), (EXPOSED, True)])
def test_serve_prints_banner_and_warns_when_exposed(tmp_path, monkeypatch, capsys, host, warned):
    served = []
    monkeypatch.setenv("EMULATOR_DATABASE", str(tmp_path / "db.sqlite3"))
    monkeypatch.setattr(cli, "serve_forever", lambda *args, **kwargs: served.append(args[:2]))
    cli.main(["--host", host, "--port", "5999"])
    out, err = capsys.readouterr()
    assert served == [(host, 5999)]
    assert "http://127.0.0.1:5999" in out and keys.ANON_KEY in out
    assert ("WARNING" in err) is warned


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "150 per 5 minutes, burst 30, per client address"),
    ({"EMULATOR_RATE_LIMIT_TOKEN_REFRESH": "900", "EMULATOR_RATE_LIMIT_HEADER": "X-Real-IP"},
     "900 per 5 minutes, burst 30, per X-Real-IP header, else client address"),
    ({"EMULATOR_SB_FORWARDED_FOR": "true"},
     "per Sb-Forwarded-For IP, else client address"),
])
def test_banner_states_the_token_rate_limit(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert expected in cli.limit_line(cli.settings_for(cli.parse_args([])))


def test_help_lists_the_settings(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "RATE_LIMIT_TOKEN_REFRESH" in " ".join(capsys.readouterr().out.split())
