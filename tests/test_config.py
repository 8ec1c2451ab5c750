"""Settings: read from the environment by the factory, checked before the app starts."""

from __future__ import annotations

import jwt
import pytest

from app import create_app
from config import ConfigError
from tests.helpers import SECRET

GOOD = {"SUPABASE_URL": "https://abcd.supabase.co",
        "SUPABASE_KEY": "sb_publishable_9xQ2hT7mKc4LrW8vZp1YdA_3nBfGs0Ej",
        "SECRET_KEY": SECRET, "SITE_URL": "https://app.example.com"}


@pytest.fixture
def environment(monkeypatch):
    def set_all(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return set_all


def close(app):
    app.extensions["supabase"].http.close()


def test_reads_the_environment(environment):
    environment(**GOOD, AUTH_PROVIDERS="GitHub, gitlab", AUTH_REVALIDATE_SECONDS="30",
                AUTH_SCOPES="github:read:user repo")
    app = create_app()
    close(app)
    assert app.config["SUPABASE_URL"] == "https://abcd.supabase.co"
    assert app.config["AUTH_PROVIDERS"] == ["github", "gitlab"]
    assert app.config["AUTH_REVALIDATE_SECONDS"] == 30
    assert app.config["AUTH_SCOPES"] == {"github": "read:user repo"}
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("missing", ["SUPABASE_URL", "SUPABASE_KEY", "SECRET_KEY", "SITE_URL"])
def test_refuses_to_start_without_a_required_setting(environment, missing):
    environment(**{name: value for name, value in GOOD.items() if name != missing})
    with pytest.raises(ConfigError, match=missing):
        create_app()


@pytest.mark.parametrize("secret", ["dev", "changeme", "a" * 40, "short-but-random-Xy7"])
def test_refuses_a_weak_secret_key(environment, secret):
    environment(**{**GOOD, "SECRET_KEY": secret})
    with pytest.raises(ConfigError, match="SECRET_KEY is too weak"):
        create_app()


def test_refuses_plain_http_outside_localhost(environment):
    environment(**{**GOOD, "SITE_URL": "http://app.example.com"})
    with pytest.raises(ConfigError, match="must use https"):
        create_app()


@pytest.mark.parametrize("name, value", [("AUTH_REVALIDATE_SECONDS", "soon"),
                                         ("SUPABASE_TIMEOUT", "fast"),
                                         ("SUPABASE_URL", "ftp://example.com")])
def test_names_a_malformed_setting(environment, name, value):
    environment(**{**GOOD, name: value})
    with pytest.raises(ConfigError, match=name):
        create_app()


def test_all_problems_are_named_at_once(environment):
    environment(SECRET_KEY="dev")
    with pytest.raises(ConfigError) as raised:
        create_app()
    for name in ("SUPABASE_URL", "SUPABASE_KEY", "SECRET_KEY", "SITE_URL"):
        assert name in str(raised.value)


def test_debug_runs_without_secret_key_and_site_url(environment, tmp_path, monkeypatch):
    environment(FLASK_DEBUG="1", SUPABASE_URL="http://127.0.0.1:54321", SUPABASE_KEY="k")
    instance = str(tmp_path / "instance")
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda app: instance)
    app = create_app()
    close(app)
    again = create_app()
    close(again)
    assert len(app.config["SECRET_KEY"]) == 64
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]  # survives a reload
    assert (tmp_path / "instance" / "dev_secret_key").stat().st_mode & 0o077 == 0
    assert app.config["SITE_URL"] == "http://localhost:5000"  # a name: passkeys refuse IPs
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_a_test_config_ignores_the_environment(environment, make_app):
    environment(SUPABASE_URL="https://should-not-be-read.supabase.co")
    assert make_app().config["SUPABASE_URL"].startswith("http://127.0.0.1:")


def test_reads_the_recent_sign_in_window(environment):
    environment(**GOOD, AUTH_RECENT_SIGN_IN_SECONDS="300")
    app = create_app()
    close(app)
    assert app.config["AUTH_RECENT_SIGN_IN_SECONDS"] == 300


@pytest.mark.parametrize("value", ["0", "-5"])
def test_refuses_a_recent_sign_in_window_that_allows_nothing(environment, value):
    environment(**GOOD, AUTH_RECENT_SIGN_IN_SECONDS=value)
    with pytest.raises(ConfigError, match="AUTH_RECENT_SIGN_IN_SECONDS must be a positive"):
        create_app()


