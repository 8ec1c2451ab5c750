"""The generic stand-in under /<provider>: consent, JSON token endpoint, userinfo, avatars."""

import pytest

from tests.emulator.emulator_helpers import query

CALLBACK = "http://127.0.0.1:54321/auth/v1/callback"


@pytest.fixture
def client(make_app):
    return make_app(PROVIDERS="github,google,gitlab,discord", AUTO_LOGIN="octocat").test_client()


def token_for(client, provider, **form):
    location = client.get(f"/{provider}/oauth/authorize", query_string={
        "client_id": f"emulator-{provider}-client-id", "redirect_uri": CALLBACK,
        "state": "s", "scope": "email"}).headers["Location"]
    return client.post(f"/{provider}/oauth/token", data={
        "grant_type": "authorization_code", "code": query(location)["code"],
        "redirect_uri": CALLBACK, "client_id": f"emulator-{provider}-client-id",
        "client_secret": f"emulator-{provider}-client-secret", **form})


def test_token_endpoint_answers_json(client):
    response = token_for(client, "google")
    assert response.status_code == 200
    assert response.json["access_token"].startswith("ya29.")
    assert (response.json["token_type"], response.json["expires_in"]) == ("Bearer", 3599)


def test_token_endpoint_errors(client):
    wrong = token_for(client, "gitlab", client_secret="nope")
    assert (wrong.status_code, wrong.json["error"]) == (401, "invalid_client")
    mismatch = token_for(client, "gitlab", redirect_uri=CALLBACK + "/x")
    assert (mismatch.status_code, mismatch.json["error"]) == (400, "invalid_grant")


def userinfo(client, provider):
    token = token_for(client, provider).json["access_token"]
    return client.get(f"/{provider}/userinfo", headers={"Authorization": f"Bearer {token}"})


def test_google_userinfo_shape(client):
    info = userinfo(client, "google").json
    assert info["sub"] == info["id"] == "104729583231000001"
    assert info["verified_email"] is True and info["email_verified"] is True
    assert info["picture"].endswith("/google/avatars/104729583231000001.svg")


def test_gitlab_user_shape(client):
    user = userinfo(client, "gitlab").json
    assert (user["id"], user["username"], user["state"]) == (5832310, "octocat", "active")
    assert user["confirmed_at"] == "2011-01-25T18:44:36.000Z"


def test_generic_provider_has_oidc_claims(client):
    info = userinfo(client, "discord").json
    assert (info["sub"], info["preferred_username"]) == ("583231", "octocat")


def test_unknown_token_is_401(client):
    response = client.get("/google/userinfo", headers={"Authorization": "Bearer nope"})
    assert (response.status_code, response.json["error"]) == (401, "invalid_token")


def test_avatar_and_seeding(client):
    assert client.get("/gitlab/avatars/5832310.svg").mimetype == "image/svg+xml"
    created = client.post("/gitlab/_accounts", json={"login": "dev", "email": "d@example.com"})
    assert (created.status_code, created.json["username"], created.json["id"]) == (
        201, "dev", 10_000_000)


def test_disabled_providers_have_no_stand_in(make_app):
    client = make_app().test_client()
    assert client.get("/google/oauth/authorize").status_code == 404


@pytest.mark.parametrize("provider", ["google", "gitlab", "discord"])
def test_the_consent_pages_cannot_be_framed(make_app, provider):
    client = make_app(PROVIDERS="github,google,gitlab,discord", GITHUB_AUTO_LOGIN=None,
                      AUTO_LOGIN=None).test_client()
    response = client.get(f"/{provider}/oauth/authorize", query_string={
        "client_id": f"emulator-{provider}-client-id", "redirect_uri": CALLBACK})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
