"""GET /authorize (§1): validation, the redirect to GitHub and the choice of redirect target."""

import re

import pytest

from tests.conformance.support import (
    SITE_URL,
    UUID_RE,
    assert_error,
    query_of,
    single,
    without_query,
)

PKCE_PAIR = "PKCE flow requires code_challenge_method and code_challenge"
PKCE_LENGTH = "code challenge has to be between 43 and 128 characters"
PKCE_CHARS = ("code challenge can only contain alphanumeric characters, hyphens, periods, "
              "underscores and tildes")
GOOD_CHALLENGE = "a" * 43


def github_params(resp) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    return single(query_of(resp.headers["location"]))


@pytest.mark.parametrize(("provider", "message"), [
    ("gitlab", "Unsupported provider: provider is not enabled"),
    ("nosuchprovider", "Unsupported provider: Provider nosuchprovider could not be found"),
])
def test_unusable_provider_is_validation_failed(http, provider, message):
    resp = http.get("/authorize", params={"provider": provider})
    assert_error(resp, 400, "validation_failed", message)
    assert "location" not in resp.headers


def test_provider_name_is_case_insensitive(http):
    resp = http.get("/authorize", params={"provider": "GitHub"})
    assert resp.status_code == 302


@pytest.mark.parametrize(("params", "message"), [
    ({"code_challenge": GOOD_CHALLENGE}, PKCE_PAIR),
    ({"code_challenge_method": "s256"}, PKCE_PAIR),
    ({"code_challenge": "a" * 42, "code_challenge_method": "s256"}, PKCE_LENGTH),
    ({"code_challenge": "a" * 129, "code_challenge_method": "s256"}, PKCE_LENGTH),
    ({"code_challenge": "a" * 42 + "+", "code_challenge_method": "s256"}, PKCE_CHARS),
    ({"code_challenge": "a" * 42 + "=", "code_challenge_method": "plain"}, PKCE_CHARS),
    ({"code_challenge": GOOD_CHALLENGE, "code_challenge_method": "s512"},
     "Invalid code_challenge_method"),
], ids=["challenge-only", "method-only", "too-short", "too-long", "plus", "padding",
        "bad-method"])
def test_bad_pkce_params_are_validation_failed(http, params, message):
    resp = http.get("/authorize", params={"provider": "github", **params})
    assert_error(resp, 400, "validation_failed", message)


@pytest.mark.parametrize("challenge", ["a" * 43, "a" * 128, "azAZ09-._~" * 5])
def test_boundary_challenges_are_accepted(http, challenge):
    resp = http.get("/authorize", params={"provider": "github", "code_challenge": challenge,
                                          "code_challenge_method": "plain"})
    assert resp.status_code == 302, resp.text


def test_redirects_to_stand_in_authorize_page(oauth, target):
    resp, _ = oauth.authorize()
    assert resp.status_code == 302
    assert without_query(resp.headers["location"]) == target.github_url + "/login/oauth/authorize"


def test_github_params_are_sorted(oauth):
    resp, _ = oauth.authorize({"redirect_to": SITE_URL, "zeta": "1", "alpha": "2"})
    raw = resp.headers["location"].split("?", 1)[1]
    keys = [pair.split("=", 1)[0] for pair in raw.split("&")]
    assert keys == sorted(keys)


def test_github_params_identify_the_app(oauth, target):
    params = github_params(oauth.authorize()[0])
    assert params["client_id"]
    assert params["redirect_uri"] == target.auth_url + "/callback"
    assert params["response_type"] == "code"


def test_state_is_a_fresh_uuid(oauth):
    first = github_params(oauth.authorize()[0])["state"]
    second = github_params(oauth.authorize()[0])["state"]
    assert UUID_RE.match(first) and UUID_RE.match(second)
    assert first != second


@pytest.mark.parametrize(("scopes", "expected"), [
    (None, "user:email"),
    ("repo", "user:email repo"),
    ("repo,read:org", "user:email repo read:org"),
])
def test_scope_is_user_email_plus_extra_scopes(oauth, scopes, expected):
    extra = {} if scopes is None else {"scopes": scopes}
    assert github_params(oauth.authorize(extra)[0])["scope"] == expected


