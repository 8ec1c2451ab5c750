"""Settings: safe defaults, then the environment (or a test config), then a fail-fast check."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import jwt
from flask import Flask

log = logging.getLogger(__name__)

DEFAULTS = {
    "SUPABASE_URL": None,
    "SUPABASE_KEY": None,
    "SUPABASE_JWT_SECRET": None,  # only for projects that still sign with HS256
    "SUPABASE_JWT_ISSUER": None,  # default: SUPABASE_URL + "/auth/v1", as hosted projects sign
    "SUPABASE_TIMEOUT": 5.0,  # seconds a worker may wait on Supabase for one call
    "SECRET_KEY": None,
    "SITE_URL": None,
    "APP_PORT": 5000,  # `make dev`'s port; in debug without SITE_URL: http://localhost:APP_PORT
    "AUTH_PROVIDERS": "github",
    "AUTH_SCOPES": "",  # e.g. "github:read:user repo,gitlab:read_user"
    "AUTH_REVALIDATE_SECONDS": 60,
    # The access-token claim that holds a person's role (roles.py), a dotted path: the role the
    # team sets in app_metadata, or e.g. "user_role" when a custom access token hook adds it.
    "AUTH_ROLE_CLAIM": "app_metadata.role",
    # Every signed-in page needs two-factor authentication (aal2); people without a factor are
    # asked to set one up first. Off: only views marked @aal2_required need it.
    "AUTH_REQUIRE_MFA": False,
    # Linking or unlinking a sign-in method, setting up the first authenticator app and signing
    # out other devices need a sign-in (or a two-factor code) this recent; else sign in again.
    "AUTH_RECENT_SIGN_IN_SECONDS": 600,
    "GITHUB_API_URL": "https://api.github.com",  # GitHub Enterprise: https://<host>/api/v3
    # Sign in with a passkey, and passkeys on /account (passkeys.py). None: as the Supabase
    # project's /settings says (passkeys_enabled); true/false overrides it.
    "PASSKEYS_ENABLED": None,
    # Where the app keeps what its workers share on disk (instance_data.py); None: Flask's
    # instance folder beside app.py.
    "INSTANCE_PATH": None,
    # Proxies in front of the app that set X-Forwarded-For/-Proto/-Host (0: none, trust nothing).
    "TRUSTED_PROXY_COUNT": 0,
    # Host names the app answers to (Flask's TRUSTED_HOSTS), e.g. "app.example.com"; None: any.
    "TRUSTED_HOSTS": None,
    # Strict-Transport-Security max-age when SITE_URL is https (0: no header). One year.
    "HSTS_MAX_AGE": 31_536_000,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "PERMANENT_SESSION_LIFETIME": timedelta(days=14),
    # The cookie is rewritten when tokens are refreshed (at least every AUTH_REVALIDATE_SECONDS
    # of activity), which also extends it; re-sending it on every response would only cost time.
    "SESSION_REFRESH_EACH_REQUEST": False,
    # A CSRF token lives as long as the session: a sign-out button left open for an hour works.
    "WTF_CSRF_TIME_LIMIT": None,
}


def boolean(raw: str) -> bool:
    """An on/off setting from the environment: true/false, 1/0, yes/no or on/off."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


def secret_keys(raw: str) -> list[str]:
    """Old SECRET_KEYs, comma-separated: cookies they sealed are still read (key rotation)."""
    return [part.strip() for part in raw.split(",") if part.strip()]


# Environment variable -> how to read it. Names follow Supabase's docs where they have one.
ENVIRONMENT = {
    "SUPABASE_URL": str,
    "SUPABASE_KEY": str,
    "SUPABASE_JWT_SECRET": str,
    "SUPABASE_JWT_ISSUER": str,
    "SUPABASE_TIMEOUT": float,
    "SECRET_KEY": str,
    "SECRET_KEY_FALLBACKS": secret_keys,
    "SITE_URL": str,
    "APP_PORT": int,
    "AUTH_PROVIDERS": str,
    "AUTH_SCOPES": str,
    "AUTH_REVALIDATE_SECONDS": int,
    "AUTH_ROLE_CLAIM": str,
    "AUTH_REQUIRE_MFA": boolean,
    "AUTH_RECENT_SIGN_IN_SECONDS": int,
    "GITHUB_API_URL": str,
    "PASSKEYS_ENABLED": boolean,
    "INSTANCE_PATH": str,
    "TRUSTED_PROXY_COUNT": int,
    "TRUSTED_HOSTS": str,
    "HSTS_MAX_AGE": int,
}

