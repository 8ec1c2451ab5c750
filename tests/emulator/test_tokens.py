"""JWT issuing (claim order, ES256 kid, HS256) and §4.2 verification."""

import json

import jwt
import pytest

from emulator import keys
from emulator.config import load
from emulator.tokens import TokenError, TokenService

USER = {"id": "0b8f4f3e-1b7a-4e4e-9d1c-5d3c2a1b0f9e", "aud": "authenticated", "email": "a@b.c",
        "phone": "", "app_metadata": {}, "user_metadata": {}, "role": "authenticated",
        "is_anonymous": False}
SESSION = {"id": "s", "aal": "aal1", "amr": [{"method": "oauth", "timestamp": 1}]}


@pytest.fixture
def service(clock):
    return TokenService(load({"CLOCK": clock}))


def payload(token):
    return json.loads(jwt.utils.base64url_decode(token.split(".")[1]))


def test_claims_in_reference_order(service, clock):
    token, exp = service.access_token(USER, SESSION, int(clock.now))
    assert list(payload(token)) == ["iss", "sub", "aud", "exp", "iat", "email", "phone",
                                    "app_metadata", "user_metadata", "role", "aal", "amr",
                                    "session_id", "is_anonymous"]
    assert exp == int(clock.now) + 3600
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": keys.JWT_PRIVATE_JWK["kid"],
                                                "typ": "JWT"}


def test_hs256_has_no_kid_and_verifies(clock):
    service = TokenService(load({"CLOCK": clock, "JWT_ALG": "HS256"}))
    token, _ = service.access_token(USER, SESSION, int(clock.now))
    assert "kid" not in jwt.get_unverified_header(token)
    assert service.verify(token)["sub"] == USER["id"]


def test_api_keys_verify_with_the_secret(service):
    assert service.verify(keys.SERVICE_ROLE_KEY)["role"] == "service_role"


def test_expiry_without_leeway(service, clock):
    token, exp = service.access_token(USER, SESSION, int(clock.now))
    clock.now = exp - 0.001
    service.verify(token)
    clock.now = exp
    with pytest.raises(TokenError, match="token is expired"):
        service.verify(token)


@pytest.mark.parametrize("token", [
    "garbage",
    jwt.encode({"sub": "x"}, "wrong-secret-that-is-long-enough-for-hs256", "HS256"),
    jwt.encode({"sub": "x"}, "k" * 48, "HS384"),
])
def test_rejects_bad_tokens(service, token):
    with pytest.raises(TokenError):
        service.verify(token)
