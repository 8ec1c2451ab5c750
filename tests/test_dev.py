"""`make dev` and `make emulator` (scripts/dev): ports as settings, a busy port named, one line
saying which Supabase and why, and the app on http://localhost:APP_PORT on its emulator."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from emulator import keys
from tests.helpers import FormParser
from tests.processes import ROOT, clean_environment, free_port

SCRIPT = ROOT / "scripts" / "dev"
FAILS_WITHIN = 20  # seconds: a refusal comes before anything slow starts
STARTS_WITHIN = 30  # seconds for the emulator and the app's debug server (with its reloader)


def load_dev_module():
    """scripts/dev.py, which is a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dev = load_dev_module()


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A shell without the developer's settings or .env, with its own emulator database and
    instance folder."""
    return clean_environment(**{
        "FLASK_SKIP_DOTENV": "1", "PYTHON": sys.executable, "SECRET_KEY": "", "SITE_URL": "",
        "APP_PORT": "", "GITHUB_API_URL": "", "EMULATOR_DATABASE": str(tmp_path / "auth.sqlite3"),
        "INSTANCE_PATH": str(tmp_path / "instance"), **settings})


def run_to_end(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=environment(tmp_path, **settings),  # noqa: S603
                          capture_output=True, text=True, timeout=FAILS_WITHIN, cwd=ROOT)


class OtherProgram(BaseHTTPRequestHandler):
    """Some other web server that happens to hold the port."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b'{"hello": "not an auth server"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def other_program() -> Iterator[int]:
    """Another program answering HTTP on a loopback port; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), OtherProgram)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def started(tmp_path: Path, *args: str, **settings: str) -> Iterator[tuple[subprocess.Popen, Path]]:
    """scripts/dev running in its own process group, stopped (the whole group) afterwards."""
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        process = subprocess.Popen([str(SCRIPT), *args], env=environment(tmp_path, **settings),  # noqa: S603
                                   stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)
    try:
        yield process, output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_answering(url: str, process: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + STARTS_WITHIN
    while time.monotonic() < deadline:
        assert process.poll() is None, output.read_text()
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer:\n{output.read_text()}")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


# -- busy ports ------------------------------------------------------------------------------

def test_a_busy_app_port_stops_make_dev_naming_the_port_and_another(tmp_path):
    with other_program() as port:
        result = run_to_end(tmp_path, APP_PORT=str(port), EMULATOR_PORT=str(free_port()))
    assert result.returncode == 1
    assert f"Port {port} (APP_PORT) is in use by another program" in result.stderr
    assert f"APP_PORT={port + 1} make dev" in result.stderr
    assert "Using" not in result.stdout


def test_a_busy_emulator_port_stops_make_dev_before_the_app_starts(tmp_path):
    app_port = free_port()
    with other_program() as port:
        result = run_to_end(tmp_path, APP_PORT=str(app_port), EMULATOR_PORT=str(port))
    assert result.returncode == 1
    assert f"Port {port} (EMULATOR_PORT) is in use by another program" in result.stderr
    assert f"EMULATOR_PORT={port + 1} make dev" in result.stderr
    assert port_is_free(app_port)


def test_a_busy_port_stops_make_emulator(tmp_path):
    with other_program() as port:
        result = run_to_end(tmp_path, "emulator", EMULATOR_PORT=str(port))
    assert result.returncode == 1
    assert f"make emulator: Port {port} (EMULATOR_PORT) is in use" in result.stderr


@pytest.mark.parametrize("value", ["web", "0", "70000"])
def test_a_port_that_is_no_port_is_named(tmp_path, value):
    result = run_to_end(tmp_path, APP_PORT=value)
    assert result.returncode == 1
    assert f"APP_PORT={value!r} (in the environment) is not a port number" in result.stderr


# -- settings: the environment over .env -----------------------------------------------------

def settings_with(tmp_path: Path, env_file: str, **environ: str):
    path = tmp_path / ".env"
    path.write_text(env_file)
    return dev.Settings(environ, path)


def test_ports_default_and_come_from_env_file_or_environment(tmp_path):
    assert settings_with(tmp_path, "").port("APP_PORT") == 5000
    assert settings_with(tmp_path, "").port("EMULATOR_PORT") == 54321
    from_file = settings_with(tmp_path, "APP_PORT=5050\nEMULATOR_PORT=\n")
    assert (from_file.port("APP_PORT"), from_file.port("EMULATOR_PORT")) == (5050, 54321)
    assert settings_with(tmp_path, "APP_PORT=5050\n", APP_PORT="6060").port("APP_PORT") == 6060


def test_env_file_pointing_at_a_local_emulator_that_is_not_running_starts_it_there(tmp_path):
    port = free_port()
    settings = settings_with(tmp_path, f"SUPABASE_URL=http://localhost:{port}\n")
    chosen = dev.choose_supabase(settings, 54321, "http://localhost:5000")
    assert chosen.start
    assert chosen.url == f"http://127.0.0.1:{port}"
    assert f"SUPABASE_URL in .env (http://localhost:{port}) points at this machine, where " \
           "nothing answers" in chosen.reason


def test_env_file_naming_a_project_is_used_as_is(tmp_path):
    settings = settings_with(tmp_path, "SUPABASE_URL=https://abcd.supabase.co\n")
    chosen = dev.choose_supabase(settings, 54321, "http://localhost:5000")
    assert (chosen.url, chosen.emulator, chosen.start) == ("https://abcd.supabase.co", None, False)
    assert chosen.reason == "SUPABASE_URL is set in .env"


def test_env_example_as_it_stands_runs_on_the_emulator(tmp_path):
    example = (ROOT / ".env.example").read_text()
    settings = settings_with(tmp_path, example)
    chosen = dev.choose_supabase(settings, free_port(), "http://localhost:5000")
    assert chosen.start
    assert chosen.reason == "no SUPABASE_URL is set in the environment or .env"
    assert settings.port("APP_PORT") == 5000 and settings.get("SITE_URL") is None


@pytest.mark.parametrize("site_url, stops", [
    ("http://localhost:5001", "SITE_URL=http://localhost:5001 (in .env) is not on APP_PORT 5000"),
    ("http://127.0.0.1:5000", None),
    ("https://dev.example.com", None),
    ("", None),
])
def test_a_local_site_url_must_be_on_app_port(tmp_path, site_url, stops):
    settings = settings_with(tmp_path, f"SITE_URL={site_url}\n")
    if stops:
        with pytest.raises(dev.Stop, match=re.escape(stops)):
            dev.site_url_for(settings, 5000)
    else:
        assert dev.site_url_for(settings, 5000) == (site_url or "http://localhost:5000")


def test_a_site_url_on_an_ip_address_gets_a_note_about_passkeys(tmp_path, capsys):
    dev.site_url_for(settings_with(tmp_path, "SITE_URL=http://127.0.0.1:5000\n"), 5000)
    assert "is an IP address, where browsers refuse passkeys" in capsys.readouterr().out
    dev.site_url_for(settings_with(tmp_path, ""), 5000)
    assert capsys.readouterr().out == ""


# -- the whole of make dev -------------------------------------------------------------------

def sign_in(http: httpx.Client, app_url: str, emulator_url: str) -> list[httpx.Response]:
    """Sign in through the GitHub stand-in as a new account; the answers after consent."""
    login = f"newcomer-{os.urandom(3).hex()}"
    httpx.post(f"{emulator_url}/github/_accounts", timeout=5, json={
        "login": login, "name": "New Comer", "email": f"{login}@example.com", "verified": True})
    response = http.get(f"{app_url}/signin/github")
    while response.is_redirect:
        response = http.get(urljoin(str(response.url), response.headers["Location"]))
    parser = FormParser()
    parser.feed(response.text)
    form = next(form for form in parser.forms if "state" in form["fields"])
    answers = [http.post(urljoin(str(response.url), form["action"]),
                         data={**form["fields"], "action": "authorize", "login": login})]
    while answers[-1].is_redirect:
        answers.append(http.get(urljoin(str(answers[-1].url), answers[-1].headers["Location"])))
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("supabase_url, reason", [
    (None, r"no SUPABASE_URL is set in the environment or \.env"),
    # As a .env written for the emulator, after a restart: nothing answers there yet.
    ("http://localhost:{port}", r"SUPABASE_URL in the environment \(http://localhost:{port}\) "
                                r"points at this machine, where nothing answers"),
], ids=["no-supabase-url", "local-emulator-not-running"])
def test_make_dev_runs_the_app_on_localhost_on_its_emulator(tmp_path, supabase_url, reason):
    app_port, emulator_port = free_port(), free_port()
    app_url, emulator_url = f"http://localhost:{app_port}", f"http://127.0.0.1:{emulator_port}"
    settings = {"APP_PORT": str(app_port), "EMULATOR_PORT": str(emulator_port)}
    if supabase_url:  # on another port than EMULATOR_PORT: that is where it starts
        emulator_port = free_port()
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        settings.update(SUPABASE_URL=supabase_url.format(port=emulator_port),
                        SUPABASE_KEY="sb_publishable_from_an_old_env_file")
    with started(tmp_path, **settings) as (process, output):
        wait_until_answering(f"{app_url}/healthz", process, output)
        printed = output.read_text()
        with httpx.Client(timeout=10) as http:
            elsewhere = http.get(f"http://127.0.0.1:{app_port}/account?tab=1")
            home = http.get(app_url)
            signed_in = sign_in(http, app_url, emulator_url)
            account = http.get(f"{app_url}/account")
    assert re.search(rf"^Using the local Supabase Auth emulator at {emulator_url}, because "
                     + reason.format(port=emulator_port), printed, re.MULTILINE)
    assert f"The app: {app_url} (APP_PORT {app_port})" in printed
    assert elsewhere.status_code == 302
    assert elsewhere.headers["Location"] == f"{app_url}/account?tab=1"
    assert re.findall(r">Sign in with ([^<]+)</a>", home.text) == ["GitHub", "GitLab", "Google"]
    # The emulator's allow-list follows APP_PORT: the callback is not replaced by its SITE_URL.
    assert any(str(answer.url).startswith(f"{app_url}/callback?") for answer in signed_in)
    assert str(signed_in[-1].url) == f"{app_url}/"
    assert "Signed in as New Comer" in signed_in[-1].text
    assert "Public repositories" in account.text  # GITHUB_API_URL: the stand-in's API
    assert port_is_free(app_port) and port_is_free(emulator_port)


@pytest.mark.slow
def test_make_emulator_is_the_emulator_of_make_dev(tmp_path):
    app_port, emulator_port = free_port(), free_port()
    url = f"http://127.0.0.1:{emulator_port}"
    with started(tmp_path, "emulator", APP_PORT=str(app_port),
                 EMULATOR_PORT=str(emulator_port)) as (process, output):
        wait_until_answering(f"{url}/auth/v1/.well-known/jwks.json", process, output)
        with httpx.Client(base_url=f"{url}/auth/v1", timeout=5,
                          headers={"apikey": keys.PUBLISHABLE_KEY}) as http:
            external = http.get("/settings").json()["external"]
        # localhost may mean ::1 first; the emulator still answers there (over 127.0.0.1).
        assert httpx.get(f"http://localhost:{emulator_port}/auth/v1/.well-known/jwks.json",
                         timeout=5).status_code == 200
    assert [name for name in ("github", "gitlab", "google") if external[name]] == [
        "github", "gitlab", "google"]
    assert f"SITE_URL=http://localhost:{app_port}" in output.read_text()
