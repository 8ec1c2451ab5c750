"""Load from a separate process: wrk when it is installed, else a small bounded Python client.

Every run stops by itself: at a fixed duration, or at a request cap, whichever comes first.
Both tools report the same things: requests, throughput, p50/p99 latency, how many answers
were the signed-in page, and how many rewrote the session cookie (a refresh or a sign-out).

``python -m bench.load SPEC`` is the Python client's entry point (SPEC is JSON); the
benchmark runs it as a subprocess, never in its own process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import SIGNED_IN_MARKER, Browser, SignInFailed, fetch

GRACE = 30.0  # seconds on top of a run's duration before the load process is killed

WRK_SCRIPT = r"""
-- Cycles through the session cookies in a file; counts signed-in pages and cookie rewrites;
-- stops each thread at its request cap. Counters are globals so done() can read them.
cookies, next_cookie, cap, answered, signed_in, rewrites = {}, 0, 0, 0, 0, 0
local threads, marker = {}, nil

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then cookies[#cookies + 1] = line end
  end
  cap = tonumber(args[2])
  marker = args[3]
  next_cookie = id
end

function request()
  if #cookies == 0 then return wrk.format("GET", wrk.path) end
  next_cookie = next_cookie % #cookies + 1
  return wrk.format("GET", wrk.path, {Cookie = cookies[next_cookie]})
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 and body:find(marker, 1, true) then signed_in = signed_in + 1 end
  if headers["Set-Cookie"] then rewrites = rewrites + 1 end
  if cap > 0 and answered >= cap then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local total_signed_in, total_rewrites = 0, 0
  for _, thread in ipairs(threads) do
    total_signed_in = total_signed_in + thread:get("signed_in")
    total_rewrites = total_rewrites + thread:get("rewrites")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "seconds": %.6f, "p50_ms": %.4f, "p99_ms": %.4f, ' ..
    '"signed_in": %d, "cookie_rewrites": %d, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, total_signed_in, total_rewrites,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class PageLoad:
    """What one measured run of GET requests found."""

    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    signed_in: int  # answers that were the signed-in page
    cookie_rewrites: int  # answers with Set-Cookie: the session changed under load
    errors: int


@dataclass
class SignInLoad:
    """What one measured run of sign-in round trips found."""

    signins: int
    failures: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    first_failure: str
    cookies: list[str] = field(default_factory=list, repr=False)  # when asked to keep them


def load_tool() -> str:
    """"wrk" when installed (and not overridden by BENCH_LOAD=python), else "python"."""
    if os.environ.get("BENCH_LOAD", "").lower() == "python":
        return "python"
    return "wrk" if shutil.which("wrk") else "python"


def pages(url: str, cookies: list[str], *, seconds: float, max_requests: int,
          connections: int, tool: str) -> PageLoad:
    """GET url for ``seconds`` or ``max_requests``, cycling through the session cookies."""
    if tool == "wrk":
        return _wrk(url, cookies, seconds, max_requests, connections)
    spec = {"kind": "pages", "url": url, "cookies": cookies, "seconds": seconds,
            "max_requests": max_requests, "connections": connections}
    return PageLoad(tool="python", **_child(spec, seconds))


def signins(app_url: str, logins: list[str], *, seconds: float, max_signins: int,
            concurrency: int, keep_cookies: bool = False) -> SignInLoad:
    """Sign the logins in, round-robin, from ``concurrency`` browsers in a separate process."""
    spec = {"kind": "signins", "url": app_url, "logins": logins, "seconds": seconds,
            "max_requests": max_signins, "connections": concurrency, "keep": keep_cookies}
    return SignInLoad(**_child(spec, seconds))


def _wrk(url: str, cookies: list[str], seconds: float, max_requests: int,
         connections: int) -> PageLoad:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        script, cookie_file = Path(folder, "bench.lua"), Path(folder, "cookies.txt")
        script.write_text(WRK_SCRIPT)
        cookie_file.write_text("".join(cookie + "\n" for cookie in cookies))
        threads = 1  # one wrk thread is far faster than one sync worker; it leaves a core free
        per_thread_cap = math.ceil(max_requests / threads)
        argv = ["wrk", f"--threads={threads}", f"--connections={connections}",
                f"--duration={max(1, math.ceil(seconds))}s", "--timeout=10s", "--latency",
                f"--script={script}", url, "--", str(cookie_file), str(per_thread_cap),
                SIGNED_IN_MARKER]
        output = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603
                                timeout=seconds + GRACE, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_RESULT "))
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    return PageLoad(tool="wrk", **result)


def _child(spec: dict, seconds: float) -> dict:
    argv = [sys.executable, "-m", "bench.load", json.dumps(spec)]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + GRACE,  # noqa: S603
                            check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    return json.loads(output)


# --- the Python client, run in its own process ---------------------------------------------


class Worker(threading.Thread):
    """One connection's worth of load: requests in a loop until the deadline or the cap."""

    def __init__(self, spec: dict, deadline: float, budget: Budget, index: int) -> None:
        super().__init__(daemon=True)
        self.spec, self.deadline, self.budget, self.index = spec, deadline, budget, index
        self.latencies: list[float] = []
        self.cookies: dict[int, str] = {}  # turn -> session cookie, when the spec keeps them
        self.signed_in = self.rewrites = self.errors = 0
        self.first_failure = ""

    def run(self) -> None:
        if self.spec["kind"] == "pages":
            self._pages()
        else:
            self._signins()

    def _pages(self) -> None:
        url, cookies = self.spec["url"], self.spec["cookies"]
        turn = self.index
        while time.monotonic() < self.deadline and self.budget.take():
            cookie = cookies[turn % len(cookies)] if cookies else None
            turn += 1
            started = time.perf_counter()
            try:
                answer = fetch("GET", url, cookie=cookie)
            except OSError:
                self.errors += 1
                continue
            self.latencies.append(time.perf_counter() - started)
            if answer.status != 200:
                self.errors += 1
            elif SIGNED_IN_MARKER in answer.body:
                self.signed_in += 1
            if answer.cookie() is not None:
                self.rewrites += 1

    def _signins(self) -> None:
        browser, logins = Browser(self.spec["url"]), self.spec["logins"]
        while time.monotonic() < self.deadline:
            turn = self.budget.take()
            if not turn:
                break
            try:
                done = browser.sign_in(logins[(turn - 1) % len(logins)])
            except (OSError, SignInFailed) as error:
                self.errors += 1
                self.first_failure = self.first_failure or str(error)[:300]
                continue
            self.latencies.append(done.seconds)
            if self.spec.get("keep"):
                self.cookies[turn] = done.cookie


class Budget:
    """A shared request cap: ``take`` hands out turn numbers 1..cap, then 0."""

    def __init__(self, cap: int) -> None:
        self._cap, self._taken, self._lock = cap, 0, threading.Lock()

    def take(self) -> int:
        with self._lock:
            if self._taken >= self._cap:
                return 0
            self._taken += 1
            return self._taken


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def run_child(spec: dict) -> dict:
    """Run the Python client described by spec; return its summary."""
    started = time.perf_counter()
    deadline = time.monotonic() + spec["seconds"]
    budget = Budget(spec["max_requests"])
    workers = [Worker(spec, deadline, budget, index) for index in range(spec["connections"])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(spec["seconds"] + GRACE / 2)
    seconds = time.perf_counter() - started
    latencies = [value for worker in workers for value in worker.latencies]
    errors = sum(worker.errors for worker in workers)
    summary = {"seconds": seconds, "p50_ms": percentile(latencies, 0.50) * 1000,
               "p99_ms": percentile(latencies, 0.99) * 1000}
    if spec["kind"] == "pages":
        return {**summary, "requests": len(latencies) + errors, "rps": len(latencies) / seconds,
                "signed_in": sum(w.signed_in for w in workers),
                "cookie_rewrites": sum(w.rewrites for w in workers), "errors": errors}
    kept = {turn: cookie for worker in workers for turn, cookie in worker.cookies.items()}
    return {**summary, "signins": len(latencies), "failures": errors,
            "cookies": [kept[turn] for turn in sorted(kept)],
            "per_second": len(latencies) / seconds,
            "first_failure": next((w.first_failure for w in workers if w.first_failure), "")}


if __name__ == "__main__":
    print(json.dumps(run_child(json.loads(sys.argv[1]))))
