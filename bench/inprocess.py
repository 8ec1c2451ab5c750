"""Item 6: what the app's auth adds to one signed-in request, timed in-process.

The app is built by ``app.create_app`` against the same emulator process, and requests are
passed straight to its WSGI callable (no sockets, no gunicorn). Each request is timed as a
whole and by phase, with thin wrappers around the app's own steps:

- ``open_session``: reading the signed session cookie (Flask's session interface);
- ``load_user``: the before-request hook that verifies or refreshes the tokens;
- ``csrf_token``: signing the sign-out form's CSRF token while rendering;
- ``save_session``: writing the cookie back (only when it changed, e.g. after a refresh).

"Auth" is the sum of these phases; the bare page (bench/bare_app.py) has none of them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from werkzeug.test import EnvironBuilder

PHASES = ("open_session", "load_user", "csrf_token", "save_session")


@dataclass
class Timings:
    """Per-request durations in seconds, by phase."""

    total: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def summary(self) -> dict:
        """Median and p99 in milliseconds, for the whole request and for auth."""
        auth = [sum(values) for values in zip(*self.phases.values(), strict=True)]
        result = {"requests": len(self.total), **_stats("request", self.total)}
        if any(auth):
            result.update(_stats("auth", auth))
            for phase, values in self.phases.items():
                result[f"{phase}_median_ms"] = statistics.median(values) * 1000
        return result


class Instrumented:
    """Wraps an app's session interface, auth hook and CSRF helper with timers."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.current: dict[str, float] = {}
        interface = app.session_interface
        interface.open_session = self._timed("open_session", interface.open_session)
        interface.save_session = self._timed("save_session", interface.save_session)
        hooks = app.before_request_funcs[None]
        for index, hook in enumerate(hooks):
            if hook.__name__ == "load_user":
                hooks[index] = self._timed("load_user", hook)
        csrf = app.jinja_env.globals.get("csrf_token")
        if csrf is not None:
            app.jinja_env.globals["csrf_token"] = self._timed("csrf_token", csrf)
        # Context processors may provide csrf_token too (Flask-WTF does; so may the app):
        # time whichever one the template ends up calling.
        processors = app.template_context_processors[None]
        for index, processor in enumerate(processors):
            processors[index] = self._timing_csrf_of(processor)

    def _timing_csrf_of(self, processor: Callable[[], dict]) -> Callable[[], dict]:
        def wrapped() -> dict:
            values = processor()
            if "csrf_token" in values:
                values = {**values, "csrf_token": self._timed("csrf_token", values["csrf_token"])}
            return values
        return wrapped

    def _timed(self, phase: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - started
        timed.__name__ = function.__name__
        return timed

    def request(self, environ: dict) -> tuple[str, dict[str, float], float, dict]:
        """One GET through the WSGI app: (body, phase times, total time, headers)."""
        self.current = dict.fromkeys(PHASES, 0.0)
        answer: dict = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers

        started = time.perf_counter()
        body = b"".join(self.app.wsgi_app(dict(environ), start_response))
        total = time.perf_counter() - started
        return body.decode(), dict(self.current), total, answer


def environ_for(site_url: str, cookie: str | None) -> dict:
    """A WSGI environ for GET / with the session cookie."""
    headers = {"Cookie": cookie} if cookie else {}
    return EnvironBuilder(path="/", base_url=site_url, headers=headers).get_environ()


def measure_pages(app: Flask, site_url: str, cookie: str | None, requests: int,
                  before_each: Callable[[], None] | None = None) -> dict:
    """Time ``requests`` signed-in GETs of / with the same cookie (after a short warm-up)."""
    instrumented = Instrumented(app)
    environ = environ_for(site_url, cookie)
    for _ in range(min(50, requests)):
        _checked(instrumented.request(environ))
    timings = Timings()
    for _ in range(requests):
        if before_each is not None:
            before_each()
        _, phases, total, _ = _checked(instrumented.request(environ))
        _record(timings, phases, total)
    return timings.summary()


def measure_refreshes(app: Flask, site_url: str, cookie: str, requests: int) -> dict:
    """Time GETs of / whose token is due for refresh (the app has AUTH_REVALIDATE_SECONDS=0).

    Each answer carries the refreshed cookie, which the next request sends, as a browser does
    (a refresh token works once).
    """
    instrumented = Instrumented(app)
    timings = Timings()
    for _ in range(requests):
        body, phases, total, answer = _checked(instrumented.request(environ_for(site_url, cookie)))
        cookie = _set_cookie(answer["headers"]) or cookie
        _record(timings, phases, total)
    return timings.summary()


def _checked(result: tuple) -> tuple:
    body, _, _, answer = result
    if not answer["status"].startswith("200") or "Hello, " not in body:
        raise RuntimeError(f"in-process request was not the signed-in page: {answer['status']}")
    return result


def _record(timings: Timings, phases: dict[str, float], total: float) -> None:
    timings.total.append(total)
    for phase in PHASES:
        timings.phases[phase].append(phases[phase])


def _set_cookie(headers: list[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() == "set-cookie" and value.startswith("session="):
            return value.split(";", 1)[0]
    return None


def _stats(name: str, values: list[float]) -> dict:
    ordered = sorted(values)
    return {f"{name}_median_ms": statistics.median(ordered) * 1000,
            f"{name}_p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000}
