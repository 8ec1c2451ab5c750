"""Signing keys: states, what the JWKS lists, which tokens verify, rotation, revocation."""

import jwt
import pytest

from emulator import keys
from emulator.signing_keys import SigningKeyError, UnknownSigningKey
from tests.emulator.emulator_helpers import bearer, new_session

DEV_KID = keys.JWT_PRIVATE_JWK["kid"]
REFRESH = "/auth/v1/token?grant_type=refresh_token"


@pytest.fixture
def keyring(app):
    return app.extensions["emulator.signing_keys"]


def states(keyring) -> list[tuple[str, str]]:
    return [(key.kid, key.state) for key in keyring.all()]


def jwks_kids(client) -> list[str]:
    return [key["kid"] for key in client.get("/auth/v1/.well-known/jwks.json").json["keys"]]


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def user_status(client, session) -> tuple[int, str | None]:
    response = client.get("/auth/v1/user", headers=bearer(session))
    return response.status_code, response.json.get("msg")


def test_new_database_has_the_dev_key_current_and_a_standby(keyring):
    (current, current_state), (standby, standby_state) = states(keyring)
    assert (current, current_state) == (DEV_KID, "in_use")
    assert standby_state == "standby" and standby != DEV_KID


def test_standby_key_is_random_es256_with_a_uuid_kid(make_app):
    first, second = (make_app().extensions["emulator.signing_keys"].all()[1] for _ in range(2))
    assert first.kid != second.kid and len(first.kid) == 36
    assert first.private_jwk["x"] != second.private_jwk["x"]
    assert (first.alg, first.private_jwk["crv"]) == ("ES256", "P-256")


def test_tokens_are_signed_with_the_current_key(sign_in):
    assert kid_of(sign_in()["access_token"]) == DEV_KID


def test_jwks_lists_current_and_standby_at_first(client, keyring):
    assert jwks_kids(client) == [kid for kid, _ in states(keyring)]


def test_rotation_moves_every_key_one_state_on(keyring):
    (old, _), (standby, _) = states(keyring)
    current = keyring.rotate()
    assert current.kid == standby
    after = dict(states(keyring))
    assert (after[standby], after[old]) == ("in_use", "previously_used")
    new_standby = [kid for kid, state in after.items() if state == "standby"]
    assert len(new_standby) == 1 and new_standby[0] not in (old, standby)


def test_after_rotation_new_tokens_use_the_new_key_and_old_ones_still_verify(
        client, sign_in, keyring):
    before = sign_in()
    current = keyring.rotate()
    after = sign_in()
    assert kid_of(after["access_token"]) == current.kid
    assert user_status(client, before)[0] == 200
    assert user_status(client, after)[0] == 200


def test_jwks_after_rotation_lists_current_standby_and_previously_used(client, keyring):
    keyring.rotate()
    assert jwks_kids(client) == [kid for kid, _ in states(keyring)]
    assert len(jwks_kids(client)) == 3


def test_revoked_key_leaves_the_jwks(client, keyring):
    keyring.rotate()
    keyring.revoke(DEV_KID)
    assert DEV_KID not in jwks_kids(client)
    assert len(jwks_kids(client)) == 2
    assert dict(states(keyring))[DEV_KID] == "revoked"


def test_token_of_a_revoked_key_gets_bad_jwt(client, sign_in, keyring):
    session = sign_in()
    keyring.rotate()
    keyring.revoke(DEV_KID)
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert (response.status_code, response.json["error_code"]) == (403, "bad_jwt")
    assert response.json["msg"] == (
        "invalid JWT: unable to parse or verify signature, token is unverifiable: error while "
        f"executing keyfunc: unrecognized JWT kid {DEV_KID} for algorithm ES256")


def test_refresh_after_revocation_gives_a_token_of_the_current_key(client, sign_in, keyring,
                                                                   anon):
    session = sign_in()
    current = keyring.rotate()
    keyring.revoke(DEV_KID)
    response = client.post(REFRESH, headers=anon,
                           json={"refresh_token": session["refresh_token"]})
    assert response.status_code == 200
    assert kid_of(response.json["access_token"]) == current.kid
    assert user_status(client, response.json)[0] == 200


def test_a_standby_key_signs_nothing_and_verifies_nothing(client, sign_in, keyring):
    standby = keyring.all()[1]
    claims = jwt.decode(sign_in()["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, standby.private_key, "ES256", headers={"kid": standby.kid})
    assert user_status(client, {"access_token": forged})[0] == 403


@pytest.mark.parametrize("rotations", [0, 1])
def test_only_a_previously_used_key_can_be_revoked(keyring, rotations):
    for _ in range(rotations):
        keyring.rotate()
    for key in keyring.all():
        if key.state != "previously_used":
            with pytest.raises(SigningKeyError, match="only a previously used key"):
                keyring.revoke(key.kid)


def test_revoking_twice_or_an_unknown_kid_is_refused(keyring):
    keyring.rotate()
    keyring.revoke(DEV_KID)
    with pytest.raises(SigningKeyError, match="is revoked"):
        keyring.revoke(DEV_KID)
    with pytest.raises(UnknownSigningKey):
        keyring.revoke("no-such-kid")


def test_two_rotations_keep_both_older_keys_trusted(client, sign_in, keyring):
    first = sign_in()
    keyring.rotate()
    second = sign_in()
    keyring.rotate()
    assert [state for _, state in states(keyring)] == [
        "in_use", "standby", "previously_used", "previously_used"]
    assert user_status(client, first)[0] == user_status(client, second)[0] == 200


def test_keys_and_states_survive_a_restart(make_app, tmp_path, anon):
    database = str(tmp_path / "auth.sqlite3")
    first = make_app(DATABASE=database)
    keyring = first.extensions["emulator.signing_keys"]
    current = keyring.rotate()
    keyring.revoke(DEV_KID)
    before = states(keyring)
    again = make_app(DATABASE=database)
    assert states(again.extensions["emulator.signing_keys"]) == before
    assert jwks_kids(again.test_client()) == [kid for kid, s in before if s != "revoked"]
    assert again.extensions["emulator.tokens"].keyring.signing_key().kid == current.kid


def test_a_change_by_another_process_applies_at_once(make_app, tmp_path):
    # Another Database on the same file stands for `python -m emulator keys` in a terminal.
    database = str(tmp_path / "auth.sqlite3")
    served = make_app(DATABASE=database)
    other = make_app(DATABASE=database).extensions["emulator.signing_keys"]
    other.rotate()
    assert states(served.extensions["emulator.signing_keys"]) == states(other)


def test_hs256_mode_signs_with_the_secret_and_keeps_the_jwks_empty(make_app):
    app = make_app(JWT_ALG="HS256")
    client = app.test_client()
    app.extensions["emulator.signing_keys"].rotate()
    assert client.get("/auth/v1/.well-known/jwks.json").json == {"keys": []}
    session = new_session(client)
    assert jwt.get_unverified_header(session["access_token"]) == {"alg": "HS256", "typ": "JWT"}
    assert user_status(client, session)[0] == 200