# Placeholders seen in tutorials and .env files; a key this guessable signs anyone's cookie.
WEAK_SECRETS = {"dev", "secret", "changeme", "change-me", "your-secret-key", "supersecret"}
# The local emulator and `supabase start` listen here and sign with public demo keys
# (JWTs with "iss": "supabase-demo", and a published JWT secret): fine on a laptop only.
DEMO_PORT = 54321
DEMO_ISSUER = "supabase-demo"
DEMO_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105
# The fixed keys `supabase start` prints (and the emulator uses): public, so never production's.
DEMO_KEYS = frozenset({
    "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH",
    "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz",
})
PUBLISHABLE_PREFIX = "sb_publishable_"
SECRET_PREFIX = "sb_secret_"  # noqa: S105 - a key's prefix, not a key


class ConfigError(RuntimeError):
    """The app cannot start safely with these settings; the message says what to change."""


def load(app: Flask, test_config: dict | None) -> None:
    """Apply defaults, then the test config or the environment, then derived settings."""
    app.config.from_mapping(DEFAULTS)
    if test_config is not None:
        app.config.from_mapping(test_config)
    else:
        app.config.from_mapping(_from_environment())
    _derive(app)


def check(app: Flask) -> None:
    """Refuse to start on missing or unsafe settings, naming each one.

    Debug mode relaxes only what a laptop needs (no SECRET_KEY or SITE_URL: debug makes them;
    the emulator's URL and public demo keys), and only while SITE_URL and SUPABASE_URL are
    both on this machine. A secret Supabase key is refused always.
    """
    problems = [f"{name} is not set" for name in ("SUPABASE_URL", "SUPABASE_KEY")
                if not (app.config[name] or "").strip()]
    problems += _url_problems(app, "SUPABASE_URL") + _url_problems(app, "SITE_URL")
    problems += _role_claim_problems(app.config["AUTH_ROLE_CLAIM"])
    if app.config["TRUSTED_PROXY_COUNT"] < 0:
        problems.append("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies")
    if app.config["AUTH_RECENT_SIGN_IN_SECONDS"] <= 0:
        problems.append("AUTH_RECENT_SIGN_IN_SECONDS must be a positive number of seconds")
    local = app.debug and all(_is_loopback(app.config[name])
                              for name in ("SITE_URL", "SUPABASE_URL"))
    if local:  # debug made a random SECRET_KEY if none was set: a weak one is still refused
        problems += _secret_key_strength(app.config["SECRET_KEY"] or "")
        problems += _secret_key_problems(app.config["SUPABASE_KEY"] or "")
    else:
        problems += _production_problems(app)
    if not local and not app.testing:  # tests run against the emulator on purpose
        problems += _demo_problems(app)
    if problems:
        debug = (" (FLASK_DEBUG relaxes these checks only while SITE_URL and SUPABASE_URL are "
                 "on this machine)" if app.debug and not local else "")
        raise ConfigError(
            "Cannot start: " + "; ".join(problems) + f"{debug}. Set them in the environment or "
            "in .env (see .env.example); `make dev` runs the app on the local emulator."
        )


def _is_loopback(url: str | None) -> bool:
    """Whether a URL names this machine (localhost, 127.0.0.0/8 or ::1)."""
    host = urlsplit(url or "").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _role_claim_problems(path: str) -> list[str]:
    parts = (path or "").split(".")
    if not all(part.strip() for part in parts):
        return [f"AUTH_ROLE_CLAIM={path!r} is not a claim name or a dotted path to one"]
    if parts[0] == "user_metadata":
        return ["AUTH_ROLE_CLAIM must not point into user_metadata, which people can edit "
                "themselves; use app_metadata or a claim a custom access token hook adds"]
    return []


def _from_environment() -> dict:
    values = {}
    for name, kind in ENVIRONMENT.items():
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            values[name] = kind(raw)
        except ValueError as error:
            raise ConfigError(f"Cannot start: {name}={raw!r} is not a valid {kind.__name__}") \
                from error
    return values


def _derive(app: Flask) -> None:
    if app.config["INSTANCE_PATH"]:
        app.instance_path = app.config["INSTANCE_PATH"]
    if app.debug and not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _dev_secret_key(app)
    if app.debug and not app.config["SITE_URL"]:
        # A host name, not 127.0.0.1: browsers refuse WebAuthn (passkeys) on IP addresses.
        app.config["SITE_URL"] = f"http://localhost:{app.config['APP_PORT']}"
    site_url = (app.config["SITE_URL"] or "").rstrip("/")
    app.config["SITE_URL"] = site_url
    if site_url.startswith("https://"):
        # __Host-: the browser keeps it only if Secure, for Path=/ and without Domain, so no
        # sibling subdomain or plain-http page can set or shadow it.
        app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session",
                          SESSION_COOKIE_PATH="/", SESSION_COOKIE_DOMAIN=None)
    else:
        app.config["SESSION_COOKIE_SECURE"] = False
    if isinstance(app.config["TRUSTED_HOSTS"], str):
        app.config["TRUSTED_HOSTS"] = _split(app.config["TRUSTED_HOSTS"]) or None
    app.config["AUTH_PROVIDERS"] = _split(app.config["AUTH_PROVIDERS"])
    app.config["AUTH_SCOPES"] = dict(
        entry.split(":", 1) for entry in _split(app.config["AUTH_SCOPES"]) if ":" in entry
    )


