"""``python -m bench [--smoke] [--baseline REV] [--json PATH]``: every measurement, one run.

One emulator process for the whole run; gunicorn with one sync worker serves one app at a
time (bare Flask, this app, the tutorial design) on the same port; load comes from a separate
process (wrk, or bench/load.py's bounded Python client). Page measurements are interleaved
round by round (bare, app, tutorial, bare, ...) so drift on the machine hits all alike, and
each ratio is the ratio of medians over the rounds. With ``--baseline REV`` the app as it was
at REV ("before", from a git worktree, see bench/baseline.py) joins the page rounds, the
cookie sizes and the call count next to this checkout ("after").

1. signed-in page throughput and latency      5. cost spread over 1..1,000 distinct users
2. sign-in round trips per second              6. in-process auth overhead per request
3. session cookie sizes                        7. calls to Supabase per person-hour
4. worker threads and RSS after heavy use
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import calls, inprocess, load, report
from bench.baseline import Baseline, in_git_checkout, worktree
from bench.baseline import environment as baseline_environment
from bench.client import Browser, Response, fetch
from bench.servers import ROOT, Emulator, Gunicorn, free_port

# Tokens stay valid for the whole run (the emulator's JWT_EXP is 3,600 s), and the app
# re-checks them with Supabase only every AUTH_REVALIDATE_SECONDS; the load tool replays one
# cookie, so it must not be rotated under it. The refresh path is measured in item 6. The same
# holds for a baseline: before, a re-check was a refresh; now it is a GET /user (and a refresh
# comes a minute before expiry); with 3,600 s neither version calls Supabase during the page
# rounds (no cookie is rewritten), so "before" and "after" compare like with like.
REVALIDATE_SECONDS = 3600


@dataclass(frozen=True)
class Plan:
    """How much of everything to do."""

    rounds: int
    warmup_seconds: float
    page_seconds: float
    page_cap: int
    connections: int
    signin_seconds: float
    signin_concurrency: int
    user_counts: tuple[int, ...]
    scaling_seconds: float
    heavy_signins: int
    heavy_requests: int
    heavy_seconds: float  # time cap for each half of item 4 (sign-ins, then requests)
    inprocess_requests: int
    inprocess_refreshes: int
    call_variants: int  # how many of bench/calls.py's VARIANTS to simulate (one hour each)


FULL = Plan(rounds=3, warmup_seconds=2, page_seconds=6, page_cap=200_000, connections=2,
            signin_seconds=8, signin_concurrency=2, user_counts=(1, 10, 100, 1000),
            scaling_seconds=5, heavy_signins=5000, heavy_requests=50_000, heavy_seconds=90,
            inprocess_requests=3000, inprocess_refreshes=200, call_variants=3)
SMOKE = Plan(rounds=1, warmup_seconds=0, page_seconds=1, page_cap=50, connections=2,
             signin_seconds=1, signin_concurrency=2, user_counts=(1, 3),
             scaling_seconds=1, heavy_signins=3, heavy_requests=20, heavy_seconds=2,
             inprocess_requests=50, inprocess_refreshes=3, call_variants=1)
CONFIGS = ("bare", "app", "tutorial")
WITH_BASELINE = ("bare", "app", "before", "tutorial")
LARGE_METADATA_BYTES = 1024


class Bench:
    """The servers of one run and the sessions signed in to them."""

    def __init__(self, plan: Plan, work_dir: Path, baseline: Baseline | None = None) -> None:
        self.plan = plan
        self.work_dir = work_dir
        self.baseline = baseline
        self.configs = WITH_BASELINE if baseline else CONFIGS  # what the page rounds serve
        self.tool = load.load_tool()
        self.port = free_port()
        self.site_url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(32)
        self.emulator = Emulator.start(self.site_url, work_dir)
        self.cookies: dict[str, list[str]] = {}  # config -> signed-in session cookies
        self.sections: list[str] = list(SECTIONS)  # what this run measures

    def close(self) -> None:
        self.emulator.stop()

    def serve(self, config: str) -> Gunicorn:
        """gunicorn serving one configuration on the run's port (use as a context manager)."""
        env = {"SUPABASE_URL": self.emulator.url, "SUPABASE_KEY": self.emulator.anon_key,
               "SECRET_KEY": self.secret, "SITE_URL": self.site_url,
               "AUTH_REVALIDATE_SECONDS": str(REVALIDATE_SECONDS)}
        if config != "before":
            return Gunicorn(config, self.port, env, self.work_dir)
        tree = self.baseline.tree
        return Gunicorn(config, self.port, {**env, **baseline_environment(tree)},
                        self.work_dir, tree=tree)

    def page_load(self, cookies: list[str], seconds: float, cap: int) -> load.PageLoad:
        return load.pages(self.site_url + "/", cookies, seconds=seconds, max_requests=cap,
                          connections=self.plan.connections, tool=self.tool)

    def warm_up(self, cookies: list[str]) -> None:
        """Load the page for a moment first: imports, JWKS, templates, caches."""
        if self.plan.warmup_seconds:
            self.page_load(cookies, self.plan.warmup_seconds, self.plan.page_cap)

    def sign_in_many(self, logins: list[str]) -> list[str]:
        """Session cookies for these logins (the server must be up), signed in by a load process."""
        done = load.signins(self.site_url, logins, seconds=max(60, len(logins) / 5),
                            max_signins=len(logins), concurrency=self.plan.signin_concurrency,
                            keep_cookies=True)
        if done.failures or len(done.cookies) != len(logins):
            raise RuntimeError(f"could not sign in {len(logins)} users: {done.first_failure}")
        return done.cookies


