"""User-facing endpoints: /user, /logout, /settings, /health, JWKS and discovery."""

import pytest

from emulator import keys
from tests.emulator.emulator_helpers import bearer, new_session


def test_get_user(client, sign_in):
    session = sign_in()
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert response.status_code == 200
    assert response.json["id"] == session["user"]["id"]
    assert response.json["identities"][0]["identity_data"]["user_name"] == "octocat"
    assert "X-Supabase-Api-Version" not in response.headers


@pytest.mark.parametrize(("authorization", "status", "code"), [
    (None, 401, "no_authorization"),
    ("Basic abc", 401, "no_authorization"),
    ("Bearer garbage", 403, "bad_jwt"),
    (f"Bearer {keys.ANON_KEY}", 403, "bad_jwt"),  # no sub claim
])
def test_user_auth_errors(client, authorization, status, code):
    headers = {"apikey": keys.ANON_KEY}
    if authorization:
        headers["Authorization"] = authorization
    response = client.get("/auth/v1/user", headers=headers)
    assert (response.status_code, response.json["error_code"]) == (status, code)
    assert response.headers["x-sb-error-code"] == code


def test_expired_token_has_no_leeway(make_app, clock):
    app = make_app(JWT_EXP=1)
    client = app.test_client()
    session = new_session(client)
    assert session["expires_in"] == 1
    clock.now += 1
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert response.json["msg"] == ("invalid JWT: unable to parse or verify signature, "
                                    "token has invalid claims: token is expired")


@pytest.mark.parametrize(("scope", "remaining"), [("global", 0), ("local", 1), ("others", 1)])
def test_logout_scopes(client, app, sign_in, scope, remaining):
    session = sign_in()
    sign_in()
    response = client.post(f"/auth/v1/logout?scope={scope}", headers=bearer(session))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert app.extensions["emulator.db"].one("SELECT count(*) FROM sessions")[0] == remaining


def test_after_logout_user_is_session_not_found(client, sign_in):
    session = sign_in()
    client.post("/auth/v1/logout", headers=bearer(session))
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert (response.status_code, response.json["error_code"]) == (403, "session_not_found")


def test_logout_bad_scope(client, sign_in):
    response = client.post("/auth/v1/logout?scope=all", headers=bearer(sign_in()))
    assert response.json["msg"] == 'Unsupported logout scope "all"'


def test_banned_user_gets_403(client, admin, sign_in):
    session = sign_in()
    client.put(f"/auth/v1/admin/users/{session['user']['id']}", headers=admin,
               json={"ban_duration": "24h"})
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert (response.status_code, response.json["error_code"]) == (403, "user_banned")


def test_settings(client, anon):
    body = client.get("/auth/v1/settings", headers=anon).json
    assert body["external"]["github"] is True and body["external"]["google"] is False
    assert body["disable_signup"] is False


def test_settings_report_each_enabled_provider(make_app, anon):
    client = make_app(PROVIDERS="github, Google,gitlab").test_client()
    external = client.get("/auth/v1/settings", headers=anon).json["external"]
    assert [name for name, on in external.items() if on] == ["github", "gitlab", "google",
                                                             "email"]


LINK = "/auth/v1/user/identities/authorize?provider=google"


@pytest.fixture
def linking_client(make_app):
    return make_app(PROVIDERS="github,google", MANUAL_LINKING=True).test_client()


def test_link_redirects_to_the_provider(linking_client):
    session = new_session(linking_client)
    response = linking_client.get(LINK, headers=bearer(session))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(
        "http://127.0.0.1:54321/google/oauth/authorize?client_id=emulator-google-client-id&")
    assert "scope=email+profile" in response.headers["Location"]


def test_link_with_skip_http_redirect_answers_json(linking_client):
    session = new_session(linking_client)
    response = linking_client.get(LINK + "&skip_http_redirect=true", headers=bearer(session))
    assert response.status_code == 200
    assert list(response.json) == ["url"]
    assert "/google/oauth/authorize?" in response.json["url"]


@pytest.mark.parametrize(("method", "path"), [("GET", LINK), (
    "DELETE", "/auth/v1/user/identities/6c1f3a9e-3d5c-4b36-9d55-0d2f1e7b9a10")])
def test_manual_linking_disabled_by_default(client, sign_in, method, path):
    response = client.open(path, method=method, headers=bearer(sign_in()))
    assert response.status_code == 404
    assert (response.json["error_code"], response.json["msg"]) == (
        "manual_linking_disabled", "Manual linking is disabled")


def test_link_needs_a_user_and_an_api_key(linking_client, anon):
    assert linking_client.get(LINK, headers=anon).json["error_code"] == "no_authorization"
    assert linking_client.get(LINK).status_code == 401


def test_link_to_a_disabled_provider(linking_client):
    response = linking_client.get("/auth/v1/user/identities/authorize?provider=gitlab",
                                  headers=bearer(new_session(linking_client)))
    assert response.json["msg"] == "Unsupported provider: provider is not enabled"


def test_health(client, anon):
    assert client.get("/auth/v1/health", headers=anon).json["name"] == "GoTrue"


def test_jwks_is_open_and_cacheable(client):
    response = client.get("/auth/v1/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=600"
    assert response.json["keys"][0]["kid"] == keys.JWT_PRIVATE_JWK["kid"]
    assert "d" not in response.json["keys"][0]


def test_jwks_empty_with_hs256(make_app):
    assert make_app(JWT_ALG="HS256").test_client().get(
        "/auth/v1/.well-known/jwks.json").json == {"keys": []}


def test_openid_configuration(client, anon):
    body = client.get("/auth/v1/.well-known/openid-configuration", headers=anon).json
    assert body["issuer"] == "http://127.0.0.1:54321/auth/v1"
    assert body["jwks_uri"] == "http://127.0.0.1:54321/auth/v1/.well-known/jwks.json"


def test_bearer_with_spaces_is_malformed(client, anon):
    response = client.get("/auth/v1/user", headers={**anon, "Authorization": "Bearer a b"})
    assert response.status_code == 401
