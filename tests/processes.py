"""Processes for end-to-end tests: the emulator and the app under gunicorn, on loopback.

Also what tests need around them: a TCP relay that fails on demand, the workers' threads and
memory from /proc, the emulator's request log counted by kind, and the session cookie's content.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import httpx

from flask_storage import SealedSession
from tests.helpers import SECRET

ROOT = Path(__file__).resolve().parent.parent
# Settings of the developer's own shell that must not reach the processes a test starts.
OWN_SETTINGS = ("SUPABASE_", "FLASK_", "AUTH_", "EMULATOR_")


@dataclass(frozen=True)
class Emulator:
    """A running ``python -m emulator``: its URL, anon key and process."""

    url: str
    anon_key: str
    process: subprocess.Popen
    service_role_key: str  # for the admin API, as the team's backend calls it


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
    request log included).
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
        keys = dict(re.findall(r"^(SUPABASE_\w*KEY)=(\S+)$", printed, re.MULTILINE))
        yield Emulator(url, keys["SUPABASE_KEY"], process, keys["SUPABASE_SERVICE_ROLE_KEY"])
    finally:
        stop(process)


@contextmanager
def gunicorn_process(app_url: str, settings: dict, *, options: Sequence[str] = (),
                     log: Path | None = None) -> Iterator[subprocess.Popen]:
    """``gunicorn 'app:create_app(settings)'`` listening on ``app_url``, ready to answer
    (with an instance folder of its own unless ``settings`` names one)."""
    settings = {"INSTANCE_PATH": tempfile.mkdtemp(prefix="instance-"), **settings}
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


# --- the workers, from /proc ----------------------------------------------------------------


def workers(master: int) -> list[int]:
    """The process ids of a gunicorn master's workers."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def status_of(pid: int) -> dict[str, int]:
    """A process's thread count and resident memory (kB), from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {"threads": int(fields["Threads"]), "rss_kb": int(fields["VmRSS"].split()[0])}


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- what the app keeps in its cookie -------------------------------------------------------


def read_session(cookie: str | None, secret: str) -> dict:
    """The content of the app's session cookie, opened with the app's SECRET_KEY ({} if none).

    Every test that looks inside the cookie goes through here (or write_session), so the
    cookie's format lives in flask_storage alone.
    """
    if cookie is None:
        return {}
    return SealedSession([secret]).loads(cookie)[0]


def write_session(data: dict, secret: str) -> str:
    """A session cookie value holding ``data``, sealed as the app with this SECRET_KEY does."""
    return SealedSession([secret]).dumps(data)


# --- the emulator's request log, counted by kind ---------------------------------------------

# The emulator's access line (werkzeug's shape): ... "METHOD /path?query HTTP/1.1" status -.
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')
COLOURS = re.compile(r"\x1b\[[0-9;]*m")
CALL_KINDS = {  # (method, path) -> kind
    ("GET", "/auth/v1/user"): "user",
    ("POST", "/auth/v1/logout"): "logout",
    ("GET", "/auth/v1/.well-known/jwks.json"): "jwks",
    ("GET", "/auth/v1/settings"): "settings",
    ("GET", "/auth/v1/authorize"): "authorize",
    ("GET", "/auth/v1/callback"): "callback",
    ("GET", "/auth/v1/health"): "health",
}
GRANT_KINDS = {"pkce": "pkce", "refresh_token": "refresh"}
PATH_KINDS = (("/auth/v1/admin/", "admin"), ("/github/api/", "github_api"), ("/github/", "github"))


def call_kind(method: str, target: str) -> str:
    """The kind of an emulator request, e.g. "refresh" for a refresh-token grant."""
    path, _, query = target.partition("?")
    if (method, path) == ("POST", "/auth/v1/token"):
        grant = parse_qs(query).get("grant_type", [""])[0]
        return GRANT_KINDS.get(grant, "token_" + grant)
    if (method, path) in CALL_KINDS:
        return CALL_KINDS[method, path]
    return next((kind for prefix, kind in PATH_KINDS if path.startswith(prefix)), "other")


class EmulatorLog:
    """Counts the calls in a running emulator's request log, between marks (byte offsets)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self, quiet: float = 0.5, seconds: float = 10) -> int:
        """The log's size once it stopped growing for ``quiet`` seconds (bounded by ``seconds``).

        A line is written once the app has answered, so the last calls may lag a little.
        """
        deadline = time.monotonic() + seconds
        size = self.path.stat().st_size
        while time.monotonic() < deadline:
            time.sleep(quiet)
            grown = self.path.stat().st_size
            if grown == size:
                break
            size = grown
        return size

    def calls(self, start: int = 0, end: int | None = None) -> Counter[tuple[str, int]]:
        """(kind, status) -> how many, for the calls logged between two marks."""
        with self.path.open("rb") as log:
            log.seek(start)
            text = log.read(None if end is None else end - start).decode(errors="replace")
        counted: Counter[tuple[str, int]] = Counter()
        for method, target, status in ACCESS_LINE.findall(COLOURS.sub("", text)):
            counted[call_kind(method, target), int(status)] += 1
        return counted


# --- a relay that fails on demand -------------------------------------------------------------

# How an HTTP/1.1 request starts: what the relay counts as one call in a black hole.
REQUEST_STARTS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ", b"HEAD ", b"OPTIONS ")


