"""Item 7: calls to Supabase per person-hour, by kind, simulated in-process without sleeping.

One person signs in with GitHub, opens the signed-in page every few seconds for one simulated
hour, then signs out. The app is ``app.create_app`` with the settings bench/this_app.py passes;
it talks to an in-process emulator (its defaults: JWT_EXP 3,600 s, the /token rate limit on)
through an httpx transport that counts each call by kind. Nothing sleeps: one simulated clock
is moved for both sides, the ``time`` module of the app's own modules and the emulator's CLOCK,
which stamps the tokens it issues, so tokens expire and checks fall due as in a real hour.

The same code counts this checkout and a baseline's git worktree, each in its own process
(``python -m bench.calls --tree PATH --out FILE``) whose sys.path starts with that tree, so its
app modules are that tree's and no other's. The emulator is always this checkout's: both
versions talk to the same server, as in the page measurement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from flask import Flask

import emulator
from bench.servers import ROOT, free_port
from emulator import keys

HOUR = 3600
TOKEN_BUDGET_PER_HOUR = 150 * 12  # Supabase: 150 POST /token per 5 minutes per address
KINDS = ("token/pkce", "token/refresh_token", "GET /user", "logout", "JWKS", "settings")
TOKEN_KINDS = ("token/pkce", "token/refresh_token")  # the rate-limited ones
PER_PROCESS_KINDS = ("JWKS", "settings")  # cached per process, whatever the number of people
FORWARDED_FOR = "Sb-Forwarded-For"
SITE_URL = "http://127.0.0.1:5000"  # never connected to: the test client calls the app
PERSON_ADDRESS = "203.0.113.7"  # TEST-NET-3: the person's address as the app sees it
PERSON_LOGIN = "calls-person"
SIGNED_IN_MARKER = "Hello, "
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
MAX_REDIRECTS = 10
RUN_TIMEOUT = 300.0  # seconds for one tree's subprocess (about 5 s on a quiet machine)


@dataclass(frozen=True)
class Variant:
    """How often the person opens a page, and how often the app re-checks the session."""

    name: str
    page_seconds: int
    revalidate_seconds: int


VARIANTS = (
    Variant("page every 5 s", page_seconds=5, revalidate_seconds=60),
    Variant("page every 60 s", page_seconds=60, revalidate_seconds=60),
    Variant("every 5 s, revalidate 300 s", page_seconds=5, revalidate_seconds=300),
)


class Clock:
    """Simulated time: a whole-second start (so runs are alike) plus the seconds moved."""

    def __init__(self) -> None:
        self.start = float(int(time.time()))
        self.elapsed = 0.0

    def __call__(self) -> float:
        return self.start + self.elapsed


class MovedTime(types.ModuleType):
    """Stands in for ``time`` in the app's modules: ``time()`` reads the clock, the rest is real."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__("time")
        self.time = clock

    def __getattr__(self, name: str):
        return getattr(time, name)


@contextmanager
def moved_app_clock(modules: list[types.ModuleType], clock: Clock) -> Iterator[list[str]]:
    """Give every app module that imported ``time`` the clock; yield their names; put it back.

    As tests/helpers.py's move_app_clock does for ``auth`` and ``sessions`` (the baseline has
    only ``auth``), here for whichever of the tree's modules use ``time``.
    """
    patched = [module for module in modules if getattr(module, "time", None) is time]
    moved = MovedTime(clock)
    for module in patched:
        module.time = moved
    try:
        yield sorted(module.__name__ for module in patched)
    finally:
        for module in patched:
            module.time = time


def kind_of(request: httpx.Request) -> str:
    """A call's kind: token/<grant_type>, GET /user, logout, JWKS, settings, or method + path."""
    path = request.url.path.removeprefix("/auth/v1")
    if request.method == "POST" and path == "/token":
        return f"token/{request.url.params.get('grant_type')}"
    known = {("GET", "/user"): "GET /user", ("POST", "/logout"): "logout",
             ("GET", "/.well-known/jwks.json"): "JWKS", ("GET", "/settings"): "settings"}
    return known.get((request.method, path), f"{request.method} {path}")