def prepare_sessions(bench: Bench) -> dict:
    """Sign in the users every section replays, and measure the cookies (item 3)."""
    most_users = max(bench.plan.user_counts)
    seed_large_user(bench)
    cookies = {}
    for config in ("app", "before", "tutorial"):
        if config not in bench.configs:
            continue
        with bench.serve(config):
            browser = Browser(bench.site_url)
            typical = browser.sign_in("bench-typical", name="Typical Octocat")
            large = browser.sign_in("bench-large", name="Large Metadata",
                                    email="bench-large@example.com")
            cookies[config] = {"typical": cookie_size(typical.cookie),
                               "large": cookie_size(large.cookie)}
            many = config == "app" and {"scaling", "resources"} & set(bench.sections)
            count = most_users if many else 1
            bench.cookies[config] = bench.sign_in_many([f"bench-user-{n}" for n in range(count)])
            if config == "app":
                bench.cookies["inprocess-refresh"] = [browser.sign_in("bench-refresh").cookie]
    bench.cookies["bare"] = []
    cookies["large_user"] = large_user_facts(bench)
    return cookies


def json_bytes(value: object) -> bytes:
    """Compact JSON, as the emulator stores and signs it."""
    return json.dumps(value, separators=(",", ":")).encode()


def cookie_size(cookie: str) -> int:
    """Bytes of ``session=value`` as the browser stores and sends it."""
    return len(cookie.encode())


def seed_large_user(bench: Bench) -> None:
    """A user with email and phone identities and ~1 KB of user_metadata (the admin API).

    Signing in with GitHub under the same verified email links a third identity.
    """
    noise = random.Random(7)  # noqa: S311 - reproducible, incompressible filler
    bio = "".join(noise.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(700))
    metadata = {"bio": bio, "company": "Large Metadata Ltd", "location": "Lisbon, Portugal",
                "blog": "https://example.com/a/rather/long/blog/address/for/the/benchmark",
                "preferences": {"theme": "dark", "language": "pt-PT", "newsletter": True,
                                "timezone": "Europe/Lisbon", "digest": "weekly"},
                "roles": ["maintainer", "reviewer", "triager", "release-manager"]}
    filler = LARGE_METADATA_BYTES - len(json_bytes(metadata))
    metadata["notes"] = "".join(noise.choice("abcdefghijklmnop")
                                for _ in range(max(0, filler - 12)))
    body = {"email": "bench-large@example.com", "phone": "15550100123", "email_confirm": True,
            "phone_confirm": True, "user_metadata": metadata}
    answer = admin(bench, "POST", "/auth/v1/admin/users", body)
    if answer.status != 200:
        raise RuntimeError(f"seeding the large user failed: {answer.status} {answer.body[:300]}")


def large_user_facts(bench: Bench) -> dict:
    """How many identities the large user has and how big its user_metadata is."""
    listed = json.loads(admin(bench, "GET", "/auth/v1/admin/users?filter=bench-large").body)
    user_id = next(u["id"] for u in listed["users"] if u.get("email") == "bench-large@example.com")
    user = json.loads(admin(bench, "GET", f"/auth/v1/admin/users/{user_id}").body)
    identities = [i["provider"] for i in user.get("identities") or []]
    return {"identities": sorted(identities),
            "user_metadata_bytes": len(json_bytes(user["user_metadata"]))}


def admin(bench: Bench, method: str, path: str, body: dict | None = None) -> Response:
    """A call to the emulator's admin API with the service_role key."""
    key = bench.emulator.service_role_key
    return fetch(method, bench.emulator.url + path, json_body=body,
                 headers={"apikey": key, "Authorization": f"Bearer {key}"})


