"""The OAuth flow: /authorize, /callback and grant_type=pkce."""

from urllib.parse import parse_qs, urlsplit

import pytest

from emulator import keys
from tests.emulator.emulator_helpers import (
    APP_CALLBACK,
    CHALLENGE,
    VERIFIER,
    auth_code,
    authorize,
    new_session,
    query,
)


def test_authorize_redirects_to_stand_in_with_sorted_params(client):
    response = authorize(client, prompt="consent", scopes="repo,gist")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:54321/github/login/oauth/authorize?client_id=")
    keys_in_order = [pair.split("=")[0] for pair in urlsplit(location).query.split("&")]
    assert keys_in_order == sorted(keys_in_order)
    params = query(location)
    assert params["scope"] == "user:email repo gist"
    assert params["redirect_to"] == APP_CALLBACK
    assert params["prompt"] == "consent"
    assert "code_challenge" not in params and "provider" not in params
    assert params["redirect_uri"] == "http://127.0.0.1:54321/auth/v1/callback"


@pytest.mark.parametrize(("params", "message"), [
    ({"provider": "nope"}, "Unsupported provider: Provider nope could not be found"),
    ({"provider": "google"}, "Unsupported provider: provider is not enabled"),
    ({"provider": "custom:x"}, "Unsupported provider: Provider custom:x could not be found"),
    ({"code_challenge": ""}, "PKCE flow requires code_challenge_method and code_challenge"),
    ({"code_challenge": "short"}, "code challenge has to be between 43 and 128 characters"),
    ({"code_challenge": "!" * 43}, "code challenge can only contain alphanumeric characters, "
     "hyphens, periods, underscores and tildes"),
    ({"code_challenge_method": "md5"}, "Invalid code_challenge_method"),
])
def test_authorize_validation(client, params, message):
    response = authorize(client, **params)
    assert response.status_code == 400
    assert response.json == {"code": 400, "error_code": "validation_failed", "msg": message}


def test_bad_redirect_to_falls_back_to_site_url(client):
    location = authorize(client, redirect_to="https://evil.test/").headers["Location"]
    location = client.get(location).headers["Location"]
    assert client.get(location).headers["Location"].startswith("http://127.0.0.1:5000?code=")


@pytest.mark.parametrize(("state", "code", "message"), [
    ("", "bad_oauth_callback", "OAuth state parameter missing"),
    ("nope", "bad_oauth_state", "OAuth state parameter is invalid"),
    ("6c1f3a9e-3d5c-4b36-9d55-0d2f1e7b9a10", "bad_oauth_state", "OAuth state not found or expired"),
])
def test_callback_state_errors_are_303_to_site_url(client, state, code, message):
    response = client.get("/auth/v1/callback", query_string={"state": state, "code": "x"})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:5000?")
    assert "#" not in location
    assert query(location) == {"error": "invalid_request", "error_code": code,
                               "error_description": message}


def test_expired_state(client, clock):
    provider = authorize(client).headers["Location"]
    callback = client.get(provider).headers["Location"]
    clock.now += 301
    assert query(client.get(callback).headers["Location"])["error_description"] == \
        "OAuth state has expired"


def test_provider_cancel_redirects_with_error_in_query_and_fragment(client):
    state = query(authorize(client).headers["Location"])["state"]
    response = client.get("/auth/v1/callback", query_string={
        "state": state, "error": "access_denied",
        "error_description": "The user has denied your application access."})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(APP_CALLBACK + "?error=access_denied&error_description=")
    fragment = parse_qs(urlsplit(location).fragment, keep_blank_values=True)
    assert fragment == {"error": ["access_denied"],
                        "error_description": ["The user has denied your application access."],
                        "sb": [""]}


def test_callback_reused_state_is_flow_state_already_used(client):
    provider = authorize(client).headers["Location"]
    callback = client.get(provider).headers["Location"]
    client.get(callback)
    again = client.get(callback)
    assert again.status_code == 303
    assert query(again.headers["Location"])["error_code"] == "flow_state_already_used"


def test_callback_bad_code_is_server_error(client):
    state = query(authorize(client).headers["Location"])["state"]
    location = client.get("/auth/v1/callback",
                          query_string={"state": state, "code": "abcdefg"}).headers["Location"]
    assert query(location) == {"error": "server_error", "error_code": "unexpected_failure",
                               "error_description": "Unable to exchange external code: abcd"}


