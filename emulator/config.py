"""Emulator configuration: defaults, normalisation and the EMULATOR_* environment."""

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from . import hooks, keys
from .users import parse_go_duration

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
    # GOTRUE_PASSKEY_* and GOTRUE_WEBAUTHN_*: passkeys off; when on, the relying party's id (a
    # host name), display name and origins (a comma list) are required. Challenges last five
    # minutes (seconds or a Go duration); authentication options are limited to
    # RATE_LIMIT_PASSKEY requests per five minutes (burst 30).
    "PASSKEY_ENABLED": False,
    "PASSKEY_MAX_PASSKEYS_PER_USER": 10,
    "WEBAUTHN_RP_ID": "",
    "WEBAUTHN_RP_DISPLAY_NAME": "",
    "WEBAUTHN_RP_ORIGINS": "",
    "WEBAUTHN_CHALLENGE_EXPIRY_DURATION": "5m",
    "RATE_LIMIT_PASSKEY": 30,
    # The custom access token hook (GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN_*); see hooks.py.
    "HOOK_CUSTOM_ACCESS_TOKEN_ENABLED": False,
    "HOOK_CUSTOM_ACCESS_TOKEN_URI": "",
    "HOOK_CUSTOM_ACCESS_TOKEN_SECRETS": "",
    "HOOK_TRANSPORT": None,  # Python only: an httpx transport for the hook calls (benchmarks)
    "CLOCK": time.time,
}
PYTHON_ONLY = {"CLOCK", "HOOK_TRANSPORT"}

INT_KEYS = {"JWT_EXP", "FLOW_STATE_EXPIRY", "REFRESH_TOKEN_REUSE_INTERVAL",
            "RATE_LIMIT_TOKEN_REFRESH", "MFA_MAX_ENROLLED_FACTORS", "MFA_MAX_VERIFIED_FACTORS",
            "MFA_CHALLENGE_EXPIRY_DURATION", "MFA_FACTOR_EXPIRY_DURATION",
            "MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY", "PASSKEY_MAX_PASSKEYS_PER_USER",
            "RATE_LIMIT_PASSKEY"}
BOOL_KEYS = {"DISABLE_SIGNUP", "MAILER_AUTOCONFIRM", "REFRESH_TOKEN_ROTATION_ENABLED",
             "MANUAL_LINKING", "SB_FORWARDED_FOR", "MFA_TOTP_ENROLL_ENABLED",
             "MFA_TOTP_VERIFY_ENABLED", "PASSKEY_ENABLED", "HOOK_CUSTOM_ACCESS_TOKEN_ENABLED"}
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
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
            "PROVIDERS": "github,gitlab,google", "MANUAL_LINKING": True,
            **passkeys_for_app(app_url)}


def passkeys_for_app(app_url: str) -> dict[str, Any]:
    """Passkeys on for the app's origin, its host as the relying party; off when the app is
    reached by an IP address, which WebAuthn refuses as an RP ID."""
    host = (urlsplit(app_url).hostname or "").lower()
    if not HOST_NAME.fullmatch(host) or host.replace(".", "").isdigit():
        return {"PASSKEY_ENABLED": False}
    return {"PASSKEY_ENABLED": True, "WEBAUTHN_RP_ID": host,
            "WEBAUTHN_RP_DISPLAY_NAME": "Flask + Supabase Auth", "WEBAUTHN_RP_ORIGINS": app_url}


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


def seconds(key: str, value: Any) -> float:
    """A duration given as a number of seconds or a Go duration string ("5m", "90s")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except ValueError as error:
        raise ValueError(f"{key} must be a number of seconds or a duration like 5m, "
                         f"not {value!r}") from error


def check_passkeys(config: dict[str, Any]) -> None:
    """Normalise the passkey settings; with passkeys on, fail fast on a relying party that
    WebAuthn would refuse (the real server only logs a warning, then fails every request)."""
    origins = config["WEBAUTHN_RP_ORIGINS"]
    names = origins.split(",") if isinstance(origins, str) else origins
    config["WEBAUTHN_RP_ORIGINS"] = tuple(n.strip().rstrip("/") for n in names if n.strip())
    config["WEBAUTHN_RP_ID"] = (config["WEBAUTHN_RP_ID"] or "").strip().lower()
    config["WEBAUTHN_RP_DISPLAY_NAME"] = (config["WEBAUTHN_RP_DISPLAY_NAME"] or "").strip()
    config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"] = seconds(
        "WEBAUTHN_CHALLENGE_EXPIRY_DURATION", config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"])
    if config["RATE_LIMIT_PASSKEY"] <= 0:
        raise ValueError("RATE_LIMIT_PASSKEY must be a positive number of requests per "
                         f"5 minutes, not {config['RATE_LIMIT_PASSKEY']}")
    if not config["PASSKEY_ENABLED"]:
        return
    for key in ("WEBAUTHN_RP_ID", "WEBAUTHN_RP_DISPLAY_NAME", "WEBAUTHN_RP_ORIGINS"):
        if not config[key]:
            raise ValueError(f"{key} is required when PASSKEY_ENABLED is on")
    rp_id = config["WEBAUTHN_RP_ID"]
    if not HOST_NAME.fullmatch(rp_id) or rp_id.replace(".", "").isdigit() or ":" in rp_id:
        raise ValueError(f"WEBAUTHN_RP_ID must be a host name such as localhost or "
                         f"example.com (WebAuthn refuses IP addresses), not {rp_id!r}")
    for origin in config["WEBAUTHN_RP_ORIGINS"]:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname or \
                parts.path or parts.query:
            raise ValueError(f"WEBAUTHN_RP_ORIGINS: {origin!r} is not an origin like "
                             "https://example.com or http://localhost:5000")
    if config["WEBAUTHN_CHALLENGE_EXPIRY_DURATION"] <= 0:
        raise ValueError("WEBAUTHN_CHALLENGE_EXPIRY_DURATION must be positive")


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
    check_passkeys(config)
    check_api_keys(config)
    hooks.check_config(config)
    config["GITHUB_REDIRECT_URI"] = (
        config["GITHUB_REDIRECT_URI"] or config["PUBLIC_URL"] + "/auth/v1/callback"
    )
    return config


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Map ``EMULATOR_<KEY>`` environment variables to config keys (Python-only ones excluded)."""
    prefix = "EMULATOR_"
    return {
        name[len(prefix):]: value
        for name, value in environ.items()
        if name.startswith(prefix) and name[len(prefix):] in DEFAULTS
        and name[len(prefix):] not in PYTHON_ONLY
    }
