"""``make dev`` and ``make emulator`` (run through scripts/dev).

make dev       the app in debug mode on http://localhost:APP_PORT, on the Supabase that
               SUPABASE_URL names, else on the local emulator, started on EMULATOR_PORT
make emulator  only that emulator, with the same settings (``python -m emulator --app-url``)

APP_PORT (5000), EMULATOR_PORT (54321), SUPABASE_URL and SITE_URL are read from the environment,
then from .env (unless FLASK_SKIP_DOTENV=1, as for Flask). Every decision is said in one line;
every reason to stop names what to change.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
PORTS = {"APP_PORT": 5000, "EMULATOR_PORT": 54321}
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
READY_SECONDS = 20  # the emulator's start, on a slow machine
APP_HOST = "127.0.0.1"  # loopback only; http://localhost:PORT reaches it (see port_in_use)


class Stop(Exception):
    """make dev cannot go on; the message says why and what to change."""


class Settings:
    """The environment over .env: the person's shell wins, as python-dotenv lets it."""

    def __init__(self, environ: dict[str, str], env_file: Path) -> None:
        # Read exactly when Flask's CLI reads it (FLASK_SKIP_DOTENV=1 turns both off).
        skip = environ.get("FLASK_SKIP_DOTENV", "").lower() in ("1", "true", "yes")
        values = dotenv_values(env_file) if env_file.is_file() and not skip else {}
        self.file = {name: value.strip() for name, value in values.items() if value}
        self.environ = {name: value.strip() for name, value in environ.items() if value.strip()}

    def get(self, name: str) -> str | None:
        """The setting's value, or None when neither the environment nor .env sets it."""
        return self.environ.get(name) or self.file.get(name) or None

    def source(self, name: str) -> str:
        """Where the setting came from, for the reason line."""
        return "the environment" if name in self.environ else ".env"

    def port(self, name: str) -> int:
        """APP_PORT or EMULATOR_PORT, checked."""
        raw = self.get(name)
        if raw is None:
            return PORTS[name]
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise Stop(f"{name}={raw!r} (in {self.source(name)}) is not a port number; "
                       f"use a whole number from 1 to 65535, e.g. {name}={PORTS[name]}.")
        return int(raw)


@dataclass
class Supabase:
    """Which Supabase the app uses and why; for the emulator, its --print-env lines."""

    url: str
    reason: str
    emulator: dict[str, str] | None = None  # the app's settings for the emulator at url
    start: bool = False  # start that emulator first


def listening(host: str, port: int) -> bool:
    """Whether a program accepts connections at host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            return probe.connect_ex((host, port)) == 0
    except OSError:  # e.g. no IPv6 on this machine
        return False


def port_in_use(port: int) -> bool:
    """Whether a program listens on the port at 127.0.0.1 or at [::1]: a browser may try
    localhost's IPv6 address first, and would then reach that program instead."""
    return listening("127.0.0.1", port) or listening("::1", port)


def busy(name: str, port: int, what: str, target: str) -> Stop:
    """The message for a port another program holds."""
    other = port + 1 if port < 65535 else PORTS[name]
    return Stop(f"Port {port} ({name}) is in use by another program, so {what} cannot start "
                f"there. Stop that program, or pick another port: `{name}={other} make "
                f"{target}`, or {name}={other} in .env.")


def is_emulator(printed: dict[str, str]) -> bool:
    """Whether this project's emulator answers at the address ``printed`` gives, by its health
    answer (the gateway wants the project key even there, as Supabase's does)."""
    try:
        answer = httpx.get(f"{printed['SUPABASE_URL']}/auth/v1/health", timeout=2,
                           headers={"apikey": printed["SUPABASE_KEY"]}).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(answer, dict) and str(answer.get("version", "")).endswith("-emulator")


def choose_supabase(settings: Settings, emulator_port: int, site_url: str) -> Supabase:
    """The project SUPABASE_URL names; a Supabase already running where it points; else the
    local emulator, started where SUPABASE_URL points or on EMULATOR_PORT."""
    url = (settings.get("SUPABASE_URL") or "").rstrip("/")
    if not url:
        printed = emulator_env(emulator_port, site_url)
        if is_emulator(printed):
            return Supabase(printed["SUPABASE_URL"], "no SUPABASE_URL is set, and the emulator "
                            f"already runs on EMULATOR_PORT {emulator_port} (`make emulator`)",
                            printed)
        return Supabase(printed["SUPABASE_URL"], "no SUPABASE_URL is set in the environment "
                        "or .env", printed, start=True)
    where = settings.source("SUPABASE_URL")
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        return Supabase(url, f"SUPABASE_URL is set in {where}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    printed = emulator_env(port, site_url)
    if not listening(parts.hostname, port) and not listening("127.0.0.1", port):
        return Supabase(printed["SUPABASE_URL"], f"SUPABASE_URL in {where} ({url}) points at "
                        "this machine, where nothing answers, so make dev starts the emulator "
                        "there", printed, start=True)
    if is_emulator(printed):
        return Supabase(printed["SUPABASE_URL"], f"SUPABASE_URL in {where} points at it",
                        printed)
    return Supabase(url, f"SUPABASE_URL in {where} points at this machine, where it answers")


def emulator_command(port: int, site_url: str, *extra: str) -> list[str]:
    """The emulator of `make dev` and `make emulator` alike."""
    return [sys.executable, "-m", "emulator", "--port", str(port), "--app-url", site_url, *extra]


def emulator_env(port: int, site_url: str) -> dict[str, str]:
    """The app's settings for that emulator (its --print-env lines)."""
    printed = subprocess.run(emulator_command(port, site_url, "--print-env"), cwd=ROOT,  # noqa: S603
                             capture_output=True, text=True, check=True, timeout=30).stdout
    return dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)


