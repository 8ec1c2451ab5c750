"""Browser rules and hostile cookies: headers, CSRF, cookie flags, fixation, Host, the guard."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask_wtf.csrf import generate_csrf
from itsdangerous import URLSafeTimedSerializer
from jwt.algorithms import ECAlgorithm
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from app import create_app
from config import ConfigError
from emulator import keys
from tests.helpers import SECRET, SITE_URL, Browser, csrf_token, move_app_clock
from tests.processes import read_session, write_session

EMULATOR_KEY = ECAlgorithm.from_jwk(json.dumps(keys.JWT_PRIVATE_JWK))
OTHER_PROJECT_KEY = ec.generate_private_key(ec.SECP256R1())


def session_of(client) -> dict:
    with client.session_transaction() as sess:
        return dict(sess)




def user_id(client) -> str:
    return decode_jwt(session_of(client)[STORAGE_KEY]["access_token"])["payload"]["sub"]


def cookie_set_by(response) -> str | None:
    """The session cookie a response sets ("" when it deletes it), or None if it sets none."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("session="):
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


# -- hostile cookies -----------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def hs256_with(secret: bytes, claims: dict) -> str:
    """HS256 by hand: PyJWT rightly refuses to use a public key as an HMAC secret."""
    head_and_body = unsigned({"alg": "HS256", "typ": "JWT"}, claims).rsplit(".", 1)[0]
    signature = hmac.new(secret, head_and_body.encode(), hashlib.sha256).digest()
    return f"{head_and_body}.{b64(signature)}"


def forged_token(kind: str, issuer: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": str(uuid.uuid4()), "aud": "authenticated",
              "exp": now + 3600, "iat": now, "role": "authenticated",
              "email": "mallory@example.com", "user_metadata": {"full_name": "Mallory"}}
    kid = {"kid": keys.JWT_PRIVATE_JWK["kid"]}
    if kind == "expired":
        return jwt.encode({**claims, "exp": now - 60, "iat": now - 3660}, EMULATOR_KEY,
                          "ES256", headers=kid)
    if kind == "wrong-iss":
        return jwt.encode({**claims, "iss": "https://other.supabase.co/auth/v1"},
                          EMULATOR_KEY, "ES256", headers=kid)
    if kind == "wrong-aud":
        return jwt.encode({**claims, "aud": "service_role"}, EMULATOR_KEY, "ES256", headers=kid)
    if kind == "other-project-kid":
        return jwt.encode(claims, OTHER_PROJECT_KEY, "ES256", headers={"kid": "other-project"})
    if kind == "other-key-same-kid":
        return jwt.encode(claims, OTHER_PROJECT_KEY, "ES256", headers=kid)
    if kind == "alg-none":
        return unsigned({"alg": "none", "typ": "JWT"}, claims)
    if kind == "hs256-with-public-key":
        public = EMULATOR_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hs256_with(public, claims)
    if kind == "hs256-with-demo-secret":
        return hs256_with(keys.JWT_SECRET.encode(), {**claims, "exp": now - 1})
    if kind == "no-exp":
        return hs256_with(b"guess", {key: v for key, v in claims.items() if key != "exp"})
    raise AssertionError(kind)


TOKEN_KINDS = ["expired", "wrong-iss", "wrong-aud", "other-project-kid", "other-key-same-kid",
               "alg-none", "hs256-with-public-key", "hs256-with-demo-secret", "no-exp"]


