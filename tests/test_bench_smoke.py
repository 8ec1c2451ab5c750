"""The benchmark keeps working: ``python -m bench --smoke`` end to end, and the fallback client.

These check that every section runs and reports sane, well-formed numbers. They never assert
on speed: CI machines are shared and noisy, and the full benchmark is run by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bench import calls, load
from bench.baseline import git, in_git_checkout, worktree

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = 180  # ~30 s on a quiet machine; a bound, not a speed check


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """The JSON of one ``python -m bench --smoke`` run."""
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(path)],  # noqa: S603
                          cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Targets" in done.stdout
    return json.loads(path.read_text())


pytestmark = pytest.mark.slow


def test_meta_says_how_it_was_measured(smoke):
    meta = smoke["meta"]
    assert meta["smoke"] is True
    assert meta["load_tool"] in ("wrk", "python")
    assert meta["gunicorn_workers"] == 1


@pytest.mark.parametrize("config", ["bare", "app", "tutorial"])
def test_pages_were_the_signed_in_page(smoke, config):
    row = smoke["pages"]["configs"][config]
    assert row["requests"] > 0 and row["rps"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["signed_in_share"] == 1.0  # every answer was the signed-in page
    assert row["errors"] == 0 and row["cookie_rewrites"] == 0


@pytest.mark.parametrize("config", ["app", "tutorial"])
def test_sign_in_round_trips_completed(smoke, config):
    row = smoke["signins"]["configs"][config]
    assert row["per_second"] > 0 and row["failures"] == 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_cookie_sizes_cover_a_large_user(smoke):
    cookies = smoke["cookies"]
    assert cookies["large_user"]["identities"] == ["email", "github", "phone"]
    assert cookies["large_user"]["user_metadata_bytes"] >= 1024
    for config in ("app", "tutorial"):
        assert 0 < cookies[config]["typical"] < cookies[config]["large"]


@pytest.mark.parametrize("config", ["app", "tutorial"])
def test_resources_were_read_before_and_after(smoke, config):
    row = smoke["resources"][config]
    assert row["signins"] >= 1 and row["signin_failures"] == 0  # counts may stop at the time cap
    assert row["requests"] >= 1 and row["signed_in_pages"] == row["requests"]
    for moment in ("before", "after"):
        assert row[moment]["threads"] >= 1 and row[moment]["rss_kib"] > 0


def test_scaling_covers_each_user_count(smoke):
    rows = smoke["scaling"]["users"]
    assert [row["users"] for row in rows] == smoke["meta"]["plan"]["user_counts"]
    assert all(row["rps"] > 0 and row["signed_in"] == row["requests"] for row in rows)


def test_inprocess_times_every_case(smoke):
    section = smoke["inprocess"]
    for case in ("bare", "valid_token", "valid_token_first_use", "token_needs_refresh"):
        assert 0 < section[case]["request_median_ms"] <= section[case]["request_p99_ms"]
    for case in ("valid_token", "valid_token_first_use", "token_needs_refresh"):
        assert 0 < section[case]["auth_median_ms"] < section[case]["request_median_ms"] * 1.01


def test_baseline_joined_the_page_rounds_and_its_worktree_is_gone(smoke):
    baseline = smoke["meta"]["baseline"]
    if baseline is None:
        pytest.skip("not a git checkout: the smoke run has no baseline")
    assert baseline["revision"] == "HEAD"  # a smoke run compares HEAD with itself
    assert not Path(baseline["tree"]).exists()
    row = smoke["pages"]["configs"]["before"]
    assert row["requests"] > 0 and row["signed_in_share"] == 1.0
    assert row["errors"] == 0 and row["cookie_rewrites"] == 0
    assert 0 < smoke["cookies"]["before"]["typical"] < smoke["cookies"]["before"]["large"]


def test_calls_are_counted_for_a_whole_simulated_hour(smoke):
    section = smoke["calls"]
    assert set(section) == ({"before", "after"} if smoke["meta"]["baseline"] else {"after"})
    for result in section.values():
        run = result["variants"][0]
        assert run["pages"] == 721 and run["simulated_seconds"] == 3600  # every 5 s, and one
        assert run["calls"]["token/pkce"] == 1 and run["calls"]["logout"] == 1
        assert run["refused"] == {}
        assert run["budget"]["token_calls"] >= 1 and "auth" in run["moved_clock_in"]
    if "before" in section and not smoke["meta"]["git"]["dirty"]:  # the same code twice
        assert section["before"]["variants"][0]["calls"] == section["after"]["variants"][0]["calls"]


@pytest.mark.parametrize("variant", [variant for variant in calls.VARIANTS if variant.hook],
                         ids=lambda variant: variant.hook)
def test_a_custom_access_token_hook_costs_no_more_token_calls(variant):
    """A hook makes the token differ from /user; a person-hour still costs two token calls."""
    from app import create_app

    run = calls.simulate(create_app, calls.app_modules(ROOT), variant)
    assert run["refused"] == {} and run["pages"] == 721
    assert calls.budget(run["calls"], run["forwarded_for"])["token_calls"] <= 2
    assert run["calls"]["GET /user"] >= 59  # the checks still happen, as /user calls


@pytest.mark.parametrize(("method", "url", "kind"), [
    ("POST", "/auth/v1/token?grant_type=pkce", "token/pkce"),
    ("POST", "/auth/v1/token?grant_type=refresh_token", "token/refresh_token"),
    ("GET", "/auth/v1/user", "GET /user"),
    ("POST", "/auth/v1/logout?scope=local", "logout"),
    ("GET", "/auth/v1/.well-known/jwks.json", "JWKS"),
    ("GET", "/auth/v1/settings", "settings"),
    ("PUT", "/auth/v1/user", "PUT /user"),
])
def test_calls_are_told_apart_by_kind(method, url, kind):
    assert calls.kind_of(httpx.Request(method, "http://127.0.0.1:54321" + url)) == kind


@pytest.mark.skipif(not in_git_checkout(), reason="needs a git checkout")
def test_baseline_worktree_is_removed_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError, match="measurement failed"), \
            worktree("HEAD", tmp_path) as baseline:
        assert (baseline.tree / "app.py").is_file()
        raise RuntimeError("measurement failed")
    assert not (tmp_path / "baseline").exists()
    assert str(tmp_path) not in git("worktree", "list")


def test_every_target_is_reported(smoke):
    names = {target["target"] for target in smoke["targets"]}
    assert len(names) == 7
    assert all(isinstance(target["met"], bool) for target in smoke["targets"])


class Page(BaseHTTPRequestHandler):
    """A stand-in for a signed-in page: greets whoever sends a cookie."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b"Hello, someone" if self.headers.get("Cookie") else b"Welcome"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_python_load_client_is_bounded_and_counts_signed_in_pages():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        result = load.pages(url, ["session=a", "session=b"], seconds=5, max_requests=40,
                            connections=2, tool="python")
    finally:
        server.shutdown()
        server.server_close()
    assert result.tool == "python"
    assert result.requests == 40 and result.signed_in == 40  # the cap stopped it, not the clock
    assert result.errors == 0 and result.seconds < 5


def test_emulator_benchmark_runs():
    done = subprocess.run([sys.executable, "-m", "bench.emulator", "--count", "5"],  # noqa: S603
                          cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"sign-in round trip median \d+\.\d+ ms .* refresh median \d+\.\d+ ms",
                     done.stdout)
