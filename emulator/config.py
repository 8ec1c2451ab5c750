"""Emulator configuration: defaults, normalisation and the EMULATOR_* environment."""

import time
from collections.abc import Iterable, Mapping
from typing import Any

from . import keys

DEFAULTS: dict[str, Any] = {
    "PUBLIC_URL": "http://127.0.0.1:54321",
    "SITE_URL": "http://127.0.0.1:5000",
    "URI_ALLOW_LIST": "http://127.0.0.1:5000/**,http://localhost:5000/**",
    "JWT_ALG": "ES256",
    "JWT_SECRET": keys.JWT_SECRET,
    "PUBLISHABLE_API_KEY": keys.PUBLISHABLE_KEY,
    "SECRET_API_KEY": keys.SECRET_KEY,  # not SECRET_KEY: Flask uses that name
    "JWT_EXP": 3600,
    "JWT_AUD": "authenticated",
    "JWT_DEFAULT_GROUP_NAME": "authenticated",
    "JWT_ADMIN_ROLES": "service_role,supabase_admin",
    "FLOW_STATE_EXPIRY": 300,
    "REFRESH_TOKEN_REUSE_INTERVAL": 10,
    "REFRESH_TOKEN_ROTATION_ENABLED": True,
    "DATABASE": ".emulator/auth.sqlite3",
    "SEED": None,  # a data file imported at start and again by POST /emulator/v1/reset
    "GITHUB_URL": None,
    "GITHUB_CLIENT_ID": "emulator-github-client-id",
    "GITHUB_CLIENT_SECRET": "emulator-github-client-secret",
    "GITHUB_REDIRECT_URI": None,
    "GITHUB_APP_NAME": "Supabase Auth Emulator",
    "GITHUB_AUTO_LOGIN": None,
    "AUTO_LOGIN": None,
    "PROVIDERS": "github",
    "MANUAL_LINKING": False,
    "DISABLE_SIGNUP": False,
    "MAILER_AUTOCONFIRM": False,
    "RATE_LIMIT_TOKEN_REFRESH": 150,
    "RATE_LIMIT_HEADER": None,
    "SB_FORWARDED_FOR": False,
    # GOTRUE_MFA_*: TOTP on (enrol and verify), 10 factors, 5-minute challenges and clean-up of
    # abandoned enrolments, challenge and verify each limited to 15 a minute (burst 30).
    "MFA_TOTP_ENROLL_ENABLED": True,
    "MFA_TOTP_VERIFY_ENABLED": True,
    "MFA_MAX_ENROLLED_FACTORS": 10,
    "MFA_MAX_VERIFIED_FACTORS": 10,
    "MFA_CHALLENGE_EXPIRY_DURATION": 300,
    "MFA_FACTOR_EXPIRY_DURATION": 300,
    "MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY": 15,
    "CLOCK": time.time,
}

INT_KEYS = {"JWT_EXP", "FLOW_STATE_EXPIRY", "REFRESH_TOKEN_REUSE_INTERVAL",
            "RATE_LIMIT_TOKEN_REFRESH", "MFA_MAX_ENROLLED_FACTORS", "MFA_MAX_VERIFIED_FACTORS",
            "MFA_CHALLENGE_EXPIRY_DURATION", "MFA_FACTOR_EXPIRY_DURATION",
            "MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY"}
BOOL_KEYS = {"DISABLE_SIGNUP", "MAILER_AUTOCONFIRM", "REFRESH_TOKEN_ROTATION_ENABLED",
             "MANUAL_LINKING", "SB_FORWARDED_FOR", "MFA_TOTP_ENROLL_ENABLED",
             "MFA_TOTP_VERIFY_ENABLED"}
MIN_MFA_EXPIRY = 300  # ApplyDefaults raises shorter challenge and factor expiries to this
MIN_FLOW_STATE_EXPIRY = 300
# The external providers of the real server's /settings (besides email, phone, anonymous).
KNOWN_PROVIDERS = (
    "apple", "azure", "bitbucket", "discord", "facebook", "snapchat", "figma", "fly", "github",
    "gitlab", "google", "keycloak", "kakao", "linkedin", "linkedin_oidc", "notion", "spotify",
    "slack", "slack_oidc", "workos", "twitch", "twitter", "zoom",
)