def hostile_cookie(kind: str, app, real_cookie: str) -> str:
    secret = app.secret_key
    legacy = app.session_interface.legacy_serializer(app)  # the signed format before sealing
    if kind == "bad-signature":
        return real_cookie[:-2] + ("AA" if real_cookie[-2:] != "AA" else "BB")
    if kind == "another-apps-key":
        return write_session(read_session(real_cookie, secret), "another-app-" + secret)
    if kind == "legacy-another-apps-key":
        return URLSafeTimedSerializer(
            "another-app-" + secret, salt="cookie-session",
            serializer=legacy.serializer, signer_kwargs=legacy.signer_kwargs,
        ).dumps(read_session(real_cookie, secret))
    if kind == "legacy-shape-list":
        return legacy.dumps([1, 2])
    if kind == "truncated":
        return real_cookie[: len(real_cookie) // 2]
    if kind == "oversized":
        return real_cookie + "A" * 8000
    shapes = {"shape-list": [1, 2], "shape-string": "signed in", "shape-null": None,
              "shape-flashes": {"_flashes": "x", STORAGE_KEY: read_session(real_cookie, secret)[
                  STORAGE_KEY]},
              "shape-csrf": {"csrf_token": 5},
              "shape-tokens": {STORAGE_KEY: ["access", "refresh"]}}
    return write_session(shapes[kind], secret)


COOKIE_KINDS = ["bad-signature", "another-apps-key", "legacy-another-apps-key",
                "legacy-shape-list", "truncated", "oversized", "shape-list", "shape-string",
                "shape-null", "shape-flashes", "shape-csrf", "shape-tokens"]


@pytest.fixture
def hostile_client(request, app, browser, signed_in, emulator):
    """A fresh browser whose cookie is one of the hostile kinds."""
    kind = request.param
    if kind in TOKEN_KINDS:
        tokens = {"access_token": forged_token(kind, f"{emulator.url}/auth/v1"),
                  "refresh_token": "forgedrefreshtoken", "expires_at": 2000000000}
        cookie = write_session({STORAGE_KEY: tokens}, app.secret_key)
    else:
        cookie = hostile_cookie(kind, app, browser.client.get_cookie("session").value)
    # Sent raw, as a browser would (the test client's jar refuses an oversized cookie).
    client = app.test_client(use_cookies=False)
    client.environ_base["HTTP_COOKIE"] = f"session={cookie}"
    return client


@pytest.mark.parametrize("hostile_client", COOKIE_KINDS + TOKEN_KINDS, indirect=True)
def test_hostile_cookie_gives_the_signed_out_page(hostile_client):
    response = hostile_client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Sign in with GitHub" in page and "Hello," not in page


@pytest.mark.parametrize("hostile_client", COOKIE_KINDS + TOKEN_KINDS, indirect=True)
def test_hostile_cookie_is_cleared(hostile_client, app):
    value = cookie_set_by(hostile_client.get("/"))
    assert value is not None, "the response did not replace the cookie"
    if value:
        assert STORAGE_KEY not in read_session(value, app.secret_key)


@pytest.mark.parametrize("hostile_client", COOKIE_KINDS + TOKEN_KINDS, indirect=True)
def test_hostile_cookie_opens_no_signed_in_page(hostile_client):
    response = hostile_client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin?next=")


@pytest.mark.parametrize("hostile_client", COOKIE_KINDS + TOKEN_KINDS, indirect=True)
def test_hostile_cookie_cannot_sign_out_or_err(hostile_client):
    response = hostile_client.post("/signout", data={"csrf_token": "x"})
    assert response.status_code == 400


# -- headers -------------------------------------------------------------------------------

PAGES = [("GET", "/"), ("GET", "/signin"), ("GET", "/healthz"), ("GET", "/static/style.css"),
         ("GET", "/no-such-page"), ("GET", "/signout"), ("POST", "/signout"), ("GET", "/callback"),
         ("GET", "/signin/myspace"), ("GET", "/account"), ("GET", "/boom")]


@pytest.fixture
def app_with_a_failing_page(make_app):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app


@pytest.mark.parametrize("method, path", PAGES)
def test_every_response_carries_the_security_headers(app_with_a_failing_page, method, path):
    response = app_with_a_failing_page.test_client().open(path, method=method)
    response.close()
    headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("same-origin", "strict-origin-when-cross-origin",
                                          "no-referrer")
    assert headers["X-Frame-Options"] == "DENY"


def test_a_crash_shows_no_traceback(app_with_a_failing_page):
    response = app_with_a_failing_page.test_client().get("/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Traceback" not in page and "secret internals" not in page


@pytest.mark.parametrize("path", ["/", "/account", "/no-such-page", "/signin?next=/account"])
def test_pages_seen_signed_in_are_not_stored(client, signed_in, path):
    assert client.get(path).headers["Cache-Control"] == "no-store"


def test_every_response_that_sets_the_cookie_is_not_stored(client, browser, github_account):
    responses = []
    original = client.open

    def recording_open(*args, **kwargs):
        response = original(*args, **kwargs)
        responses.append(response)
        return response

    client.open = recording_open
    browser.sign_in(github_account())
    token = csrf_token(client.get("/").get_data(as_text=True))
    client.post("/signout", data={"csrf_token": token})
    client.set_cookie("session", "tampered")
    client.get("/")
    setting = [r for r in responses if cookie_set_by(r) is not None]
    assert len(setting) >= 3  # the callback, the sign-out, the cleared tampered cookie
    assert all(r.headers.get("Cache-Control") == "no-store" for r in setting)


# -- cookies, CSRF and fixation ------------------------------------------------------------

@pytest.mark.parametrize("settings, name, secure", [
    ({"SITE_URL": "https://app.example.com"}, "__Host-session", True),
    ({"DEBUG": True, "SITE_URL": "http://localhost"}, "session", False),  # the client's host
])
def test_cookie_flags(make_app, settings, name, secure):
    response = make_app(**settings).test_client().get("/signin/github")
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in flags
    assert flags["samesite"] == "SameSite=Lax"
    assert ("secure" in flags) is secure
    # What the __Host- prefix demands of the browser, so no subdomain can set or shadow it.
    assert flags["path"] == "Path=/" and "domain" not in flags


@pytest.mark.parametrize("site_url, max_age, expected", [
    ("https://app.example.com", None, "max-age=31536000"),
    ("https://app.example.com", 600, "max-age=600"),
    ("https://app.example.com", 0, None),
    ("http://127.0.0.1:5000", None, None),
])
def test_strict_transport_security_over_https_only(make_app, site_url, max_age, expected):
    overrides = {} if max_age is None else {"HSTS_MAX_AGE": max_age}
    client = make_app(SITE_URL=site_url, **overrides).test_client()
    for path in ("/", "/static/style.css", "/nope"):
        with client.get(path) as response:
            assert response.headers.get("Strict-Transport-Security") == expected


def test_behind_a_tls_proxy_the_csrf_referrer_check_is_on(make_app):
    """With the proxy's X-Forwarded-Proto, request.is_secure is right, so Flask-WTF checks
    that a POST's Referer is this site, as it does for every https request."""
    app = make_app(SITE_URL="https://app.example.com", TRUSTED_PROXY_COUNT=1)
    app.add_url_rule("/form-token", "form_token", lambda: generate_csrf())
    client = app.test_client()
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com"}
    with client.get("/form-token", headers=proxy, base_url="https://app.example.com") as page:
        token = page.get_data(as_text=True)

    def sign_out(referer: str):
        return client.post("/signout", data={"csrf_token": token}, base_url="https://app.example.com",
                           headers={**proxy, "Referer": referer})

    refused = sign_out("https://evil.example/")
    assert refused.status_code == 400
    assert "did not come from this site" in refused.get_data(as_text=True)
    assert sign_out("https://app.example.com/account").status_code == 302


def test_trusted_hosts_refuse_other_host_headers(make_app):
    client = make_app(TRUSTED_HOSTS="app.example.com").test_client()
    refused = client.get("/", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and "host name" in refused.get_data(as_text=True)
    assert client.get("/", headers={"Host": "app.example.com"}).status_code == 200


def test_signed_in_cookie_is_http_only_and_lax(browser, github_account):
    response = browser.sign_in(github_account())
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header


def test_sign_out_refuses_another_browsers_csrf_token(make_app, emulator, client, signed_in,
                                                      github_account):
    other = Browser(make_app().test_client(), emulator.url)
    try:
        other.sign_in(github_account())
        foreign_token = csrf_token(other.client.get("/").get_data(as_text=True))
    finally:
        other.close()
    response = client.post("/signout", data={"csrf_token": foreign_token})
    assert response.status_code == 400
    assert STORAGE_KEY in session_of(client)


def test_csrf_token_planted_before_sign_in_is_void_after(app, client, browser, github_account):
    with app.test_request_context():
        planted_token = generate_csrf()
        from flask import session
        planted = session["csrf_token"]
    with client.session_transaction() as sess:
        sess["csrf_token"] = planted
    browser.sign_in(github_account())
    response = client.post("/signout", data={"csrf_token": planted_token})
    assert response.status_code == 400
    assert STORAGE_KEY in session_of(client)


def test_sign_in_issues_a_new_cookie_sharing_nothing_with_the_old(client, browser,
                                                                  github_account):
    with client.session_transaction() as sess:
        sess["csrf_token"] = "planted-by-an-attacker"
        sess["anything"] = "planted"
    browser.sign_in(github_account())
    after = session_of(client)
    assert after.get("csrf_token") != "planted-by-an-attacker"
    assert "anything" not in after


# -- the Host header -----------------------------------------------------------------------

FORGED_HOSTS = [{"Host": "evil.example"}, {"Host": "127.0.0.1:5000.evil.example"},
                {"X-Forwarded-Host": "evil.example"},
                {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
                {"Forwarded": "host=evil.example;proto=https"}]


@pytest.mark.parametrize("headers", FORGED_HOSTS)
def test_forged_host_cannot_change_the_callback_url(client, headers):
    response = client.get("/signin/github", headers=headers)
    [redirect_to] = parse_qs(urlsplit(response.headers["Location"]).query)["redirect_to"]
    assert redirect_to.startswith(f"{SITE_URL}/callback?flow=")


@pytest.mark.parametrize("headers", FORGED_HOSTS)
def test_forged_host_never_appears_in_a_redirect(client, headers):
    response = client.get("/account?tab=1", headers=headers)
    assert response.headers["Location"].startswith("/signin?next=")
    assert "evil" not in response.headers["Location"]


# -- dashboard changes reach the app within AUTH_REVALIDATE_SECONDS ---------------------------

@pytest.mark.parametrize("change, path, expected", [
    ({"ban_duration": "24h"}, "/", "suspended"),
    (None, "/", "no longer exists"),
    ({"app_metadata": {"role": "editor"}}, "/account", "<dt>Role</dt><dd>editor</dd>"),
])
def test_dashboard_change_reaches_the_app_within_the_window(
        make_app, emulator, admin, github_account, monkeypatch, change, path, expected):
    browser = Browser(make_app(AUTH_REVALIDATE_SECONDS=30).test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        target = f"/admin/users/{user_id(browser.client)}"
        response = admin.delete(target) if change is None else admin.put(target, json=change)
        assert response.status_code == 200
        move_app_clock(monkeypatch, 30)
        page = browser.client.get(path).get_data(as_text=True)
    finally:
        browser.close()
    assert expected in page


# -- the production guard ------------------------------------------------------------------

PRODUCTION = {"SUPABASE_URL": "https://abcd.supabase.co",
              "SUPABASE_KEY": "sb_publishable_9xQ2hT7mKc4LrW8vZp1YdA_3nBfGs0Ej",
              "SECRET_KEY": SECRET, "SITE_URL": "https://app.example.com"}
SERVICE_ROLE_JWT = jwt.encode({"iss": "supabase", "ref": "abcd", "role": "service_role"},
                              "the-project-secret-0123456789abcdef", "HS256")
ANON_JWT = jwt.encode({"iss": "supabase", "ref": "abcd", "role": "anon"},
                      "the-project-secret-0123456789abcdef", "HS256")


@pytest.mark.parametrize("change, reason", [
    ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": "changeme"}, "SECRET_KEY is too weak"),
    ({"SECRET_KEY": "x" * 64}, "SECRET_KEY is too weak"),
    ({"SITE_URL": "http://app.example.com"}, "must use https outside localhost"),
    ({"SUPABASE_URL": "http://127.0.0.1:54321"}, "is the local emulator"),
    ({"SUPABASE_URL": "http://localhost:54321/"}, "is the local emulator"),
    ({"SUPABASE_KEY": keys.ANON_KEY}, "SUPABASE_KEY is the emulator's public demo key"),
    ({"SUPABASE_KEY": keys.SERVICE_ROLE_KEY}, "SUPABASE_KEY is the emulator's public demo key"),
    ({"SUPABASE_JWT_SECRET": keys.JWT_SECRET}, "SUPABASE_JWT_SECRET is the emulator's"),
    ({"SUPABASE_KEY": "sb_secret_kX81nQ0wZtM3jRb7CeY5Lg_H2vPaF9Ud"}, "is a secret key"),
    ({"SUPABASE_KEY": SERVICE_ROLE_JWT}, "'service_role' JWT, not the anon key"),
    ({"SUPABASE_KEY": "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"}, "public demo key"),
    ({"SUPABASE_KEY": "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"}, "is a secret key"),
    ({"SUPABASE_KEY": "my-anon-key"}, "neither a publishable key"),
    ({"SUPABASE_KEY": "   "}, "SUPABASE_KEY is not set"),
    ({"SUPABASE_URL": "http://abcd.supabase.co"}, "SUPABASE_URL=.* must use https"),
    ({"SUPABASE_URL": "http://10.0.0.5:8000"}, "SUPABASE_URL=.* must use https"),
])
def test_production_guard_refuses_and_says_why(change, reason):
    with pytest.raises(ConfigError, match=reason):
        create_app({**PRODUCTION, "TESTING": False, "DEBUG": False, **change})


def test_production_guard_reads_the_environment_as_gunicorn_would(monkeypatch):
    for name, value in {**PRODUCTION, "SUPABASE_KEY": keys.ANON_KEY}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="demo key"):
        create_app()


@pytest.mark.parametrize("change", [
    {}, {"SUPABASE_KEY": ANON_JWT}, {"SUPABASE_URL": "http://127.0.0.1:8000"},
])
def test_production_guard_accepts_a_real_project(change):
    app = create_app({**PRODUCTION, "TESTING": False, "DEBUG": False, **change})
    app.extensions["supabase"].http.close()
    assert not app.debug and not app.testing


def test_debug_runs_on_the_emulator(emulator, tmp_path):
    app = create_app({"DEBUG": True, "SUPABASE_URL": "http://127.0.0.1:54321",
                      "SUPABASE_KEY": keys.ANON_KEY, "SUPABASE_JWT_SECRET": keys.JWT_SECRET,
                      "INSTANCE_PATH": str(tmp_path)})
    app.extensions["supabase"].http.close()
    assert app.debug


@pytest.mark.parametrize("change, reason", [
    ({"SITE_URL": "http://app.example.com"}, "must use https outside localhost"),
    ({"SUPABASE_URL": "http://10.0.0.5:8000"}, "must use https"),
    ({"SUPABASE_KEY": keys.SERVICE_ROLE_KEY}, "'service_role' JWT"),
    ({"SUPABASE_KEY": "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"}, "is a secret key"),
    ({"SECRET_KEY": "changeme"}, "SECRET_KEY is too weak"),
])
def test_debug_does_not_switch_the_production_guard_off(tmp_path, change, reason):
    """Issue 17: with DEBUG, a weak key, a secret key and plain http started without a word."""
    with pytest.raises(ConfigError, match=reason):
        create_app({"DEBUG": True, "SUPABASE_URL": "http://127.0.0.1:54321",
                    "SUPABASE_KEY": keys.ANON_KEY, "INSTANCE_PATH": str(tmp_path), **change})


def test_every_state_changing_route_requires_a_csrf_token(make_app):
    app = make_app()
    client = app.test_client()
    unsafe = [(rule, method) for rule in app.url_map.iter_rules()
              for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"})]
    assert unsafe, "the app has state-changing routes"
    for rule, method in unsafe:
        path = rule.build({arg: "x" for arg in rule.arguments}, append_unknown=False)[1]
        response = client.open(path, method=method)
        assert response.status_code == 400, (method, path)
        assert "This form expired" in response.get_data(as_text=True)


def test_fixed_headers_leave_a_views_own_header_alone(make_app):
    app = make_app()

    @app.get("/framed")
    def framed():
        return "ok", {"X-Frame-Options": "SAMEORIGIN"}

    response = app.test_client().get("/framed")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
