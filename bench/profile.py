"""``python -m bench.profile``: where a signed-in request's time goes, this app against bare Flask.

Signs one user in (emulator + gunicorn, as the benchmark does), then runs the same GET / many
times in-process under cProfile for both apps and prints (1) own time per module group, per
request, side by side, and (2) this app's top functions by own time. Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from collections import defaultdict
from pathlib import Path

from bench import inprocess
from bench.__main__ import FULL, Bench

GROUPS = (  # first match wins: (label, substring of the code's file path)
    ("itsdangerous (CSRF token signing)", "/itsdangerous/"),
    ("flask_wtf (CSRF)", "/flask_wtf/"),
    ("flask_login", "/flask_login/"),
    ("jinja2 + templates", "/jinja2/"),
    ("jinja2 + templates", "/templates/"),
    ("markupsafe", "/markupsafe/"),
    ("werkzeug", "/werkzeug/"),
    ("flask", "/flask/"),
    ("jwt / cryptography", "/jwt/"),
    ("jwt / cryptography", "/cryptography/"),
    ("supabase libraries", "/supabase"),
    ("json / zlib / base64 / hmac (stdlib)", "json"),
    ("json / zlib / base64 / hmac (stdlib)", "zlib"),
    ("json / zlib / base64 / hmac (stdlib)", "base64"),
    ("json / zlib / base64 / hmac (stdlib)", "hmac"),
    ("json / zlib / base64 / hmac (stdlib)", "hashlib"),
)


def group_of(filename: str) -> str:
    """The label of the code a profiled function belongs to."""
    for label, needle in GROUPS:
        if needle in filename:
            return label
    if "/bench/" in filename:
        return "bench harness"
    if "site-packages" not in filename and filename.endswith(".py"):
        return "this app's modules" if "/lib/python" not in filename else "other stdlib"
    return "other stdlib / builtins"


def profile(flask_app, site_url: str, cookie: str | None, requests: int) -> pstats.Stats:
    """cProfile ``requests`` GETs of / (after a warm-up)."""
    instrumented = inprocess.Instrumented(flask_app)
    environ = inprocess.environ_for(site_url, cookie)
    for _ in range(200):
        instrumented.request(environ)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        instrumented.request(environ)
    profiler.disable()
    return pstats.Stats(profiler)


def by_group(stats: pstats.Stats, requests: int) -> dict[str, float]:
    """Own time per request (µs) by module group."""
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():
        totals[group_of(filename)] += own / requests * 1e6
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    import app as app_module
    from bench import bare_app

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        bench = Bench(FULL, Path(folder))
        try:
            with bench.serve("app"):
                cookie = bench.sign_in_many(["bench-profile"])[0]
            settings = {"SUPABASE_URL": bench.emulator.url,
                        "SUPABASE_KEY": bench.emulator.anon_key, "SECRET_KEY": bench.secret,
                        "SITE_URL": bench.site_url, "TESTING": True,
                        "INSTANCE_PATH": str(bench.work_dir / "instance"),
                        "AUTH_REVALIDATE_SECONDS": 3600}
            app = app_module.create_app(settings)
            app_stats = profile(app, bench.site_url, cookie, args.requests)
            bare_stats = profile(bare_app.create_app(), bench.site_url, None, args.requests)
        finally:
            bench.close()
    app_groups, bare_groups = by_group(app_stats, args.requests), by_group(bare_stats,
                                                                           args.requests)
    print(f"Own time per request under cProfile (µs; profiling inflates every call), "
          f"{args.requests} requests\n")
    print(f"{'':42}{'this app':>10}{'bare':>10}{'extra':>10}")
    for label in sorted(app_groups, key=lambda g: bare_groups.get(g, 0) - app_groups[g]):
        app_us, bare_us = app_groups[label], bare_groups.get(label, 0.0)
        print(f"{label:42}{app_us:10.1f}{bare_us:10.1f}{app_us - bare_us:10.1f}")
    print(f"{'total':42}{sum(app_groups.values()):10.1f}{sum(bare_groups.values()):10.1f}")
    print("\nThis app, top functions by own time:")
    app_stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
