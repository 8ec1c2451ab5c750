"""Serve the emulator over HTTP/1.1 with keep-alive (cheroot), in the foreground or a thread.

A hosted project's gateway keeps connections open between requests, so an app's connection
pool reuses them; werkzeug's development server closes every connection after one response,
which would leave the pool's reuse (and its stale-connection handling) untested. cheroot keeps
them open, parks idle ones without holding a worker thread, closes those idle for
``KEEP_ALIVE_SECONDS`` and, on stop, every open one, so a pool never reaches a stopped emulator.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cheroot import wsgi
from flask import Flask

from . import close_app, create_app, keys
from .tokens import api_key

log = logging.getLogger("emulator.access")

THREADS = 64  # requests handled at once (a slow hook holds one for up to 5 s)
BACKLOG = 128  # connections waiting to be accepted
KEEP_ALIVE_SECONDS = 60  # an idle connection is closed after this (a request's read timeout too)
MAX_KEPT_ALIVE = 1000  # open connections beyond this get "Connection: close"


class AccessLog:
    """Log one line per request, in the shape werkzeug's server wrote (tests count them)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        """Call the app; log the request line and status once the app has answered."""
        status: list[str] = []

        def recording_start_response(line: str, headers: list, exc_info: Any = None) -> Any:
            status[:] = [line.split(" ", 1)[0]]
            return start_response(line, headers, exc_info)

        body = self.app(environ, recording_start_response)
        target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        log.info('%s - - [%s] "%s %s %s" %s -', environ.get("REMOTE_ADDR", "-"),
                 time.strftime("%d/%b/%Y %H:%M:%S"), environ.get("REQUEST_METHOD"), target,
                 environ.get("SERVER_PROTOCOL"), status[0] if status else "-")
        return body


def make_server(host: str, port: int, app: Any) -> wsgi.Server:
    """A bound HTTP/1.1 server for ``app`` (port 0: a free one), not yet serving."""
    server = wsgi.Server((host, port), AccessLog(app), numthreads=THREADS,
                         request_queue_size=BACKLOG, timeout=KEEP_ALIVE_SECONDS)
    server.keep_alive_conn_limit = MAX_KEPT_ALIVE
    server.prepare()
    return server


def serve_forever(host: str, port: int, app: Flask) -> None:
    """Serve in the foreground until interrupted (the command line)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    server = make_server(host, port, app)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


class LateApp:
    """A WSGI callable that forwards to an app created once the port is known."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        """Forward to the real app."""
        return self.app(environ, start_response)


@dataclass
class RunningEmulator:
    """A started emulator: its URL, app and keys, and a way to stop it."""

    url: str
    app: Flask
    server: wsgi.Server
    thread: threading.Thread
    anon_key: str = field(default=keys.ANON_KEY)
    service_role_key: str = field(default=keys.SERVICE_ROLE_KEY)
    publishable_key: str = field(default=keys.PUBLISHABLE_KEY)
    secret_key: str = field(default=keys.SECRET_KEY)

    def stop(self) -> None:
        """Stop serving, close every open connection and release the app's resources."""
        self.server.stop()
        self.thread.join(timeout=5)
        close_app(self.app)


def start_background(config: dict[str, Any] | None = None, host: str = "127.0.0.1",
                     port: int = 0) -> RunningEmulator:
    """Bind, build the app with PUBLIC_URL set to the bound URL, and serve in a daemon thread."""
    late = LateApp()
    server = make_server(host, port, late)
    url = f"http://{host}:{server.bind_addr[1]}"
    app = create_app({**(config or {}), "PUBLIC_URL": url})
    late.app = app
    thread = threading.Thread(target=server.serve, name="emulator", daemon=True)
    thread.start()
    secret = app.config["JWT_SECRET"]
    return RunningEmulator(url, app, server, thread, api_key("anon", secret),
                           api_key("service_role", secret),
                           publishable_key=app.config["PUBLISHABLE_API_KEY"],
                           secret_key=app.config["SECRET_API_KEY"])
