"""Processes for end-to-end tests: the emulator and the app under gunicorn, on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Settings of the developer's own shell that must not reach the processes a test starts.
OWN_SETTINGS = ("SUPABASE_", "FLASK_", "AUTH_", "EMULATOR_")


@dataclass(frozen=True)
class Emulator:
    """A running ``python -m emulator``: its URL, anon key and process."""

    url: str
    anon_key: str
    process: subprocess.Popen


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 20) -> None:
    """Return once ``url`` answers; fail if ``process`` exits or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Terminate, then kill if it does not exit within ten seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without app or emulator settings, plus ``variables``."""
    kept = {name: value for name, value in os.environ.items()
            if not name.startswith(OWN_SETTINGS)}
    return {**kept, **variables}


@contextmanager
def emulator_process(site_url: str, database: Path, *, log: Path | None = None,
                     **settings: object) -> Iterator[Emulator]:
    """``python -m emulator`` on a free port for an app at ``site_url``.

    ``settings`` become ``EMULATOR_<NAME>`` variables; ``log`` receives its output (the
    werkzeug request log included).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = clean_environment(
        EMULATOR_DATABASE=str(database), EMULATOR_SITE_URL=site_url,
        EMULATOR_URI_ALLOW_LIST=f"{site_url}/**",
        **{f"EMULATOR_{name}": str(value) for name, value in settings.items()})
    process = _start([sys.executable, "-m", "emulator", "--port", str(port)], environment, log)
    try:
        wait_for(f"{url}/auth/v1/health", process)
        printed = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "emulator", "--print-env"], cwd=ROOT, env=environment,
            capture_output=True, text=True, check=True).stdout
        yield Emulator(url, re.search(r"SUPABASE_KEY=(\S+)", printed).group(1), process)
    finally:
        stop(process)


@contextmanager
def gunicorn_process(app_url: str, settings: dict, *, options: Sequence[str] = (),
                     log: Path | None = None) -> Iterator[subprocess.Popen]:
    """``gunicorn 'app:create_app(settings)'`` listening on ``app_url``, ready to answer."""
    command = [sys.executable, "-m", "gunicorn", "-b", app_url.removeprefix("http://"),
               *options, f"app:create_app({settings!r})"]
    process = _start(command, clean_environment(), log)
    try:
        wait_for(f"{app_url}/healthz", process)
        yield process
    finally:
        stop(process)


def _start(command: list[str], environment: dict[str, str], log: Path | None) -> subprocess.Popen:
    if log is None:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