def _dev_secret_key(app: Flask) -> str:
    """Debug only: a random key kept in the instance folder, so reloads keep people signed in."""
    path = os.path.join(app.instance_path, "dev_secret_key")
    try:
        with open(path, encoding="ascii") as existing:
            return existing.read().strip()
    except FileNotFoundError:
        pass
    os.makedirs(app.instance_path, exist_ok=True)
    key = secrets.token_hex(32)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
              encoding="ascii") as created:
        created.write(key)
    log.warning("SECRET_KEY is not set; debug mode uses a random key kept in %s", path)
    return key


def _split(value: str | list) -> list[str]:
    if isinstance(value, list):
        return value
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def _url_problems(app: Flask, name: str) -> list[str]:
    value = app.config[name]
    if not value:
        return []
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{name}={value!r} is not an http(s) URL"]
    return []


def _production_problems(app: Flask) -> list[str]:
    problems = _secret_key_strength(app.config["SECRET_KEY"] or "")
    for name in ("SITE_URL", "SUPABASE_URL"):
        url = app.config[name]
        if url and urlsplit(url).scheme == "http" and not _is_loopback(url):
            problems.append(f"{name}={url!r} must use https outside localhost")
    if not app.config["SITE_URL"]:
        problems.append("SITE_URL is not set (the public address of this app)")
    return problems + _key_problems(app.config["SUPABASE_KEY"] or "")


KEY_ADVICE = "use the project's publishable key (Project Settings > API Keys)"


def _secret_key_strength(secret: str) -> list[str]:
    """SECRET_KEY signs (and keys the encryption of) every cookie: never a guessable one."""
    if not secret:
        return ["SECRET_KEY is not set"]
    if len(secret) < 32 or len(set(secret)) < 10 or secret.lower() in WEAK_SECRETS:
        return ["SECRET_KEY is too weak (use at least 32 random characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`)"]
    return []


def _key_problems(key: str) -> list[str]:
    """A browser-safe project key: the publishable key, or the legacy anon JWT."""
    if not key.strip() or key.startswith(PUBLISHABLE_PREFIX):
        return []  # an empty key is reported as not set
    secret = _secret_key_problems(key)
    if secret or _jwt_claims(key) is not None:
        return secret
    return [f"SUPABASE_KEY is neither a publishable key (sb_publishable_…) nor a legacy anon "
            f"JWT; {KEY_ADVICE}"]


def _secret_key_problems(key: str) -> list[str]:
    """A key that bypasses row-level security (sb_secret_…, a service_role or other non-anon
    JWT): refused in every mode, debug included."""
    if key.startswith(SECRET_PREFIX):
        return [f"SUPABASE_KEY is a secret key (sb_secret_…), which bypasses row-level security "
                f"and must never reach a web app's requests; {KEY_ADVICE}"]
    claims = _jwt_claims(key)
    if claims is not None and claims.get("role") != "anon":
        return [f"SUPABASE_KEY is a {claims.get('role')!r} JWT, not the anon key; {KEY_ADVICE}"]
    return []


def _jwt_claims(key: str) -> dict | None:
    try:
        return jwt.decode(key, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None


def _demo_problems(app: Flask) -> list[str]:
    problems = []
    url = urlsplit(app.config["SUPABASE_URL"] or "")
    if url.scheme == "http" and _is_loopback(url.geturl()) and url.port == DEMO_PORT:
        problems.append(f"SUPABASE_URL={app.config['SUPABASE_URL']!r} is the local emulator; "
                        "use your project's URL (Project Settings > API)")
    if _is_demo_key(app.config["SUPABASE_KEY"] or ""):
        problems.append("SUPABASE_KEY is the emulator's public demo key; use your project's "
                        "publishable key (Project Settings > API Keys)")
    if app.config["SUPABASE_JWT_SECRET"] == DEMO_JWT_SECRET:
        problems.append("SUPABASE_JWT_SECRET is the emulator's public demo secret")
    return problems


def _is_demo_key(key: str) -> bool:
    if key in DEMO_KEYS:
        return True
    claims = _jwt_claims(key)
    return claims is not None and claims.get("iss") == DEMO_ISSUER
