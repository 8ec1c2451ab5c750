"""Run the emulator on a threaded werkzeug server in the background (tests, benchmarks)."""

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import close_app, create_app, keys
from .tokens import api_key


class HeaderKeepingHandler(WSGIRequestHandler):
    """Keep headers named with ``_`` (werkzeug drops them; GoTrue reads ``redirect_to``)."""

    def make_environ(self) -> dict[str, Any]:
        """Add underscore headers as ``HTTP_<NAME>`` like other headers."""
        environ = super().make_environ()
        for name, value in self.headers.items():
            if "_" in name:
                environ.setdefault("HTTP_" + name.upper(), value)
        return environ


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
    server: BaseWSGIServer
    thread: threading.Thread
    anon_key: str = field(default=keys.ANON_KEY)
    service_role_key: str = field(default=keys.SERVICE_ROLE_KEY)
    publishable_key: str = field(default=keys.PUBLISHABLE_KEY)
    secret_key: str = field(default=keys.SECRET_KEY)

    def stop(self) -> None:
        """Shut the server down and release the app's resources."""
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()
        close_app(self.app)


def start_background(config: dict[str, Any] | None = None, host: str = "127.0.0.1",
                     port: int = 0) -> RunningEmulator:
    """Bind, build the app with PUBLIC_URL set to the bound URL, and serve in a daemon thread."""
    late = LateApp()
    server = make_server(host, port, late, threaded=True, request_handler=HeaderKeepingHandler)
    url = f"http://{host}:{server.server_port}"
    app = create_app({**(config or {}), "PUBLIC_URL": url})
    late.app = app
    thread = threading.Thread(target=server.serve_forever, name="emulator", daemon=True)
    thread.start()
    secret = app.config["JWT_SECRET"]
    return RunningEmulator(url, app, server, thread, api_key("anon", secret),
                           api_key("service_role", secret),
                           publishable_key=app.config["PUBLISHABLE_API_KEY"],
                           secret_key=app.config["SECRET_API_KEY"])