def for_app(app_url: str) -> dict[str, Any]:
    """What `make dev` and `make emulator` run (``python -m emulator --app-url``): the app at
    ``app_url`` as SITE_URL and on the redirect allow-list, three providers and manual linking,
    so that the sign-in and account pages show everything. EMULATOR_* variables still win."""
    app_url = app_url.rstrip("/")
    return {"SITE_URL": app_url, "URI_ALLOW_LIST": f"{app_url}/**",
            "PROVIDERS": "github,gitlab,google", "MANUAL_LINKING": True}


def to_bool(value: Any) -> bool:
    """Read a config flag given as a bool or as an env-style string."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def enabled_providers(value: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise PROVIDERS (a comma list or an iterable) to lower-case names, in order."""
    names = value.split(",") if isinstance(value, str) else value
    cleaned = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [name for name in cleaned if name not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(f"PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(KNOWN_PROVIDERS)}")
    return cleaned


def to_int(key: str, value: Any) -> int:
    """Read a whole-number setting given as an int or a string, naming the key on failure."""
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key} must be a whole number, not {value!r}") from error


def check_rate_limit(config: dict[str, Any]) -> None:
    """Fail fast on a /token rate limit that could never let a request through."""
    if config["RATE_LIMIT_TOKEN_REFRESH"] <= 0:
        raise ValueError("RATE_LIMIT_TOKEN_REFRESH must be a positive number of /token requests "
                         f"per 5 minutes, not {config['RATE_LIMIT_TOKEN_REFRESH']}")
    config["RATE_LIMIT_HEADER"] = (config["RATE_LIMIT_HEADER"] or "").strip() or None


def check_api_keys(config: dict[str, Any]) -> None:
    """Fail fast on an opaque API key without its generation's prefix."""
    prefixes = {"PUBLISHABLE_API_KEY": "sb_publishable_", "SECRET_API_KEY": "sb_secret_"}
    for key, prefix in prefixes.items():
        value = config[key] = str(config[key]).strip()
        if not value.startswith(prefix) or value == prefix:
            raise ValueError(f"{key} must look like {prefix}…, not {value!r}")


def check_mfa(config: dict[str, Any]) -> None:
    """Apply the real server's floors to the MFA expiries; refuse a limit that allows nothing."""
    for key in ("MFA_CHALLENGE_EXPIRY_DURATION", "MFA_FACTOR_EXPIRY_DURATION"):
        config[key] = max(config[key], MIN_MFA_EXPIRY)
    if config["MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY"] <= 0:
        raise ValueError("MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY must be a positive number of "
                         "requests per minute, not "
                         f"{config['MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY']}")


def load(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a complete, normalised config: defaults, then overrides, then derived values."""
    config = {**DEFAULTS, **(overrides or {})}
    for key in INT_KEYS:
        config[key] = to_int(key, config[key])
    for key in BOOL_KEYS:
        config[key] = to_bool(config[key])
    config["PUBLIC_URL"] = config["PUBLIC_URL"].rstrip("/")
    # Like the real server: a flow-state expiry below five minutes is raised to five minutes.
    config["FLOW_STATE_EXPIRY"] = max(config["FLOW_STATE_EXPIRY"], MIN_FLOW_STATE_EXPIRY)
    config["JWT_ALG"] = config["JWT_ALG"].upper()
    if config["JWT_ALG"] not in {"ES256", "HS256"}:
        raise ValueError(f"JWT_ALG must be ES256 or HS256, not {config['JWT_ALG']!r}")
    config["GITHUB_URL"] = (config["GITHUB_URL"] or config["PUBLIC_URL"] + "/github").rstrip("/")
    config["PROVIDERS"] = enabled_providers(config["PROVIDERS"])
    check_rate_limit(config)
    check_mfa(config)
    check_api_keys(config)
    config["GITHUB_REDIRECT_URI"] = (
        config["GITHUB_REDIRECT_URI"] or config["PUBLIC_URL"] + "/auth/v1/callback"
    )
    return config


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Map ``EMULATOR_<KEY>`` environment variables to config keys (CLOCK excluded)."""
    prefix = "EMULATOR_"
    return {
        name[len(prefix):]: value
        for name, value in environ.items()
        if name.startswith(prefix) and name[len(prefix):] in DEFAULTS and name != "EMULATOR_CLOCK"
    }
