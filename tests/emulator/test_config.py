"""Config defaults, normalisation and the EMULATOR_* mapping."""

import pytest

from emulator.config import from_environ, load


def test_defaults_and_derived_urls():
    config = load({"PUBLIC_URL": "http://127.0.0.1:9000/"})
    assert config["PUBLIC_URL"] == "http://127.0.0.1:9000"
    assert config["GITHUB_URL"] == "http://127.0.0.1:9000/github"
    assert config["GITHUB_REDIRECT_URI"] == "http://127.0.0.1:9000/auth/v1/callback"
    assert config["REFRESH_TOKEN_REUSE_INTERVAL"] == 10


def test_flow_state_expiry_has_a_floor():
    assert load({"FLOW_STATE_EXPIRY": 10})["FLOW_STATE_EXPIRY"] == 300
    assert load({"FLOW_STATE_EXPIRY": 900})["FLOW_STATE_EXPIRY"] == 900


def test_env_strings_are_converted():
    env = {"EMULATOR_JWT_EXP": "1", "EMULATOR_MAILER_AUTOCONFIRM": "true", "OTHER": "x",
           "EMULATOR_UNKNOWN": "y"}
    config = load(from_environ(env))
    assert config["JWT_EXP"] == 1 and config["MAILER_AUTOCONFIRM"] is True


def test_bad_alg():
    with pytest.raises(ValueError, match="JWT_ALG"):
        load({"JWT_ALG": "RS256"})


def test_providers_are_normalised():
    assert load({"PROVIDERS": " GitHub,google,, github"})["PROVIDERS"] == ("github", "google")


def test_unknown_provider_fails_fast():
    with pytest.raises(ValueError, match="unknown provider"):
        load({"PROVIDERS": "github,myspace"})


def test_manual_linking_is_off_by_default_like_the_real_server():
    assert load()["MANUAL_LINKING"] is False
    assert load(from_environ({"EMULATOR_MANUAL_LINKING": "true"}))["MANUAL_LINKING"] is True


def test_token_rate_limit_defaults_match_the_real_server():
    config = load()
    assert config["RATE_LIMIT_TOKEN_REFRESH"] == 150
    assert config["RATE_LIMIT_HEADER"] is None
    assert config["SB_FORWARDED_FOR"] is False


def test_token_rate_limit_from_the_environment():
    config = load(from_environ({"EMULATOR_RATE_LIMIT_TOKEN_REFRESH": "600",
                                "EMULATOR_RATE_LIMIT_HEADER": " X-Real-IP ",
                                "EMULATOR_SB_FORWARDED_FOR": "true"}))
    assert config["RATE_LIMIT_TOKEN_REFRESH"] == 600
    assert config["RATE_LIMIT_HEADER"] == "X-Real-IP"
    assert config["SB_FORWARDED_FOR"] is True


def test_blank_rate_limit_header_means_none():
    assert load(from_environ({"EMULATOR_RATE_LIMIT_HEADER": " "}))["RATE_LIMIT_HEADER"] is None


@pytest.mark.parametrize("value", [0, -5, "0"])
def test_token_rate_limit_must_be_positive(value):
    with pytest.raises(ValueError, match="RATE_LIMIT_TOKEN_REFRESH must be a positive"):
        load({"RATE_LIMIT_TOKEN_REFRESH": value})


def test_whole_number_settings_name_the_key():
    with pytest.raises(ValueError, match="RATE_LIMIT_TOKEN_REFRESH must be a whole number"):
        load(from_environ({"EMULATOR_RATE_LIMIT_TOKEN_REFRESH": "lots"}))


def test_opaque_api_keys_default_to_the_cli_values():
    config = load()
    assert config["PUBLISHABLE_API_KEY"] == "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"
    assert config["SECRET_API_KEY"] == "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"


@pytest.mark.parametrize(("key", "value"), [
    ("PUBLISHABLE_API_KEY", "sb_secret_swapped"),
    ("PUBLISHABLE_API_KEY", "sb_publishable_"),
    ("SECRET_API_KEY", "eyJhbGciOiJIUzI1NiJ9.e30.x"),
    ("SECRET_API_KEY", "  "),
])
def test_opaque_api_key_without_its_prefix_fails_fast(key, value):
    with pytest.raises(ValueError, match=key):
        load({key: value})


SECRET = "v1,whsec_" + "A" * 43 + "="  # 32 bytes of standard base64
HOOK = "HOOK_CUSTOM_ACCESS_TOKEN_"


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9999/hook", "http://localhost/hook",
                                 "http://[::1]:9999/hook", "https://hooks.example.com/token"])
def test_a_hook_on_https_or_local_http_is_accepted(uri):
    config = load(from_environ({f"EMULATOR_{HOOK}ENABLED": "true", f"EMULATOR_{HOOK}URI": uri,
                                f"EMULATOR_{HOOK}SECRETS": f"{SECRET}|{SECRET}"}))
    assert config[f"{HOOK}ENABLED"] is True and config[f"{HOOK}URI"] == uri


@pytest.mark.parametrize(("uri", "secrets", "message"), [
    ("http://hooks.example.com/token", SECRET, "only localhost, 127.0.0.1, and ::1"),
    ("http://192.168.1.10/token", SECRET, "only localhost, 127.0.0.1, and ::1"),
    ("pg-functions://postgres/public/custom_access_token_hook", SECRET, "no Postgres"),
    ("", SECRET, "must be an https:// URL"),
    ("https://hooks.example.com/token", "", "SECRETS is required"),
    ("https://hooks.example.com/token", "whsec_" + "A" * 44, "invalid secret format"),
    ("https://hooks.example.com/token", "v1,whsec_short", "invalid secret format"),
    ("https://hooks.example.com/token", "v1,whsec_" + "A" * 33, "invalid secret format"),
])
def test_a_hook_the_real_server_would_refuse_or_fail_on_is_refused_at_start(uri, secrets,
                                                                            message):
    with pytest.raises(ValueError, match=message):
        load({f"{HOOK}ENABLED": True, f"{HOOK}URI": uri, f"{HOOK}SECRETS": secrets})


def test_the_hook_is_off_by_default_and_its_transport_is_python_only():
    assert load()[f"{HOOK}ENABLED"] is False
    assert "HOOK_TRANSPORT" not in from_environ({"EMULATOR_HOOK_TRANSPORT": "x"})