def measure_pages(bench: Bench) -> dict:
    """Item 1: the signed-in page under load, interleaved rounds of bare, app (after),
    the baseline (before, with --baseline) and tutorial."""
    rounds: dict[str, list[dict]] = {config: [] for config in bench.configs}
    for _ in range(bench.plan.rounds):
        for config in bench.configs:
            cookies = bench.cookies[config][:1]  # one signed-in person, one cookie
            with bench.serve(config) as server:
                bench.warm_up(cookies)
                cpu_before = server.worker_cpu()
                result = bench.page_load(cookies, bench.plan.page_seconds, bench.plan.page_cap)
                cpu_ms = (server.worker_cpu() - cpu_before) * 1000 / max(1, result.requests)
                rounds[config].append({**asdict(result), **server.worker_status(),
                                       "worker_cpu_ms": cpu_ms})
    return {"configs": {config: summarise(results) for config, results in rounds.items()},
            "rounds": rounds, "revalidate_seconds": REVALIDATE_SECONDS}


def measure_signins(bench: Bench) -> dict:
    """Item 2: whole sign-in round trips per second, app and tutorial, interleaved."""
    logins = [f"bench-signin-{n}" for n in range(20)]
    rounds: dict[str, list[dict]] = {"app": [], "tutorial": []}
    for _ in range(bench.plan.rounds):
        for config in rounds:
            with bench.serve(config):
                if bench.plan.warmup_seconds:  # imports, JWKS, templates
                    load.signins(bench.site_url, logins[:2], seconds=5, max_signins=2,
                                 concurrency=1)
                done = load.signins(bench.site_url, logins, seconds=bench.plan.signin_seconds,
                                    max_signins=100_000,
                                    concurrency=bench.plan.signin_concurrency)
                result = asdict(done)
                result.pop("cookies")
                rounds[config].append(result)
    summary = {config: {key: statistics.median(r[key] for r in results)
                        for key in ("per_second", "p50_ms", "p99_ms")}
               | {"failures": sum(r["failures"] for r in results),
                  "spread": spread([r["per_second"] for r in results])}
               for config, results in rounds.items()}
    return {"configs": summary, "rounds": rounds}


def measure_scaling(bench: Bench) -> dict:
    """Item 5: this app's signed-in page with the load spread over 1..N distinct users."""
    results = []
    with bench.serve("app") as server:
        bench.warm_up(bench.cookies["app"][:1])
        for users in bench.plan.user_counts:
            cookies = bench.cookies["app"][:users]
            bench.warm_up(cookies)
            result = bench.page_load(cookies, bench.plan.scaling_seconds, bench.plan.page_cap)
            results.append({"users": users, **asdict(result), **server.worker_status()})
    rates = [r["rps"] for r in results]
    return {"users": results, "slowest_over_fastest": min(rates) / max(rates) if rates else 0}


def measure_resources(bench: Bench) -> dict:
    """Item 4: worker threads, RSS and open files before and after heavy use."""
    plan = bench.plan
    results = {}
    for config in ("app", "tutorial"):
        cookies = bench.cookies[config]
        with bench.serve(config) as server:
            bench.warm_up(cookies[:1])
            if plan.warmup_seconds:
                load.signins(bench.site_url, ["bench-heavy-0"], seconds=5, max_signins=1,
                             concurrency=1)
            before = server.worker_status()
            signed = load.signins(bench.site_url, [f"bench-heavy-{n}" for n in range(200)],
                                  seconds=plan.heavy_seconds, max_signins=plan.heavy_signins,
                                  concurrency=plan.signin_concurrency)
            after_signins = server.worker_status()
            pages = bench.page_load(cookies, plan.heavy_seconds, plan.heavy_requests)
            after = server.worker_status()
        results[config] = {
            "signins": signed.signins, "signin_failures": signed.failures,
            "signin_seconds": signed.seconds, "requests": pages.requests,
            "request_seconds": pages.seconds, "signed_in_pages": pages.signed_in,
            "before": before, "after_signins": after_signins, "after": after,
            "thread_growth": after["threads"] - before["threads"],
            "rss_growth": after["rss_kib"] / before["rss_kib"] - 1,
            "complete": signed.signins >= plan.heavy_signins
                        and pages.requests >= plan.heavy_requests,
        }
    return results


