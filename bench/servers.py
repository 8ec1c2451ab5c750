"""Start and stop the processes under test: one emulator, and gunicorn serving one app at a time.

Every wait is bounded; every process is stopped by its own id (TERM, then KILL after a grace
period), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds a server gets to answer its health check
STOP_TIMEOUT = 10.0

# What gunicorn serves for each configuration (module:factory, run from the repository root;
# "before" from a baseline's worktree, see bench/baseline.py).
APPS = {
    "bare": "bench.bare_app:create_app()",
    "app": "bench.this_app:create_app()",
    "before": "bench.this_app:create_app()",
    "tutorial": "bench.tutorial_app:create_app()",
}


class ServerError(RuntimeError):
    """A server did not start, or died; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of GET path on loopback, or None when nothing answers."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def proc_status(pid: int) -> dict[str, int]:
    """RSS (KiB), thread count and open file descriptors of a process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "Threads"):
            values[name] = int(rest.split()[0])
    return {"rss_kib": values["VmRSS"], "threads": values["Threads"],
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path | str = ROOT) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_healthy(self, port: int, path: str) -> None:
        """Poll GET path until it answers 200; fail with the log if the process dies or stalls."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.popen.returncode}:\n"
                                  f"{self.tail()}")
            if http_status(port, path) == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer {path} within {START_TIMEOUT:.0f}s:\n"
                          f"{self.tail()}")

    def stop(self) -> None:
        """TERM the process, KILL its process group if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)  # our own group: we started it
                self.popen.wait(STOP_TIMEOUT)

    def tail(self, lines: int = 30) -> str:
        """The end of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Emulator:
    """The local Supabase Auth emulator, one process for the whole run."""

    url: str
    anon_key: str
    service_role_key: str
    process: Process

    @classmethod
    def start(cls, site_url: str, work_dir: Path) -> Emulator:
        """A fresh emulator on a free port, with a new database file under work_dir."""
        port = free_port()
        env = {
            **_clean_environment(),
            "EMULATOR_DATABASE": str(work_dir / "auth.sqlite3"),
            "EMULATOR_SITE_URL": site_url,
            "EMULATOR_URI_ALLOW_LIST": f"{site_url}/**",
            # Every benchmarked sign-in and refresh comes from 127.0.0.1, thousands a minute.
            "EMULATOR_RATE_LIMIT_TOKEN_REFRESH": "1000000000",
        }
        argv = [sys.executable, "-m", "emulator", "--host", HOST, "--port", str(port)]
        source = os.environ.get("BENCH_EMULATOR_DIR") or ROOT  # another checkout's emulator/
        env["PYTHONPATH"] = str(source)
        printed = subprocess.run(  # noqa: S603
            [*argv, "--print-env"], cwd=source, env=env, capture_output=True, text=True,
            timeout=START_TIMEOUT, check=True).stdout
        settings = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
        process = Process("emulator", argv, env, work_dir, cwd=source)
        process.wait_healthy(port, "/auth/v1/.well-known/jwks.json")
        return cls(settings["SUPABASE_URL"], settings["SUPABASE_KEY"],
                   settings["SUPABASE_SERVICE_ROLE_KEY"], process)

    def stop(self) -> None:
        self.process.stop()


class Gunicorn:
    """One configuration served by gunicorn with one sync worker (the same for every app).

    gunicorn runs in ``tree`` (this checkout, or a baseline's worktree, whose environment then
    says where its modules come from), so the app is imported from there.
    """

    WORKERS = 1

    def __init__(self, config: str, port: int, env: dict[str, str], work_dir: Path,
                 tree: Path = ROOT) -> None:
        self.config = config
        self.port = port
        self.url = f"http://{HOST}:{port}"
        argv = [sys.executable, "-m", "gunicorn", "--workers", str(self.WORKERS),
                "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--timeout", "120",
                "--log-level", "warning", APPS[config]]
        self.process = Process(f"gunicorn-{config}", argv, {**_clean_environment(), **env},
                               work_dir, cwd=tree)

    def __enter__(self) -> Gunicorn:
        try:
            self.process.wait_healthy(self.port, "/healthz")
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.process.stop()
        if exc is not None:  # whatever went wrong, the server's side of it is in its log
            print(f"--- end of {self.process.log_path.name} ---\n{self.process.tail()}",
                  file=sys.stderr)

    def worker_pid(self) -> int:
        """The pid of gunicorn's only worker (the master's child)."""
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) != self.WORKERS:
            raise ServerError(f"expected {self.WORKERS} worker, found {children}")
        return int(children[0])

    def worker_status(self) -> dict[str, int]:
        """RSS, threads and open files of the worker."""
        return proc_status(self.worker_pid())

    def worker_cpu(self) -> float:
        """CPU seconds the worker has used so far."""
        return cpu_seconds(self.worker_pid())


def _clean_environment() -> dict[str, str]:
    # Servers read their settings from the variables set here only, never the developer's.
    dropped = ("SUPABASE_", "FLASK_", "AUTH_", "EMULATOR_", "GUNICORN_")
    return {name: value for name, value in os.environ.items()
            if not name.startswith(dropped) and name not in ("SECRET_KEY", "SITE_URL")}


def without_passkeys(app) -> None:
    """The template globals of the app's passkeys, for the stand-in apps that render its
    templates: no passkey button, no offer (as on every page after the first)."""
    app.add_template_global(lambda: False, "passkey_offer")
    app.add_template_global(lambda: False, "passkeys_enabled")
