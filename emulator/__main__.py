"""Command line: ``python -m emulator [--host] [--port] [--app-url URL] [--reset] [--seed FILE]
[--print-env]``,
``python -m emulator keys list|rotate|revoke KID`` (see signing_keys_cli.py) and
``python -m emulator export|import FILE`` (see datafile_cli.py)."""

import argparse
import ipaddress
import os
import sys

from . import close_app, create_app, datafile_cli, db, ratelimit, signing_keys_cli
from .config import DEFAULTS, PYTHON_ONLY, for_app, from_environ, load
from .serve import serve_forever
from .tokens import api_key

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 54321


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command-line options."""
    settings = ", ".join(key for key in DEFAULTS if key not in PYTHON_ONLY)
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Supabase Auth emulator + GitHub stand-in",
        epilog=f"Settings come from EMULATOR_<KEY> variables (see emulator/README.md): {settings}. "
               "POST /auth/v1/token is rate-limited by default (RATE_LIMIT_TOKEN_REFRESH=150 "
               f"per 5 minutes, burst {ratelimit.BURST}, per client address). "
               "Signing keys: python -m emulator keys list|rotate|revoke KID.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--app-url", metavar="URL",
                        help="serve the app at URL as `make dev` does: its SITE_URL and "
                             "redirect allow-list, GitHub, GitLab and Google, manual linking")
    parser.add_argument("--reset", action="store_true", help="wipe the database first")
    parser.add_argument("--seed", metavar="FILE",
                        help="import this data file at start and on POST /emulator/v1/reset")
    parser.add_argument("--print-env", action="store_true",
                        help="print SUPABASE_URL / keys for the app and exit")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    """True for localhost names and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_for(args: argparse.Namespace) -> dict:
    """Config from EMULATOR_* variables, with PUBLIC_URL following host and port."""
    overrides = {**(for_app(args.app_url) if args.app_url else {}), **from_environ(os.environ)}
    if args.seed:
        overrides["SEED"] = args.seed
    public_host = args.host if is_loopback(args.host) else DEFAULT_HOST
    overrides.setdefault("PUBLIC_URL", f"http://{public_host}:{args.port}")
    return load(overrides)


def env_lines(config: dict) -> list[str]:
    """The lines the app's .env needs: the publishable key as SUPABASE_KEY, then the others."""
    secret = config["JWT_SECRET"]
    return [f"SUPABASE_URL={config['PUBLIC_URL']}",
            f"SUPABASE_KEY={config['PUBLISHABLE_API_KEY']}",
            f"SUPABASE_SECRET_KEY={config['SECRET_API_KEY']}",
            f"SUPABASE_ANON_KEY={api_key('anon', secret)}",
            f"SUPABASE_SERVICE_ROLE_KEY={api_key('service_role', secret)}"]


def app_lines(config: dict) -> list[str]:
    """With --app-url, the rest of that app's .env: its address, the providers it can offer
    and where the GitHub stand-in's API is."""
    return [f"SITE_URL={config['SITE_URL']}",
            f"AUTH_PROVIDERS={','.join(config['PROVIDERS'])}",
            f"GITHUB_API_URL={config['GITHUB_URL']}/api/v3"]


def limit_line(config: dict) -> str:
    """How POST /token is rate-limited, for the banner."""
    key = "client address"
    if config["RATE_LIMIT_HEADER"]:
        key = f"{config['RATE_LIMIT_HEADER']} header, else client address"
    if config["SB_FORWARDED_FOR"]:
        key = "Sb-Forwarded-For IP, else " + key
    return (f"POST /auth/v1/token limit: {config['RATE_LIMIT_TOKEN_REFRESH']} per 5 minutes, "
            f"burst {ratelimit.BURST}, per {key} (EMULATOR_RATE_LIMIT_TOKEN_REFRESH)")


def warn_exposed(host: str) -> None:
    """Say loudly that a non-loopback bind exposes an insecure server."""
    print("!" * 72, file=sys.stderr)
    print(f"WARNING: binding to {host}: the emulator has NO real security and uses\n"
          "PUBLIC dev keys. Anyone who can reach this port can sign in as anyone and\n"
          "administer all users. Use only on a trusted, isolated network.", file=sys.stderr)
    print("!" * 72, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Print env and exit, manage signing keys, or reset and serve until interrupted."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return signing_keys_cli.main(argv[1:])
    if argv[:1] in (["export"], ["import"]):
        return datafile_cli.main(argv)
    args = parse_args(argv)
    config = settings_for(args)
    if args.reset:
        db.reset(config["DATABASE"])
        print(f"Reset {config['DATABASE']}", file=sys.stderr)
    lines = env_lines(config) + (app_lines(config) if args.app_url else [])
    if args.print_env:
        print("\n".join(lines))
        return 0
    if not is_loopback(args.host):
        warn_exposed(args.host)
    app = create_app(config)
    print(f"Supabase Auth emulator on {config['PUBLIC_URL']} (API {config['PUBLIC_URL']}/auth/v1)")
    print(f"Home: {config['PUBLIC_URL']}/   Dashboard: {config['PUBLIC_URL']}/dashboard   "
          f"GitHub stand-in: {config['GITHUB_URL']}")
    print(limit_line(config))
    print("\n".join(lines), flush=True)
    try:
        serve_forever(args.host, args.port, app)
    finally:
        close_app(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