LOCAL = {"FLASK_DEBUG": "1", "SUPABASE_URL": "http://127.0.0.1:54321",
         "SITE_URL": "http://localhost:5000",
         "SUPABASE_KEY": "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"}  # the demo key


@pytest.mark.parametrize("change, reason", [
    # Off this machine, debug is production: every check applies.
    ({"SITE_URL": "http://app.example.com"}, "SITE_URL=.* must use https outside localhost"),
    ({"SUPABASE_URL": "http://abcd.supabase.co"}, "SUPABASE_URL=.* must use https"),
    ({"SUPABASE_URL": "https://abcd.supabase.co"}, "the emulator's public demo key"),
    ({"SITE_URL": "https://app.example.com", "SECRET_KEY": "dev"}, "SECRET_KEY is too weak"),
    ({"SITE_URL": "https://app.example.com"}, "only while SITE_URL and SUPABASE_URL are on"),
    # On it, a secret key and a weak SECRET_KEY are still refused.
    ({"SUPABASE_KEY": "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"}, "is a secret key"),
    ({"SUPABASE_KEY": "sb_secret_kX81nQ0wZtM3jRb7CeY5Lg_H2vPaF9Ud"}, "is a secret key"),
    ({"SUPABASE_KEY": jwt.encode({"iss": "supabase-demo", "role": "service_role"},
                                 "x" * 40, "HS256")}, "'service_role' JWT"),
    ({"SECRET_KEY": "dev"}, "SECRET_KEY is too weak"),
])
def test_debug_relaxes_only_what_a_laptop_needs(environment, tmp_path, change, reason):
    """Issue 17: FLASK_DEBUG=1 switched the whole production guard off."""
    environment(**{**LOCAL, "INSTANCE_PATH": str(tmp_path), **change})
    with pytest.raises(ConfigError, match=reason):
        create_app()


@pytest.mark.parametrize("site_url, supabase_url", [
    ("http://localhost:5000", "http://127.0.0.1:54321"),
    ("http://127.0.0.1:5000", "http://localhost:54321"),
    ("http://[::1]:5000", "http://127.0.0.2:54321"),
])
def test_debug_on_this_machine_runs_on_the_emulators_demo_keys(environment, tmp_path,
                                                               site_url, supabase_url):
    environment(**{**LOCAL, "SITE_URL": site_url, "SUPABASE_URL": supabase_url,
                   "INSTANCE_PATH": str(tmp_path)})
    app = create_app()
    close(app)
    assert app.debug and len(app.config["SECRET_KEY"]) == 64


@pytest.mark.parametrize("port, site_url", [(None, "http://localhost:5000"),
                                            ("5080", "http://localhost:5080")])
def test_debug_site_url_is_localhost_on_app_port(environment, monkeypatch, tmp_path, port,
                                                 site_url):
    monkeypatch.delenv("APP_PORT", raising=False)  # a developer's own shell may set it
    environment(FLASK_DEBUG="1", SUPABASE_URL="http://127.0.0.1:54321", SUPABASE_KEY="k",
                INSTANCE_PATH=str(tmp_path), **({"APP_PORT": port} if port else {}))
    app = create_app()
    close(app)
    assert app.config["SITE_URL"] == site_url


def test_app_port_must_be_a_number(environment):
    environment(**GOOD, APP_PORT="five thousand")
    with pytest.raises(ConfigError, match="APP_PORT"):
        create_app()


@pytest.mark.parametrize("value, problem", [
    ("user_metadata.role", "must not point into user_metadata"),
    ("app_metadata..role", "not a claim name"),
])
def test_refuses_a_role_claim_people_could_write_or_that_names_nothing(environment, value,
                                                                      problem):
    environment(**GOOD, AUTH_ROLE_CLAIM=value)
    with pytest.raises(ConfigError, match=f"AUTH_ROLE_CLAIM.*{problem}"):
        create_app()


def test_a_hooks_role_claim_is_accepted(environment):
    environment(**GOOD, AUTH_ROLE_CLAIM="user_role")
    app = create_app()
    assert app.config["AUTH_ROLE_CLAIM"] == "user_role"
    close(app)


def test_reads_old_secret_keys_for_rotation(environment):
    """A deployment rotates SECRET_KEY by moving the old one here: its cookies still open."""
    environment(**GOOD, SECRET_KEY_FALLBACKS=" old-key-one-0123456789abcdefghijklmnop , older-key ")
    app = create_app()
    close(app)
    assert app.config["SECRET_KEY_FALLBACKS"] == ["old-key-one-0123456789abcdefghijklmnop",
                                                  "older-key"]