def test_banned_user_is_refused_at_callback(client, admin, sign_in):
    user_id = sign_in()["user"]["id"]
    client.put(f"/auth/v1/admin/users/{user_id}", headers=admin, json={"ban_duration": "1h"})
    provider = authorize(client).headers["Location"]
    location = client.get(client.get(provider).headers["Location"]).headers["Location"]
    assert query(location)["error"] == "access_denied"
    assert query(location)["error_code"] == "user_banned"


def test_unverified_email_needs_verification(make_app, anon):
    client = make_app(GITHUB_AUTO_LOGIN=None).test_client()
    client.post("/github/_accounts", json={"login": "newbie", "name": "N",
                                           "email": "n@example.com", "verified": False})
    provider = authorize(client).headers["Location"]
    page = client.get(provider)
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    form = {**query(provider), "csrf_token": token, "login": "newbie", "action": "authorize"}
    # posted where the page was shown: the form's token belongs to that host's cookie
    callback = client.post(provider.split("?")[0], data=form).headers["Location"]
    location = client.get(callback).headers["Location"]
    assert query(location)["error_code"] == "provider_email_needs_verification"
    assert query(location)["error"] == "access_denied"


def test_autoconfirm_accepts_unverified_email(make_app):
    client = make_app(GITHUB_AUTO_LOGIN=None, MAILER_AUTOCONFIRM=True).test_client()
    client.post("/github/_accounts", json={"login": "newbie", "email": "n@example.com",
                                           "verified": False})
    client.application.config["GITHUB_AUTO_LOGIN"] = "newbie"
    assert auth_code(client)


def test_pkce_exchange_is_single_use(client, anon):
    code = auth_code(client)
    body = {"auth_code": code, "code_verifier": VERIFIER}
    first = client.post("/auth/v1/token?grant_type=pkce", headers=anon, json=body)
    assert first.status_code == 200
    assert list(first.json) == ["access_token", "token_type", "expires_in", "expires_at",
                                "refresh_token", "user", "provider_token"]
    assert first.json["provider_token"].startswith("gho_")
    assert first.json["user"]["identities"][0]["provider"] == "github"
    second = client.post("/auth/v1/token?grant_type=pkce", headers=anon, json=body)
    assert second.status_code == 404
    assert second.json["error_code"] == "flow_state_not_found"


def test_pkce_wrong_verifier_can_be_retried(client, anon):
    code = auth_code(client)
    bad = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                      json={"auth_code": code, "code_verifier": "w" * 43})
    assert (bad.status_code, bad.json["error_code"]) == (400, "bad_code_verifier")
    good = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                       json={"auth_code": code, "code_verifier": VERIFIER})
    assert good.status_code == 200


def test_pkce_expires_300s_after_authorize(client, anon, clock):
    code = auth_code(client)
    clock.now += 301
    response = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                           json={"auth_code": code, "code_verifier": VERIFIER})
    assert (response.status_code, response.json["error_code"]) == (422, "flow_state_expired")


@pytest.mark.parametrize(("data", "status", "error_code"), [
    ("", 400, "bad_json"),
    ("{", 400, "bad_json"),
    ('{"auth_code": 5}', 400, "bad_json"),
    ("{}", 400, "validation_failed"),
])
def test_pkce_body_errors(client, anon, data, status, error_code):
    response = client.post("/auth/v1/token?grant_type=pkce", headers=anon, data=data)
    assert (response.status_code, response.json["error_code"]) == (status, error_code)


def test_unknown_grant_type(client, anon):
    response = client.post("/auth/v1/token?grant_type=password", headers=anon, json={})
    assert response.json == {"code": 400, "error_code": "invalid_credentials",
                             "msg": "unsupported_grant_type"}


def test_plain_challenge(client, anon):
    code = auth_code(client, code_challenge=CHALLENGE, code_challenge_method="PLAIN")
    response = client.post("/auth/v1/token?grant_type=pkce", headers={"apikey": keys.ANON_KEY},
                           json={"auth_code": code, "code_verifier": CHALLENGE})
    assert response.status_code == 200