def start_emulator(printed: dict[str, str], site_url: str) -> subprocess.Popen:
    """Start the emulator and return once it answers; stop with the reason otherwise."""
    port = urlsplit(printed["SUPABASE_URL"]).port
    if port_in_use(port):
        raise busy("EMULATOR_PORT", port, "the emulator", "dev")
    process = subprocess.Popen(emulator_command(port, site_url), cwd=ROOT)  # noqa: S603
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Stop(f"The emulator stopped (exit code {process.returncode}) before it answered "
                       f"on port {port}; its message is above. If another program holds port "
                       f"{port}, pick another with EMULATOR_PORT.")
        if is_emulator(printed):
            return process
        time.sleep(0.2)
    stop(process)
    raise Stop(f"The emulator did not answer on port {port} within {READY_SECONDS} s.")


def stop(process: subprocess.Popen | None) -> None:
    """Terminate a process we started, then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def app_environment(settings: Settings, site_url: str, supabase: Supabase) -> dict[str, str]:
    """The app's environment: SITE_URL, and for the emulator its address and key, with the
    person's own AUTH_PROVIDERS and GITHUB_API_URL kept over the emulator's."""
    environment = dict(os.environ, SITE_URL=site_url)
    printed = supabase.emulator
    if printed is not None:
        environment.update(SUPABASE_URL=printed["SUPABASE_URL"],
                           SUPABASE_KEY=printed["SUPABASE_KEY"])
        for name in ("AUTH_PROVIDERS", "GITHUB_API_URL"):
            environment[name] = settings.get(name) or printed[name]
    return environment


def is_ip_address(host: str) -> bool:
    """127.0.0.1, ::1 and the like, as opposed to a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def site_url_for(settings: Settings, app_port: int) -> str:
    """SITE_URL as set, or http://localhost:APP_PORT; a local one must be on APP_PORT, since
    debug runs send every request to SITE_URL's address."""
    default = f"http://localhost:{app_port}"
    site_url = (settings.get("SITE_URL") or default).rstrip("/")
    parts = urlsplit(site_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.hostname in LOOPBACK and port != app_port:
        raise Stop(f"SITE_URL={site_url} (in {settings.source('SITE_URL')}) is not on APP_PORT "
                   f"{app_port}: set SITE_URL={default}, or leave it empty.")
    if is_ip_address(parts.hostname or ""):
        print(f"Note: SITE_URL={site_url} is an IP address, where browsers refuse passkeys; "
              f"{default} works.", flush=True)
    return site_url


def dev(settings: Settings) -> int:
    """Check the ports, pick the Supabase, start the emulator if needed, run the app."""
    app_port = settings.port("APP_PORT")
    emulator_port = settings.port("EMULATOR_PORT")
    if port_in_use(app_port):
        raise busy("APP_PORT", app_port, "the app", "dev")
    site_url = site_url_for(settings, app_port)
    supabase = choose_supabase(settings, emulator_port, site_url)
    emulator = None
    try:
        if supabase.start:
            emulator = start_emulator(supabase.emulator, site_url)
        if supabase.emulator is not None:
            print(f"Using the local Supabase Auth emulator at {supabase.url}, because "
                  f"{supabase.reason} (dashboard: {supabase.url}/dashboard).", flush=True)
        else:
            print(f"Using the Supabase at {supabase.url}, because {supabase.reason}.", flush=True)
        print(f"The app: {site_url} (APP_PORT {app_port}); Ctrl-C stops it.", flush=True)
        app = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "run", "--debug",  # noqa: S603
                                "--host", APP_HOST, "--port", str(app_port)],
                               cwd=ROOT, env=app_environment(settings, site_url, supabase))
        try:
            return app.wait()
        finally:
            stop(app)
    finally:
        stop(emulator)


def emulator_only(settings: Settings) -> int:
    """`make emulator`: the emulator of `make dev`, in the foreground."""
    app_port = settings.port("APP_PORT")
    port = settings.port("EMULATOR_PORT")
    if port_in_use(port):
        raise busy("EMULATOR_PORT", port, "the emulator", "emulator")
    site_url = site_url_for(settings, app_port)
    return subprocess.call(emulator_command(port, site_url), cwd=ROOT)  # noqa: S603


def main(argv: list[str]) -> int:
    """scripts/dev [emulator]"""
    # Ctrl-C reaches the whole process group; a plain kill reaches only us: stop the others.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings(dict(os.environ), ROOT / ".env")
    target = "emulator" if argv[:1] == ["emulator"] else "dev"
    try:
        return emulator_only(settings) if target == "emulator" else dev(settings)
    except Stop as stopped:
        print(f"make {target}: {stopped}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