def test_pass_through_params_are_forwarded(oauth):
    sent = {"redirect_to": "http://localhost:3000/x", "login": "octo", "prompt": "consent",
            "nonce": "n-1", "allow_signup": "false"}
    params = github_params(oauth.authorize(sent)[0])
    assert {key: params.get(key) for key in sent} == sent


@pytest.mark.parametrize("name", ["provider", "scopes", "code_challenge",
                                  "code_challenge_method", "code_verifier", "client_secret"])
def test_reserved_params_are_not_forwarded(oauth, name):
    sent = {"scopes": "repo", "code_verifier": "v", "client_secret": "s"}
    assert name not in github_params(oauth.authorize(sent)[0])


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "response_type", "state"])
def test_reserved_params_cannot_override_oauth_values(oauth, name):
    raw = oauth.authorize({name: "evil"})[0].headers["location"]
    assert query_of(raw)[name] != ["evil"]
    assert len(query_of(raw)[name]) == 1


def test_implicit_flow_still_redirects(oauth):
    resp, _ = oauth.authorize(method=None)
    assert UUID_RE.match(github_params(resp)["state"])


# ---- choice of the final redirect target, observed after the callback ---------------------

@pytest.mark.parametrize(("redirect_to", "expected"), [
    ("http://localhost:3000/welcome", "http://localhost:3000/welcome"),
    ("http://localhost:4000/cb", "http://localhost:4000/cb"),
    ("http://127.0.0.1:8765/cb", "http://127.0.0.1:8765/cb"),
    ("http://[::1]:8765/cb", "http://[::1]:8765/cb"),
    ("http://192.168.1.10/cb", SITE_URL),
    ("http://2130706433/cb", SITE_URL),
    ("https://app.example.com/callback", "https://app.example.com/callback"),
    ("https://a.b.example.com/callback", SITE_URL),
    ("https://app.example.com/other", SITE_URL),
    ("https://localhost:3000/welcome", SITE_URL),
    ("https://evil.test/cb", SITE_URL),
    ("not a url", SITE_URL),
    (None, SITE_URL),
], ids=["same-site", "localhost-other-port", "loopback-v4", "loopback-v6", "ip-in-allow-list",
        "decimal-ip", "glob-match", "glob-miss-label", "glob-miss-path", "other-scheme",
        "unknown-host", "garbage", "absent"])
def test_redirect_target(oauth_code, redirect_to, expected):
    flow = oauth_code(redirect_to=redirect_to)
    assert without_query(flow.location) == expected


@pytest.mark.parametrize(("redirect_to", "referer", "expected"), [
    ("https://evil.test/cb", "http://localhost:3000/from-referer",
     "http://localhost:3000/from-referer"),
    (None, "http://localhost:3000/from-referer", "http://localhost:3000/from-referer"),
    ("http://localhost:3000/explicit", "http://localhost:3000/from-referer",
     "http://localhost:3000/explicit"),
    ("https://evil.test/cb", "https://evil.test/ref", SITE_URL),
], ids=["invalid-redirect-to", "no-redirect-to", "redirect-to-wins", "both-invalid"])
def test_referer_fallback(oauth_code, redirect_to, referer, expected):
    flow = oauth_code(redirect_to=redirect_to, headers={"Referer": referer})
    assert without_query(flow.location) == expected


def test_redirect_to_header_is_read(oauth_code):
    flow = oauth_code(redirect_to=None, headers={"redirect_to": "http://localhost:3000/hdr"})
    assert without_query(flow.location) == "http://localhost:3000/hdr"


def test_allow_list_glob_covers_query(oauth_code):
    flow = oauth_code(redirect_to="http://localhost:3000/cb?next=%2Fa%2Fb")
    assert re.match(r"^http://localhost:3000/cb\?", flow.location)
    assert single(query_of(flow.location))["next"] == "/a/b"