def socket_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP socket 127.0.0.1:local_port -> :remote_port."""
    wanted = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = f"socket:[{fields[9]}]"
            break
    if inode is None:
        return None
    for pid in pids:
        try:
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(descriptor) == inode:
                    return pid
        except OSError:  # the process or the descriptor is gone
            continue
    return None



class Relay:
    """A TCP relay on loopback (an event loop in a thread of the test process) whose upstream
    can fail on demand, as Supabase seen from the app server during an outage.

    ``up()`` forwards every connection to the target; ``refuse()`` closes the listener and
    resets open connections, so connecting is refused; ``blackhole()`` keeps accepting but
    never answers, on new and open connections alike (bytes are dropped both ways).

    In a black hole it counts the requests it swallows by the process that sent them, among
    the processes ``owners()`` lists (None: a process not among them, or gone already).
    """

    UP, REFUSING, BLACKHOLE = "up", "refusing", "blackhole"

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = self.UP
        self.port = 0
        self.accepted: Counter[str] = Counter()  # connections accepted, by the mode at the time
        self.owners: Callable[[], Iterable[int]] = list
        self.swallowed: Counter[int | None] = Counter()  # requests lost in a black hole, by pid
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start listening on a free loopback port (kept across outages)."""
        self._thread.start()
        self._run(self._listen())

    def up(self) -> None:
        """Forward again, listening on the same port."""
        self._run(self._switch(self.UP))

    def refuse(self) -> None:
        """Connections are refused; open ones are reset."""
        self._run(self._switch(self.REFUSING))

    def blackhole(self) -> None:
        """Connections are accepted and never answered; open ones fall silent."""
        self._run(self._switch(self.BLACKHOLE))

    def close(self) -> None:
        """Stop listening, drop every connection and end the thread."""
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _run(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: str) -> None:
        if mode == self.mode:
            return
        if mode == self.REFUSING and self._server is not None:
            self._server.close()
            self._server = None
        previous, self.mode = self.mode, mode
        if mode == self.REFUSING or previous == self.BLACKHOLE:
            self._drop_open()  # a refusal resets them; after a black hole they are garbled
        if mode != self.REFUSING and self._server is None:
            await self._listen()

    def _drop_open(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted[self.mode] += 1
        self._open.add(writer)
        upstream_writer = None
        try:
            caller = writer.get_extra_info("peername")[1]
            if self.mode == self.BLACKHOLE:
                await self._pipe(reader, None, caller)
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port)
            self._open.add(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer, caller),
                                 self._pipe(upstream_reader, writer))
        except OSError:
            pass  # the target went away: the client sees its connection close
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    self._open.discard(end)
                    end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                    caller: int | None = None) -> None:
        """Copy until either side closes; while the relay is a black hole, drop the bytes (and
        count the requests among them, when they come from the ``caller`` port)."""
        try:
            while data := await reader.read(65536):
                if writer is not None and self.mode == self.UP:
                    writer.write(data)
                    await writer.drain()
                elif (caller is not None and self.mode == self.BLACKHOLE
                      and data.startswith(REQUEST_STARTS)):
                    self.swallowed[socket_owner(caller, self.port, self.owners())] += 1
        except OSError:
            pass
        if writer is not None:
            writer.transport.abort()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._drop_open()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def relay_to(url: str) -> Iterator[Relay]:
    """A Relay in front of ``url`` (an http://127.0.0.1:<port> address), closed afterwards."""
    relay = Relay(int(url.rsplit(":", 1)[1]))
    relay.start()
    try:
        yield relay
    finally:
        relay.close()


# --- the whole stack: the emulator, the app under gunicorn, maybe a relay between -------------


@dataclass(frozen=True)
class Site:
    """A running app and emulator; the app reaches Supabase through ``relay`` when there is one."""

    url: str
    emulator: Emulator
    emulator_log: EmulatorLog
    gunicorn: subprocess.Popen
    relay: Relay | None
    directory: Path  # where both processes log


@contextmanager
def app_site(directory: Path, app_settings: dict, *, gunicorn_options: Sequence[str],
             relay: bool = False, **emulator_settings: object) -> Iterator[Site]:
    """The emulator process and the app under gunicorn, with the shared test SECRET_KEY.

    With ``relay``, SUPABASE_URL is a Relay in front of the emulator (the token issuer stays
    the emulator's own address). Both processes log to files in ``directory``.
    """
    app_url = f"http://127.0.0.1:{free_port()}"
    log = directory / "emulator.log"
    with (emulator_process(app_url, directory / "auth.sqlite3", log=log,
                           **emulator_settings) as emulator,
          relay_to(emulator.url) if relay else nullcontext() as between):
        # TESTING: the production guard rightly refuses the emulator's demo key otherwise.
        settings = {"TESTING": True, "SECRET_KEY": SECRET, "SITE_URL": app_url,
                    "SUPABASE_URL": between.url if between else emulator.url,
                    "SUPABASE_JWT_ISSUER": f"{emulator.url}/auth/v1",
                    "SUPABASE_KEY": emulator.anon_key,
                    "GITHUB_API_URL": f"{emulator.url}/github/api/v3", **app_settings}
        with gunicorn_process(app_url, settings, options=gunicorn_options,
                              log=directory / "gunicorn.log") as gunicorn:
            yield Site(app_url, emulator, EmulatorLog(log), gunicorn, between, directory)