class CountingTransport(httpx.BaseTransport):
    """Passes each of the app's requests on, counting it by kind (and who it was refused)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()  # calls that carried Sb-Forwarded-For
        self.refused: Counter[str] = Counter()  # "<kind> <status>" for answers of 400 and up

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = kind_of(request)
        self.calls[kind] += 1
        if FORWARDED_FOR in request.headers:
            self.forwarded[kind] += 1
        response = self.inner.handle_request(request)
        if response.status_code >= 400:
            self.refused[f"{kind} {response.status_code}"] += 1
        return response

    def close(self) -> None:
        self.inner.close()


class SimulationFailed(RuntimeError):
    """The person was not where a browser would be (signed out, an error page, a loop)."""


def simulate(create_app: Callable[[dict], Flask], app_modules: list[types.ModuleType],
             variant: Variant) -> dict:
    """One person-hour against a fresh emulator and a fresh app; the calls it cost."""
    clock = Clock()
    supabase_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every call is in-process
    supabase = emulator.create_app({"DATABASE": ":memory:", "PUBLIC_URL": supabase_url,
                                    "SITE_URL": SITE_URL, "GITHUB_AUTO_LOGIN": PERSON_LOGIN,
                                    "CLOCK": clock})
    counting = CountingTransport(httpx.WSGITransport(app=supabase))
    app = create_app({"SUPABASE_URL": supabase_url, "SUPABASE_KEY": keys.ANON_KEY,
                      "SECRET_KEY": secrets.token_hex(32), "SITE_URL": SITE_URL, "TESTING": True,
                      "INSTANCE_PATH": tempfile.mkdtemp(prefix="bench-instance-"),
                      "AUTH_REVALIDATE_SECONDS": variant.revalidate_seconds,
                      "SUPABASE_TRANSPORT": counting})
    browser = httpx.Client(transport=httpx.WSGITransport(app=supabase))
    started = time.perf_counter()
    try:
        with moved_app_clock(app_modules, clock) as moved:
            client = app.test_client()
            client.environ_base["REMOTE_ADDR"] = PERSON_ADDRESS
            page = sign_in(client, browser)
            pages = 1
            for step in range(1, HOUR // variant.page_seconds + 1):
                clock.elapsed = step * variant.page_seconds
                page = signed_in_page(client)
                pages += 1
            sign_out(client, page)
    finally:
        browser.close()
        app.extensions["supabase"].http.close()
        emulator.close_app(supabase)
    return {"variant": asdict(variant), "pages": pages, "simulated_seconds": clock.elapsed,
            "calls": dict(counting.calls), "forwarded_for": dict(counting.forwarded),
            "refused": dict(counting.refused), "moved_clock_in": moved,
            "wall_seconds": time.perf_counter() - started}


def sign_in(client, browser: httpx.Client) -> str:
    """The PKCE round trip (the emulator approves at once); the first page's HTML."""
    answer = client.get("/signin/github")
    if answer.status_code != 303:
        raise SimulationFailed(f"sign-in start answered {answer.status_code}")
    location = answer.headers["Location"]
    for _ in range(MAX_REDIRECTS):
        if location.startswith(SITE_URL):
            break
        response = browser.get(location)
        if not response.is_redirect:
            raise SimulationFailed(f"the emulator answered {response.status_code} at {location}")
        location = urljoin(location, response.headers["Location"])
    else:
        raise SimulationFailed("the emulator never sent the browser back to the app")
    parts = urlsplit(location)
    answer = client.get(f"{parts.path}?{parts.query}")
    if answer.status_code not in (302, 303):
        raise SimulationFailed(f"the callback answered {answer.status_code}")
    return signed_in_page(client, answer.headers["Location"])


