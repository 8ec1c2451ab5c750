"""Signing-key rotation and revocation as the server lives through them (§4.2).

A hosted project rotates and revokes in its dashboard or the Management API; the emulator has
emulator-only admin endpoints for it, so these tests run against the emulator only. What they
check is the server's side: which tokens verify at GET /user, what the JWKS lists, and that a
refresh after revocation yields a token signed with the current key.
"""

import pytest

from tests.conformance.support import assert_error, jwt_parts

pytestmark = pytest.mark.emulator_only(
    reason="rotates and revokes through the emulator's /admin/signing-keys")


@pytest.fixture
def keys_admin(admin):
    """List, rotate and revoke through the emulator-only admin endpoints."""

    class Keys:
        def list(self) -> dict[str, str]:
            resp = admin.get("/admin/signing-keys")
            assert resp.status_code == 200, resp.text
            return {key["id"]: key["status"] for key in resp.json()["keys"]}

        def rotate(self) -> str:
            resp = admin.post("/admin/signing-keys/rotate")
            assert resp.status_code == 200, resp.text
            return next(k["id"] for k in resp.json()["keys"] if k["status"] == "in_use")

        def revoke(self, kid: str) -> None:
            resp = admin.post(f"/admin/signing-keys/{kid}/revoke")
            assert resp.status_code == 200, resp.text

    return Keys()


def kid(token: str) -> str:
    return jwt_parts(token)[0]["kid"]


def jwks_kids(http) -> set[str]:
    return {key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]}


def test_jwks_lists_current_standby_and_previously_used(http, keys_admin):
    keys_admin.rotate()
    states = keys_admin.list()
    assert jwks_kids(http) == {k for k, s in states.items() if s != "revoked"}
    assert {"in_use", "standby", "previously_used"} <= set(states.values())


def test_rotation_keeps_old_tokens_valid(sign_in, bearer, keys_admin):
    before = sign_in()
    current = keys_admin.rotate()
    after = sign_in()
    assert kid(after["access_token"]) == current != kid(before["access_token"])
    assert bearer("GET", "/user", before["access_token"]).status_code == 200
    assert bearer("GET", "/user", after["access_token"]).status_code == 200


def test_revocation_fails_old_tokens_and_refresh_recovers(sign_in, bearer, refresh, http,
                                                         keys_admin):
    session = sign_in()
    old = kid(session["access_token"])
    current = keys_admin.rotate()
    keys_admin.revoke(old)
    assert old not in jwks_kids(http)
    assert_error(bearer("GET", "/user", session["access_token"]), 403, "bad_jwt",
                 "invalid JWT: unable to parse or verify signature, token is unverifiable: "
                 f"error while executing keyfunc: unrecognized JWT kid {old} for algorithm ES256")
    resp = refresh(session["refresh_token"])
    assert resp.status_code == 200, resp.text
    assert kid(resp.json()["access_token"]) == current
    assert bearer("GET", "/user", resp.json()["access_token"]).status_code == 200
