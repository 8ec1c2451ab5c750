"""Where an OAuth flow may return to: the real server's redirect_to rules and glob matching."""

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

SEPARATORS = "./"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}  # noqa: S104 - names, not binds
HOST_CHARS = re.compile(r"[A-Za-z0-9.-]*")


@lru_cache(maxsize=256)
def compile_glob(pattern: str, separators: str = SEPARATORS) -> re.Pattern[str]:
    """Compile a gobwas/glob pattern (``*``, ``**``, ``?``, ``[...]``, ``{a,b}``) to a regex."""
    body, _ = translate(pattern, 0, separators, stop="")
    return re.compile(body + r"\Z", re.DOTALL)


def translate(pattern: str, i: int, seps: str, stop: str) -> tuple[str, int]:
    """Translate from index i until a character in ``stop``; return (regex, next index)."""
    not_sep = f"[^{re.escape(seps)}]" if seps else "."
    out: list[str] = []
    while i < len(pattern) and pattern[i] not in stop:
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append(not_sep + "*")
            i += 1
        elif char == "?":
            out.append(not_sep)
            i += 1
        elif char == "[":
            regex, i = translate_class(pattern, i)
            out.append(regex)
        elif char == "{":
            regex, i = translate_alternatives(pattern, i + 1, seps)
            out.append(regex)
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out), i


def translate_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate ``[abc]``, ``[a-z]`` or ``[!abc]``; an unclosed bracket is a literal."""
    end = pattern.find("]", i + 1)
    if end == -1:
        return re.escape("["), i + 1
    inner = pattern[i + 1:end]
    negate = inner.startswith("!")
    if negate:
        inner = inner[1:]
    escaped = "".join("\\" + c if c in "\\^[]" else c for c in inner)
    return f"[{'^' if negate else ''}{escaped}]", end + 1


def translate_alternatives(pattern: str, i: int, seps: str) -> tuple[str, int]:
    """Translate ``{a,b,...}`` (starting after the brace) into a regex group."""
    options = []
    while True:
        regex, i = translate(pattern, i, seps, stop=",}")
        options.append(regex)
        if i >= len(pattern):
            break
        i += 1
        if pattern[i - 1] == "}":
            break
    return "(?:" + "|".join(options) + ")", i


def allow_list(value: str) -> list[str]:
    """Split URI_ALLOW_LIST on commas (not trimmed, like the real server)."""
    return [entry for entry in value.split(",") if entry]


def is_loopback_name(host: str) -> bool:
    """True for the host names the same-site rule lets use any port."""
    return host in LOCAL_HOSTS or host.endswith(".localhost")


def parse(url: str) -> tuple[str, str, int | None] | None:
    """Return (scheme, hostname, port) or None when the URL does not parse."""
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname or "", parts.port
    except ValueError:
        return None


def is_same_site(candidate: tuple[str, str, int | None], site_url: str) -> bool:
    """Same scheme and host as SITE_URL, same port unless the host is a localhost name."""
    site = parse(site_url)
    if site is None:
        return False
    scheme, host, port = candidate
    if (scheme, host) != site[:2] or not host:
        return False
    return port == site[2] or is_loopback_name(host)


def is_redirect_url_valid(url: str, site_url: str, patterns: Iterable[str]) -> bool:
    """Apply the real server's redirect_to rules in order (§1.2)."""
    parsed = parse(url) if url else None
    if parsed is None:
        return False
    scheme, host, _ = parsed
    if is_same_site(parsed, site_url):
        return True
    if host.isdigit():
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:  # IP literals never consult the allow-list
        return ip.is_loopback
    if scheme in {"http", "https"} and not HOST_CHARS.fullmatch(host):
        return False
    target = url.split("#", 1)[0]
    return any(compile_glob(pattern).match(target) for pattern in patterns)


def choose_referrer(candidates: Iterable[str | None], site_url: str, patterns: list[str]) -> str:
    """Return the first valid candidate (redirect_to, then Referer), else SITE_URL."""
    for candidate in candidates:
        if candidate and is_redirect_url_valid(candidate, site_url, patterns):
            return candidate
    return site_url