def signed_in_page(client, path: str = "/") -> str:
    """GET a page that must greet the person; its HTML."""
    answer = client.get(path)
    text = answer.get_data(as_text=True)
    if answer.status_code != 200 or SIGNED_IN_MARKER not in text:
        raise SimulationFailed(f"GET {path} answered {answer.status_code} without the greeting")
    return text


def sign_out(client, page: str) -> None:
    """Press the page's sign-out button (POST with its CSRF token)."""
    match = CSRF_FIELD.search(page)
    if not match:
        raise SimulationFailed("the signed-in page has no sign-out form")
    answer = client.post("/signout", data={"csrf_token": match.group(1), "scope": "local"})
    if answer.status_code not in (302, 303):
        raise SimulationFailed(f"sign-out answered {answer.status_code}")


def use_tree(tree: Path) -> None:
    """Import app code from ``tree`` only: it goes first on sys.path, this checkout goes.

    ``bench`` and ``emulator`` are already imported from this checkout by then; the app's
    modules (app, auth, ...) are found in the tree or nowhere.
    """
    here = {str(ROOT), "", "."}
    sys.path[:] = [str(tree)] + [entry for entry in sys.path if entry not in here]


def app_modules(tree: Path) -> list[types.ModuleType]:
    """The loaded modules that are top-level files of the tree (the app's own modules)."""
    return [module for module in list(sys.modules.values())
            if getattr(module, "__file__", None) and Path(module.__file__).parent == tree]


def leaked_modules(tree: Path) -> list[str]:
    """Modules loaded from this checkout other than bench/, emulator/ and the virtualenv."""
    if tree == ROOT:
        return []
    allowed = (ROOT / "bench", ROOT / "emulator", Path(sys.prefix))
    return sorted(name for name, module in list(sys.modules.items())
                  if (path := getattr(module, "__file__", None)) and Path(path).is_relative_to(ROOT)
                  and not any(Path(path).is_relative_to(folder) for folder in allowed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__)
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the checkout whose app is counted (default: this one)")
    parser.add_argument("--variants", type=int, default=len(VARIANTS),
                        help="how many of the variants to run, first first")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    use_tree(tree)
    create_app = importlib.import_module("app").create_app
    leaks = leaked_modules(tree)
    if leaks:
        raise SystemExit(f"modules of {ROOT} were imported while counting {tree}: {leaks}")
    modules = app_modules(tree)
    results = {"tree": str(tree),
               "app_modules": sorted(module.__name__ for module in modules),
               "variants": [simulate(create_app, modules, variant)
                            for variant in VARIANTS[:args.variants]]}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def count(tree: Path, variants: int = len(VARIANTS)) -> dict:
    """Run ``python -m bench.calls`` for one tree in its own process; its results."""
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONPATH" and not name.startswith(("SUPABASE_", "FLASK_", "AUTH_"))}
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as folder:
        out = Path(folder) / "calls.json"
        done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "bench.calls", "--tree", str(tree), "--out", str(out),
             "--variants", str(variants)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"counting calls for {tree} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def budget(calls: dict[str, int], forwarded: dict[str, int]) -> dict:
    """What one person-hour means for the /token limit of 1,800 calls per address per hour."""
    token_calls = sum(calls.get(kind, 0) for kind in TOKEN_KINDS)
    return {
        "token_calls": token_calls,
        # Without Sb-Forwarded-For every person's calls come from the server's address.
        "people_per_address_hour": TOKEN_BUDGET_PER_HOUR // token_calls if token_calls else None,
        # With it, each person has a bucket of their own: the server's address sets no cap.
        "own_bucket_share": token_calls / TOKEN_BUDGET_PER_HOUR,
        "sends_forwarded_for": token_calls > 0 and all(
            forwarded.get(kind, 0) == calls.get(kind, 0) for kind in TOKEN_KINDS),
    }


if __name__ == "__main__":
    sys.exit(main())
