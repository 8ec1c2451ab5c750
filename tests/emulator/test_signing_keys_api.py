"""Emulator-only admin endpoints for signing keys (service role only)."""

import pytest

from emulator import keys

DEV_KID = keys.JWT_PRIVATE_JWK["kid"]
BASE = "/auth/v1/admin/signing-keys"
SECRET = {"apikey": keys.SECRET_KEY}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", BASE), ("POST", BASE + "/rotate"), ("POST", f"{BASE}/{DEV_KID}/revoke")])
def test_only_the_service_role(client, anon, method, path):
    response = client.open(path, method=method, headers=anon)
    assert (response.status_code, response.json["error_code"]) == (401, "no_authorization")
    response = client.open(path, method=method, headers={"apikey": keys.PUBLISHABLE_KEY})
    assert (response.status_code, response.json["error_code"]) == (403, "not_admin")


@pytest.mark.parametrize("headers", ["admin", "secret"])
def test_list_shapes_keys_like_the_management_api(client, admin, headers):
    response = client.get(BASE, headers=admin if headers == "admin" else SECRET)
    assert response.status_code == 200
    current, standby = response.json["keys"]
    assert list(current) == ["id", "algorithm", "status", "public_jwk", "created_at",
                             "updated_at"]
    assert (current["id"], current["algorithm"], current["status"]) == (DEV_KID, "ES256",
                                                                       "in_use")
    assert standby["status"] == "standby"
    assert "d" not in current["public_jwk"] and current["public_jwk"]["kid"] == DEV_KID
    assert current["created_at"].endswith("Z")


def test_rotate_answers_the_new_list(client):
    standby = client.get(BASE, headers=SECRET).json["keys"][1]["id"]
    response = client.post(BASE + "/rotate", headers=SECRET)
    assert response.status_code == 200
    statuses = {key["id"]: key["status"] for key in response.json["keys"]}
    assert (statuses[standby], statuses[DEV_KID]) == ("in_use", "previously_used")
    assert list(statuses.values()).count("standby") == 1


def test_revoke_a_previously_used_key(client):
    client.post(BASE + "/rotate", headers=SECRET)
    response = client.post(f"{BASE}/{DEV_KID}/revoke", headers=SECRET)
    assert response.status_code == 200
    assert (response.json["id"], response.json["status"]) == (DEV_KID, "revoked")


def test_revoke_the_current_key_is_422(client):
    response = client.post(f"{BASE}/{DEV_KID}/revoke", headers=SECRET)
    assert (response.status_code, response.json["error_code"]) == (422, "validation_failed")
    assert response.json["msg"] == (f"only a previously used key can be revoked; {DEV_KID} "
                                    "is in use")


def test_revoke_an_unknown_kid_is_404(client):
    response = client.post(f"{BASE}/no-such-kid/revoke", headers=SECRET)
    assert (response.status_code, response.json["error_code"]) == (404, "not_found")


def test_errors_follow_the_api_version(client):
    headers = {**SECRET, "X-Supabase-Api-Version": "2024-01-01"}
    response = client.post(f"{BASE}/no-such-kid/revoke", headers=headers)
    assert response.json == {"code": "not_found",
                             "message": "no signing key has kid no-such-kid"}