def test_implicit_flow_returns_tokens_in_fragment(client):
    location = authorize(client, code_challenge="", code_challenge_method="").headers["Location"]
    location = client.get(client.get(location).headers["Location"]).headers["Location"]
    fragment = parse_qs(urlsplit(location).fragment, keep_blank_values=True)
    assert set(fragment) == {"access_token", "expires_at", "expires_in", "provider_token",
                             "refresh_token", "sb", "token_type"}


def test_existing_user_is_linked_by_verified_email(client, admin, sign_in):
    created = client.post("/auth/v1/admin/users", headers=admin,
                          json={"email": "octocat@example.com", "email_confirm": True}).json
    session = sign_in()
    assert session["user"]["id"] == created["id"]
    assert session["user"]["app_metadata"]["providers"] == ["email", "github"]


@pytest.fixture
def many(make_app):
    """Every built-in stand-in shape enabled, with auto-login everywhere."""
    return make_app(PROVIDERS="github,google,gitlab,discord", AUTO_LOGIN="octocat").test_client()


@pytest.mark.parametrize(("provider", "scope"), [
    ("google", "email profile"), ("gitlab", "read_user"), ("discord", "openid email profile")])
def test_authorize_other_providers_goes_to_their_stand_in(many, provider, scope):
    location = authorize(many, provider=provider, scopes="extra").headers["Location"]
    assert location.startswith(f"http://127.0.0.1:54321/{provider}/oauth/authorize?")
    assert query(location)["scope"] == f"{scope} extra"
    assert query(location)["client_id"] == f"emulator-{provider}-client-id"


GOOGLE_DATA = {
    "iss": "http://127.0.0.1:54321/google", "sub": "104729583231000001",
    "provider_id": "104729583231000001", "name": "The Octocat", "full_name": "The Octocat",
    "picture": "http://127.0.0.1:54321/google/avatars/104729583231000001.svg",
    "avatar_url": "http://127.0.0.1:54321/google/avatars/104729583231000001.svg",
    "email": "octocat+google@example.com", "email_verified": True, "phone_verified": False,
}
GITLAB_DATA = {
    "iss": "http://127.0.0.1:54321/gitlab", "sub": "5832310", "provider_id": "5832310",
    "name": "The Octocat", "full_name": "The Octocat",
    "picture": "http://127.0.0.1:54321/gitlab/avatars/5832310.svg",
    "avatar_url": "http://127.0.0.1:54321/gitlab/avatars/5832310.svg",
    "email": "octocat+gitlab@example.com", "email_verified": True, "phone_verified": False,
}
DISCORD_DATA = {
    "iss": "http://127.0.0.1:54321/discord", "sub": "583231", "provider_id": "583231",
    "name": "The Octocat", "full_name": "The Octocat", "preferred_username": "octocat",
    "user_name": "octocat", "picture": "http://127.0.0.1:54321/discord/avatars/583231.svg",
    "avatar_url": "http://127.0.0.1:54321/discord/avatars/583231.svg",
    "email": "octocat+discord@example.com", "email_verified": True, "phone_verified": False,
}


@pytest.mark.parametrize(("provider", "data"), [
    ("google", GOOGLE_DATA), ("gitlab", GITLAB_DATA), ("discord", DISCORD_DATA)])
def test_other_providers_sign_in_with_their_claims(many, provider, data):
    session = new_session(many, provider=provider)
    identity = session["user"]["identities"][0]
    assert (identity["provider"], identity["identity_data"]) == (provider, data)
    assert session["user"]["app_metadata"] == {"provider": provider, "providers": [provider]}
    assert session["user"]["email_confirmed_at"]


def test_github_identity_data(client, sign_in):
    data = sign_in()["user"]["identities"][0]["identity_data"]
    assert data == {
        "iss": "http://127.0.0.1:54321/github/api/v3", "sub": "583231", "provider_id": "583231",
        "name": "The Octocat", "full_name": "The Octocat", "preferred_username": "octocat",
        "user_name": "octocat",
        "avatar_url": "http://127.0.0.1:54321/github/avatars/583231.svg",
        "email": "octocat@example.com", "email_verified": True, "phone_verified": False}


def test_same_verified_email_links_providers_automatically(many):
    many.post("/google/_accounts", json={"login": "octocat", "email": "octocat@example.com"})
    first = new_session(many)["user"]
    second = new_session(many, provider="google")["user"]
    assert second["id"] == first["id"]
    assert second["app_metadata"]["providers"] == ["github", "google"]
