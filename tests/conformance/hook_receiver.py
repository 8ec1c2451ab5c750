"""The HTTP endpoint a server under test calls as its custom access token hook.

It listens on loopback (the server must be told ``http://127.0.0.1:<port>/hook``), records every
call with its headers and whether a signature matched each secret, and answers with whatever
the running test chose; by default it hands the claims back unchanged.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

PATH = "/hook"


def new_secret() -> str:
    """A fresh Standard Webhooks secret in the form the server's settings take."""
    return "v1,whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Answer:
    """What the hook sends back."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] | None = None
    delay: float = 0.0  # seconds to wait before answering (a slow hook)


def json_answer(value: object, status: int = 200) -> Answer:
    """A JSON body with Content-Type application/json."""
    return Answer(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


def echo(payload: dict) -> Answer:
    """Hand the claims back as they came: a hook that changes nothing."""
    return json_answer({"claims": payload["claims"]})


@dataclass
class Call:
    """One request the server made to the hook."""

    headers: dict[str, str]
    body: bytes
    signed_by: list[bool]  # per configured secret: did one of the signatures match it

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class HookReceiver:
    """A threaded HTTP server on 127.0.0.1:``port`` playing the hook."""

    def __init__(self, port: int, secret_list: list[str]) -> None:
        self.port = port
        self.secrets = secret_list
        self.respond: Callable[[dict], Answer] = echo
        self.calls: list[Call] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> None:
        """Listen (again) on the port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.record(Call(headers, body, receiver.signed(headers, body)))
                try:
                    answer = receiver.respond(json.loads(body))
                except ValueError:
                    answer = Answer(400)
                if answer.delay:
                    threading.Event().wait(answer.delay)
                self.send_response(answer.status)
                for name, value in (answer.headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                try:
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the server gave up waiting

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="hook",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connecting to the hook is refused until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def signed(self, headers: dict[str, str], body: bytes) -> list[bool]:
        """For each secret, whether the webhook-signature header holds its signature."""
        try:
            sent_at = datetime.datetime.fromtimestamp(int(headers["webhook-timestamp"]),
                                                      datetime.UTC)
            msg_id = headers["webhook-id"]
            sent = {part.strip() for part in headers["webhook-signature"].split(", ")}
        except (KeyError, ValueError):
            return [False] * len(self.secrets)
        return [Webhook(secret.removeprefix("v1,")).sign(msg_id, sent_at, body.decode()) in sent
                for secret in self.secrets]
