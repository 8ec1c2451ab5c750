"""The gateway's apikey check: required on most routes, open on browser routes."""

import pytest

from emulator import keys


@pytest.mark.parametrize("path", ["/auth/v1/settings", "/auth/v1/user", "/auth/v1/health"])
def test_missing_key(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.json == {"message": "No API key found in request"}


def test_invalid_key(client):
    response = client.get("/auth/v1/settings", headers={"apikey": "nope"})
    assert (response.status_code, response.json) == (401, {"message": "Invalid API key"})


@pytest.mark.parametrize("key", [keys.ANON_KEY, keys.SERVICE_ROLE_KEY])
def test_both_keys_accepted_in_header_or_query(client, key):
    assert client.get("/auth/v1/settings", headers={"apikey": key}).status_code == 200
    assert client.get(f"/auth/v1/settings?apikey={key}").status_code == 200


@pytest.mark.parametrize("path", ["/auth/v1/callback", "/auth/v1/.well-known/jwks.json"])
def test_open_routes(client, path):
    assert client.get(path).status_code != 401


def test_keys_follow_a_custom_secret(make_app):
    client = make_app(JWT_SECRET="another-secret-with-at-least-32-characters!").test_client()
    assert client.get("/auth/v1/settings", headers={"apikey": keys.ANON_KEY}).status_code == 401
