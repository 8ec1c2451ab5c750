"""`python -m emulator` as a real process: startup, health and a PKCE sign-in."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from tests.conformance.support import TIMEOUT, query_of, single

pytestmark = [pytest.mark.slow,
              pytest.mark.emulator_only(reason="starts the emulator's own command line")]
STARTUP_LIMIT = 20.0
ROOT = Path(__file__).resolve().parents[2]
APP = "http://127.0.0.1:5000/auth/callback"  # inside the emulator's default allow-list


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without EMULATOR_*/SUPABASE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EMULATOR_", "SUPABASE_", "FLASK_"))}
    return {**env, **extra}


def print_env(*args: str) -> dict[str, str]:
    """Run `python -m emulator --print-env` and parse its KEY=value lines."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "emulator", "--print-env", *args], env=clean_env(), cwd=ROOT,
        capture_output=True, text=True, timeout=20, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if line)


@pytest.fixture(scope="module")
def printed_env() -> dict[str, str]:
    return print_env()


def test_print_env_lines(printed_env):
    env = printed_env
    assert list(env) == ["SUPABASE_URL", "SUPABASE_KEY", "SUPABASE_SECRET_KEY",
                         "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY"]
    assert env["SUPABASE_URL"] == "http://127.0.0.1:54321"


def test_print_env_key_is_the_publishable_key(printed_env):
    assert printed_env["SUPABASE_KEY"].startswith("sb_publishable_")
    assert printed_env["SUPABASE_SECRET_KEY"].startswith("sb_secret_")


@pytest.mark.parametrize(("name", "role"), [("SUPABASE_ANON_KEY", "anon"),
                                            ("SUPABASE_SERVICE_ROLE_KEY", "service_role")])
def test_print_env_keys_are_role_jwts(printed_env, name, role):
    token = printed_env[name]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, options={"verify_signature": False})["role"] == role


@pytest.fixture
def process(tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run `python -m emulator --port <free>` on a temp database; yield (process, URL)."""
    port = free_port()
    env = clean_env(EMULATOR_DATABASE=str(tmp_path / "auth.sqlite3"),
                    EMULATOR_GITHUB_AUTO_LOGIN="octocat")
    log = (tmp_path / "emulator.log").open("w")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "emulator", "--port", str(port)], env=env, cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def wait_for_health(process: tuple[subprocess.Popen, str], anon_key: str) -> httpx.Response:
    """Poll /auth/v1/health until it answers, the process dies, or STARTUP_LIMIT passes."""
    proc, url = process
    deadline = time.monotonic() + STARTUP_LIMIT
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                return client.get(url + "/auth/v1/health", headers={"apikey": anon_key})
            except httpx.TransportError:
                assert proc.poll() is None, f"emulator exited with {proc.returncode}"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def test_process_serves_health(process, printed_env):
    resp = wait_for_health(process, printed_env["SUPABASE_KEY"])
    assert resp.status_code == 200
    assert resp.json()["name"] == "GoTrue"


def test_process_serves_the_real_clients_whole_session(process, printed_env):
    anon = printed_env["SUPABASE_KEY"]
    wait_for_health(process, anon)
    client = SyncGoTrueClient(url=process[1] + "/auth/v1", headers={"apikey": anon},
                              flow_type="pkce", auto_refresh_token=False,
                              http_client=httpx.Client(timeout=TIMEOUT))
    with client, httpx.Client(timeout=TIMEOUT) as browser:
        location = client.sign_in_with_oauth({"provider": "github",
                                              "options": {"redirect_to": APP}}).url
        for _ in range(5):  # /authorize -> stand-in (auto-approves) -> /callback -> app
            location = browser.get(location).headers["location"]
            if location.startswith(APP):
                break
        session = client.exchange_code_for_session(
            {"auth_code": single(query_of(location))["code"]}).session
        refreshed = client.refresh_session(session.refresh_token).session
        user = client.get_user(refreshed.access_token).user
        claims = client.get_claims(refreshed.access_token)
        client.sign_out({"scope": "local"})
        with pytest.raises(AuthApiError) as after_sign_out:
            client.refresh_session(refreshed.refresh_token)
    assert session.user.email == "octocat@example.com"
    assert session.user.user_metadata["user_name"] == "octocat"
    assert refreshed.refresh_token != session.refresh_token
    assert user.id == session.user.id
    assert claims["headers"]["alg"] == "ES256"  # verified through the process's JWKS
    assert claims["claims"]["sub"] == session.user.id
    assert after_sign_out.value.code == "refresh_token_not_found"
