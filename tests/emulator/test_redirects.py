"""redirect_to rules (same site, loopback, IPs, allow-list globs) and the glob compiler."""

import pytest

from emulator.redirects import allow_list, choose_referrer, compile_glob, is_redirect_url_valid

SITE = "https://app.example.com"


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("http://localhost:3000/**", "http://localhost:3000/a/b?c=d", True),
    ("http://localhost:3000/*", "http://localhost:3000/a", True),
    ("http://localhost:3000/*", "http://localhost:3000/a/b", False),
    ("https://*.example.com", "https://a.example.com", True),
    ("https://*.example.com", "https://a.b.example.com", False),
    ("https://**.example.com", "https://a.b.example.com", True),
    ("https://?.example.com", "https://x.example.com", True),
    ("https://[ab].example.com", "https://b.example.com", True),
    ("https://[!ab].example.com", "https://b.example.com", False),
    ("https://{foo,bar}.example.com/cb", "https://bar.example.com/cb", True),
    ("https://{foo,bar}.example.com/cb", "https://baz.example.com/cb", False),
    ("https://example.com/cb", "https://example.com/cb/extra", False),
    ("https://example.com/a\\*", "https://example.com/a*", True),
])
def test_glob(pattern, text, matches):
    assert bool(compile_glob(pattern).match(text)) is matches


@pytest.mark.parametrize(("url", "valid"), [
    ("https://app.example.com/any/path", True),           # same site, path ignored
    ("https://app.example.com:8443/x", False),            # port differs, not a localhost name
    ("http://app.example.com/x", False),                  # scheme differs
    ("http://localhost:5173/cb", True),                   # allow-list
    ("http://localhost:9999/cb", False),                  # not in allow-list
    ("http://127.0.0.1:1234/anything", True),             # loopback IP always
    ("http://[::1]:8080/x", True),
    ("http://10.0.0.1/cb", False),                        # other IPs never
    ("http://2130706433/", False),                        # all-digit host
    ("https://evil_host.example.org/", False),            # bad host characters
    ("https://good.example.org/cb?x=1#frag", True),       # fragment removed before matching
    ("", False),
    ("http://[bad", False),
])
def test_rules(url, valid):
    patterns = allow_list("http://localhost:5173/**,https://good.example.org/cb?x=1")
    assert is_redirect_url_valid(url, SITE, patterns) is valid


def test_localhost_site_accepts_any_port():
    assert is_redirect_url_valid("http://localhost:4000/", "http://localhost:3000", [])


def test_allow_list_is_not_trimmed():
    assert allow_list("a, b") == ["a", " b"]


def test_choose_referrer_falls_back_to_referer_then_site():
    assert choose_referrer(["https://evil.test/", "http://127.0.0.1:9/r"], SITE, []) == \
        "http://127.0.0.1:9/r"
    assert choose_referrer(["https://evil.test/", None], SITE, []) == SITE
