"""The results: the machine they came from, the targets, a printed table and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

NAMES = {"bare": "a. bare Flask (ceiling)", "app": "b. this app",
         "tutorial": "c. tutorial design"}
CALL_ROWS = {"token/pkce": "POST /token, pkce", "token/refresh_token": "POST /token, refresh",
             "GET /user": "GET /user", "logout": "POST /logout", "JWKS": "GET JWKS *",
             "settings": "GET /settings *"}


def machine(plan, *, smoke: bool) -> dict:
    """Where and with what the numbers were taken."""
    return {
        "smoke": smoke,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in
                     ("flask", "gunicorn", "supabase", "supabase-auth", "httpx", "pyjwt")},
        "git": _git_state(),
        "gunicorn_workers": 1,
        "worker_class": "sync",
        "load_before": os.getloadavg(),
        "plan": asdict(plan),
    }


def targets(results: dict) -> list[dict]:
    """Each target of the issue with the measured value and whether it is met (when measured)."""
    checks = []
    if "pages" in results:
        pages = results["pages"]["configs"]
        b_over_a = pages["app"]["rps"] / pages["bare"]["rps"]
        b_over_c = pages["app"]["rps"] / pages["tutorial"]["rps"]
        checks += [("throughput b/a", ">= 0.85", b_over_a, b_over_a >= 0.85),
                   ("throughput b/c", ">= 20", b_over_c, b_over_c >= 20)]
    if "inprocess" in results:
        overhead = results["inprocess"]["valid_token"]["auth_median_ms"]
        checks.append(("in-process auth, valid token (median ms)", "<= 0.3", overhead,
                       overhead <= 0.3))
    if "resources" in results:
        resources = results["resources"]["app"]
        checks += [("worker thread growth (item 4)", "0", resources["thread_growth"],
                    resources["thread_growth"] <= 0),
                   ("worker RSS growth (item 4)", "< 10%", resources["rss_growth"],
                    resources["rss_growth"] < 0.10)]
    cookies = results["cookies"]["app"]
    checks += [("cookie, typical GitHub user (bytes)", "<= 2000", cookies["typical"],
                cookies["typical"] <= 2000),
               ("cookie, worst case (bytes)", "<= 4096", cookies["large"],
                cookies["large"] <= 4096)]
    return [{"target": name, "wanted": wanted, "value": value, "met": bool(met)}
            for name, wanted, value, met in checks]


def table(results: dict) -> str:
    """The printed report: a header, one block per section that ran, the targets."""
    meta = results["meta"]
    plan = meta["plan"]
    smoke = " (SMOKE: tiny counts, not a measurement)" if meta["smoke"] else ""
    lines = [
        f"Flask + Supabase Auth benchmark{smoke}",
        f"{meta['cpus']} CPUs ({meta['cpu']}), Python {meta['python']}, gunicorn "
        f"{meta['packages']['gunicorn']} with 1 sync worker, load: {meta['load_tool']} "
        f"({plan['connections']} connections), load average at start "
        f"{meta['load_before'][0]:.2f}",
        f"Medians over {plan['rounds']} interleaved round(s); spread = max/min - 1 of "
        "throughput over rounds.",
    ]
    for section, render in (("pages", _pages), ("signins", _signins), ("cookies", _cookies),
                            ("resources", _resources), ("scaling", _scaling),
                            ("inprocess", _inprocess), ("calls", _calls)):
        if section in results:
            lines += ["", *render(results[section], meta)]
    lines += ["", "Targets"]
    for target in results["targets"]:
        value = target["value"]
        shown = f"{value:.1%}" if "RSS" in target["target"] else (
            f"{value:.3f}" if isinstance(value, float) else str(value))
        lines.append(f"   [{'met' if target['met'] else 'MISSED':>6}] {target['target']}: "
                     f"{shown} (wanted {target['wanted']})")
    lines.append(f"\nWhole run: {meta['seconds']:.0f} s; load average at end "
                 f"{meta['load_after'][0]:.2f}.")
    return "\n".join(lines)


def names(meta: dict) -> dict[str, str]:
    """Row labels; with a baseline, this app is "after" and the baseline "before"."""
    baseline = meta.get("baseline")
    if not baseline:
        return NAMES
    return {**NAMES, "app": "b. this app, after", "before": f"b0. before: {_short(baseline)}"}


def _short(baseline: dict) -> str:
    revision = baseline["revision"]
    return revision if len(revision) <= 12 else baseline["commit"][:9]


def _pages(section: dict, meta: dict) -> list[str]:
    pages = section["configs"]
    labels = names(meta)
    lines = ["1. Signed-in page, GET / (same template; only auth differs; worker CPU = the "
             "gunicorn worker's CPU ms per request)",
             f"   {'':34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'spread':>8}{'signed-in':>11}"
             f"{'CPU ms':>8}"]
    for config in ("bare", "app", "before", "tutorial"):
        if config not in pages:
            continue
        row = pages[config]
        lines.append(f"   {labels[config]:34}{row['rps']:9.1f}{row['p50_ms']:9.2f}"
                     f"{row['p99_ms']:9.2f}{row['spread']:8.1%}{row['signed_in_share']:11.1%}"
                     f"{row['worker_cpu_ms']:8.3f}")
    app, bare, tutorial = pages["app"], pages["bare"], pages["tutorial"]
    lines.append(f"   b/a = {app['rps'] / bare['rps']:.2f}    b/c = "
                 f"{app['rps'] / tutorial['rps']:.1f}    (from worker CPU per request: b/a = "
                 f"{bare['worker_cpu_ms'] / app['worker_cpu_ms']:.2f}, b/c = "
                 f"{tutorial['worker_cpu_ms'] / app['worker_cpu_ms']:.1f})")
    if "before" in pages:
        lines += _before_and_after(pages, section.get("revalidate_seconds"))
    return lines


def _before_and_after(pages: dict, revalidate: int | None) -> list[str]:
    """after/bare, before/bare and after/before, by requests and by worker CPU per request."""
    after, before, bare = pages["app"], pages["before"], pages["bare"]

    def ratios(key: str, invert: bool) -> str:
        def ratio(a: dict, b: dict) -> float:
            return b[key] / a[key] if invert else a[key] / b[key]
        return (f"after/bare = {ratio(after, bare):.2f}, before/bare = {ratio(before, bare):.2f}, "
                f"after/before = {ratio(after, before):.2f}")

    rewrites = after["cookie_rewrites"] + before["cookie_rewrites"]
    return [f"   by requests:               {ratios('rps', invert=False)}",
            f"   by worker CPU per request: {ratios('worker_cpu_ms', invert=True)}",
            f"   like with like: AUTH_REVALIDATE_SECONDS={revalidate} and tokens of 3,600 s, so "
            "neither version calls",
            f"   Supabase during the rounds (cookies rewritten by a re-check or a refresh: "
            f"{rewrites})"]


def _signins(section: dict, meta: dict) -> list[str]:
    signins = section["configs"]
    lines = ["2. Sign-in round trips (start -> Supabase -> stand-in approval -> callback -> "
             "exchange -> first page)",
             f"   {'':34}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'spread':>8}{'failures':>10}"]
    for config in ("app", "tutorial"):
        row = signins[config]
        lines.append(f"   {NAMES[config]:34}{row['per_second']:9.1f}{row['p50_ms']:9.1f}"
                     f"{row['p99_ms']:9.1f}{row['spread']:8.1%}{row['failures']:10d}")
    lines.append(f"   app/tutorial = "
                 f"{signins['app']['per_second'] / signins['tutorial']['per_second']:.1f}")
    return lines


def _cookies(cookies: dict, meta: dict) -> list[str]:
    large = cookies["large_user"]
    labels = names(meta)
    lines = ["3. Session cookie, bytes of session=... "
             f"(large: identities {'+'.join(large['identities'])}, "
             f"user_metadata {large['user_metadata_bytes']} B)",
             f"   {'':34}{'typical':>9}{'large':>9}"]
    for config in ("app", "before", "tutorial"):
        if config in cookies:
            lines.append(f"   {labels[config]:34}{cookies[config]['typical']:9d}"
                         f"{cookies[config]['large']:9d}")
    return lines


def _resources(section: dict, meta: dict) -> list[str]:
    plan = meta["plan"]
    lines = [f"4. Worker after up to {plan['heavy_signins']:,} sign-ins and "
             f"{plan['heavy_requests']:,} signed-in requests "
             f"(each half capped at {plan['heavy_seconds']:.0f} s)",
             f"   {'':22}{'sign-ins':>9}{'requests':>10}{'threads':>13}{'RSS MiB':>17}"
             f"{'growth':>8}{'fds':>9}"]
    for config in ("app", "tutorial"):
        row = section[config]
        before, after = row["before"], row["after"]
        lines.append(
            f"   {NAMES[config]:22}{row['signins']:9d}{row['requests']:10d}"
            f"{before['threads']:6d} ->{after['threads']:5d}"
            f"{before['rss_kib'] / 1024:8.1f} ->{after['rss_kib'] / 1024:6.1f}"
            f"{row['rss_growth']:8.1%}{before['fds']:4d} ->{after['fds']:3d}"
            + ("" if row["complete"] else "  (time cap hit)"))
    return lines


def _scaling(section: dict, meta: dict) -> list[str]:
    rows = section["users"]

    def line(label: str, cell) -> str:
        return "   " + f"{label:12}" + "".join(cell(row) for row in rows)

    return ["5. This app, load spread over N distinct signed-in users",
            line("users", lambda row: f"{row['users']:>9d}"),
            line("req/s", lambda row: f"{row['rps']:9.1f}"),
            line("p50 ms", lambda row: f"{row['p50_ms']:9.2f}"),
            line("p99 ms", lambda row: f"{row['p99_ms']:9.2f}"),
            line("RSS MiB", lambda row: f"{row['rss_kib'] / 1024:9.1f}"),
            f"   slowest/fastest = {section['slowest_over_fastest']:.2f}"]


def _inprocess(section: dict, meta: dict) -> list[str]:
    lines = ["6. In-process, one GET / (median ms; auth = open_session + load_user + "
             "csrf_token + save_session)",
             f"   {'':40}{'request':>9}{'p99':>8}{'auth':>8}{'p99':>8}{'open':>8}{'load':>8}"
             f"{'csrf':>8}{'save':>8}"]
    labels = {"bare": "bare page (no auth)", "valid_token": "valid token (claims cached)",
              "valid_token_first_use": "valid token, first use (ES256 verify)",
              "token_needs_refresh": "token needs refresh (Supabase call)"}
    for key, label in labels.items():
        row = section[key]
        cells = f"{row['request_median_ms']:9.3f}{row['request_p99_ms']:8.3f}"
        if "auth_median_ms" in row:
            cells += (f"{row['auth_median_ms']:8.3f}{row['auth_p99_ms']:8.3f}"
                      + "".join(f"{row[f'{phase}_median_ms']:8.3f}" for phase in
                                ("open_session", "load_user", "csrf_token", "save_session")))
        lines.append(f"   {label:40}{cells}")
    return lines


CALL_NOTES = (
    "Budget: 150 POST /token per 5 min per address, 1,800 an hour. Without Sb-Forwarded-For every",
    "person's calls count against the server's address; with it (when the project honours it)",
    "each person has a bucket of their own, so the server's address sets no cap.",
    "* per process, not per person: the JWKS when a token needs verifying (at most every 10 min),",
    "the settings when a sign-in starts (at most once a minute); one process here.",
    "A person-hour here includes its sign-in (the pkce call); each further hour costs one less.",
    "Hook: the project's custom access token hook adds a user_role claim (claim) or rewrites",
    "app_metadata in the token (app_md); it runs at the sign-in and at every refresh.",
)


def _calls(section: dict, meta: dict) -> list[str]:
    versions = [version for version in ("before", "after") if version in section]
    runs = {version: section[version]["variants"] for version in versions}
    variants = [run["variant"] for run in runs[versions[-1]]]
    cell = 9 if len(versions) > 1 else 13

    def line(label: str, value) -> str:
        return f"   {label:30}" + "".join(f"{value(runs[version][index]):>{cell}}"
                                          for index in range(len(variants))
                                          for version in versions)

    seen = {kind for version in versions for run in runs[version] for kind in run["calls"]}
    kinds = [*CALL_ROWS, *sorted(seen - set(CALL_ROWS))]
    lines = ["7. Calls to Supabase per person-hour, by kind (sign in, GET / every N s for a "
             "simulated hour, sign out;",
             "   in-process, one clock moved for app and emulator; emulator defaults: JWT_EXP "
             "3,600 s, /token limited)",
             f"   {'page every / re-checked every':30}" + "".join(
                 _period(variant).rjust(cell * len(versions)) for variant in variants),
             f"   {'':30}" + "".join(version.rjust(cell) for _ in variants for version in versions)]
    lines.append(line("custom access token hook",
                      lambda run: _hook_label(run["variant"].get("hook"))))
    lines += [line(CALL_ROWS.get(kind, kind), lambda run, kind=kind: run["calls"].get(kind, 0))
              for kind in kinds]
    lines += [line("pages opened", lambda run: run["pages"]),
              line("answers >= 400", lambda run: sum(run["refused"].values())),
              line("token calls (rate-limited)", lambda run: run["budget"]["token_calls"]),
              line("people per address-hour", lambda run: _people(run["budget"])),
              line("  with Sb-Forwarded-For", lambda run: "no cap"),
              line("  share of a person's bucket",
                   lambda run: f"{run['budget']['own_bucket_share']:.1%}"),
              line("sends Sb-Forwarded-For",
                   lambda run: "yes" if run["budget"]["sends_forwarded_for"] else "no")]
    return lines + [f"   {note}" for note in CALL_NOTES]


def _hook_label(hook: str | None) -> str:
    return {None: "-", "user_role": "claim", "app_metadata": "app_md"}.get(hook, hook)


def _period(variant: dict) -> str:
    return f"{variant['page_seconds']} s / {variant['revalidate_seconds']} s"


def _people(budget: dict) -> str:
    people = budget["people_per_address_hour"]
    return "-" if people is None else f"{people:,}"


def default_path(root: Path, *, smoke: bool) -> Path:
    """bench/results/<time>[-smoke].json (the folder is git-ignored)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / "bench" / "results" / f"{stamp}{'-smoke' if smoke else ''}.json"


def write_json(results: dict, path: Path) -> None:
    """Write the results, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_state() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,  # noqa: S607
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
                               cwd=root, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}