def measure_inprocess(bench: Bench) -> dict:
    """Item 6: auth's share of one request, in-process (see bench/inprocess.py)."""
    import app as app_module
    from bench import bare_app

    settings = {"SUPABASE_URL": bench.emulator.url, "SUPABASE_KEY": bench.emulator.anon_key,
                "SECRET_KEY": bench.secret, "SITE_URL": bench.site_url, "TESTING": True,
                "INSTANCE_PATH": str(bench.work_dir / "instance"),
                "AUTH_REVALIDATE_SECONDS": REVALIDATE_SECONDS}
    requests = bench.plan.inprocess_requests
    cookie = bench.cookies["app"][0]
    app = app_module.create_app(settings)
    first_use = app_module.create_app(settings)
    refreshing = app_module.create_app({**settings, "AUTH_REVALIDATE_SECONDS": 0})
    verifier = first_use.extensions["supabase"].tokens
    try:
        return {
            "bare": inprocess.measure_pages(bare_app.create_app(), bench.site_url, None,
                                            requests),
            "valid_token": inprocess.measure_pages(app, bench.site_url, cookie, requests),
            "valid_token_first_use": inprocess.measure_pages(
                first_use, bench.site_url, cookie, max(1, requests // 5),
                before_each=verifier._claims.clear),  # every request verifies the signature
            "token_needs_refresh": inprocess.measure_refreshes(
                refreshing, bench.site_url, bench.cookies["inprocess-refresh"][0],
                bench.plan.inprocess_refreshes),
        }
    finally:
        for flask_app in (app, first_use, refreshing):
            flask_app.extensions["supabase"].http.close()


def measure_calls(bench: Bench) -> dict:
    """Item 7: calls to Supabase per simulated person-hour, by kind (see bench/calls.py)."""
    trees = {"after": ROOT} | ({"before": bench.baseline.tree} if bench.baseline else {})
    counted = {version: calls.count(tree, bench.plan.call_variants)
               for version, tree in trees.items()}
    for result in counted.values():
        for variant in result["variants"]:
            variant["budget"] = calls.budget(variant["calls"], variant["forwarded_for"])
    return counted


SECTIONS = {"pages": measure_pages, "signins": measure_signins, "scaling": measure_scaling,
            "resources": measure_resources, "inprocess": measure_inprocess,
            "calls": measure_calls}


def summarise(results: list[dict]) -> dict:
    """Median over rounds, and the spread of throughput (max/min - 1)."""
    keys = ("rps", "p50_ms", "p99_ms", "worker_cpu_ms")
    summary = {key: statistics.median(r[key] for r in results) for key in keys}
    summary["spread"] = spread([r["rps"] for r in results])
    summary["requests"] = sum(r["requests"] for r in results)
    summary["signed_in_share"] = (sum(r["signed_in"] for r in results)
                                  / max(1, summary["requests"]))
    summary["cookie_rewrites"] = sum(r["cookie_rewrites"] for r in results)
    summary["errors"] = sum(r["errors"] for r in results)
    return summary


def spread(values: list[float]) -> float:
    """max/min - 1 over the rounds (0 for one round)."""
    return max(values) / min(values) - 1 if values and min(values) > 0 else 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts (seconds): checks the benchmark works, measures nothing")
    parser.add_argument("--json", type=Path, help="where to write the results "
                        "(default bench/results/<time>[-smoke].json)")
    parser.add_argument("--only", type=lambda text: text.split(","), default=list(SECTIONS),
                        metavar="SECTION[,...]",
                        help=f"run only these sections of {','.join(SECTIONS)} "
                             "(the sessions and cookie sizes always run: the rest needs them)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the app as it was at this git revision (\"before\"), "
                             "from a temporary worktree; default none, except that --smoke "
                             "compares HEAD with itself to exercise that code ('' for none)")
    return parser.parse_args(argv)


def baseline_revision(args: argparse.Namespace) -> str | None:
    """The revision to compare with: as asked, or HEAD in a smoke run of a git checkout."""
    if args.baseline is not None or not args.smoke:
        return args.baseline or None
    return "HEAD" if in_git_checkout() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(sorted(unknown))}")
    plan = SMOKE if args.smoke else FULL
    revision = baseline_revision(args)
    started = time.monotonic()
    results: dict = {"meta": report.machine(plan, smoke=args.smoke)}
    # The worktree goes before the folder it is in (``with`` leaves from the right).
    with tempfile.TemporaryDirectory(prefix="bench-") as folder, contextlib.ExitStack() as stack:
        baseline = stack.enter_context(worktree(revision, Path(folder))) if revision else None
        results["meta"]["baseline"] = baseline.describe() if baseline else None
        bench = Bench(plan, Path(folder), baseline)
        bench.sections = args.only
        results["meta"]["load_tool"] = bench.tool
        try:
            steps = [("cookies", prepare_sessions)] + [
                (name, step) for name, step in SECTIONS.items() if name in args.only]
            for name, step in steps:
                step_started = time.monotonic()
                results[name] = step(bench)
                print(f"[bench] {name}: {time.monotonic() - step_started:.1f} s",
                      file=sys.stderr, flush=True)
        finally:
            bench.close()
    results["meta"]["seconds"] = time.monotonic() - started
    results["meta"]["load_after"] = os.getloadavg()
    results["targets"] = report.targets(results)
    path = args.json or report.default_path(ROOT, smoke=args.smoke)
    report.write_json(results, path)
    print(report.table(results))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
