"""POST /token?grant_type=pkce (§3) and the access token it issues (§4)."""

import time
import uuid

import jwt
import pytest

from tests.conformance.support import (
    FLOW_STATE_EXPIRY,
    REFRESH_TOKEN_RE,
    UUID_RE,
    assert_error,
    jwt_parts,
)

EMPTY_FIELDS = "invalid request: both auth code and code verifier should be non-empty"
NOT_FOUND = "invalid flow state, no valid flow state found"
MISMATCH = "code challenge does not match previously saved code verifier"
RESPONSE_KEYS = ["access_token", "token_type", "expires_in", "expires_at", "refresh_token",
                 "user", "provider_token"]
CLAIM_KEYS = ["iss", "sub", "aud", "exp", "iat", "email", "phone", "app_metadata",
              "user_metadata", "role", "aal", "amr", "session_id", "is_anonymous"]


@pytest.mark.parametrize("method", ["s256", "S256", "plain"])
def test_exchange_succeeds_for_each_challenge_method(oauth, oauth_code, method):
    flow = oauth_code(method=method)
    resp = oauth.exchange(flow.code, flow.verifier)
    assert resp.status_code == 200, resp.text


def test_response_keys_in_order(sign_in):
    assert list(sign_in()) == RESPONSE_KEYS


def test_response_value_types(sign_in):
    session = sign_in()
    assert session["token_type"] == "bearer"
    assert isinstance(session["access_token"], str)
    assert isinstance(session["provider_token"], str) and session["provider_token"]
    assert isinstance(session["expires_in"], int) and 3590 <= session["expires_in"] <= 3600
    assert isinstance(session["expires_at"], int)
    assert abs(session["expires_at"] - (time.time() + session["expires_in"])) <= 5


def test_refresh_token_is_twelve_base32_chars(sign_in):
    assert REFRESH_TOKEN_RE.match(sign_in()["refresh_token"])


def test_user_has_github_identity(sign_in, stand_in):
    account = stand_in.create_account()
    user = sign_in(account)["user"]
    assert UUID_RE.match(user["id"])
    assert (user["aud"], user["role"]) == ("authenticated", "authenticated")
    assert user["email"] == account["email"]
    assert user["app_metadata"] == {"provider": "github", "providers": ["github"]}
    assert [i["provider"] for i in user["identities"]] == ["github"]
    assert user["identities"][0]["id"] == str(account["id"])
    assert user["identities"][0]["user_id"] == user["id"]


def test_user_metadata_from_github(sign_in, stand_in):
    account = stand_in.create_account()
    meta = sign_in(account)["user"]["user_metadata"]
    assert meta["sub"] == meta["provider_id"] == str(account["id"])
    assert meta["user_name"] == meta["preferred_username"] == account["login"]
    assert meta["full_name"] == meta["name"] == account["name"]
    assert meta["email"] == account["email"]
    assert meta["email_verified"] is True
    assert meta["phone_verified"] is False


def test_jwt_header_names_a_jwks_key(sign_in, http):
    header, _ = jwt_parts(sign_in()["access_token"])
    kids = [key["kid"] for key in http.get("/.well-known/jwks.json").json()["keys"]]
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    assert header["kid"] in kids


def test_jwt_verifies_with_jwks_key(sign_in, http):
    token = sign_in()["access_token"]
    header, _ = jwt_parts(token)
    keys = {key["kid"]: key for key in http.get("/.well-known/jwks.json").json()["keys"]}
    key = jwt.PyJWK(keys[header["kid"]]).key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="authenticated")
    assert claims["role"] == "authenticated"


def test_jwt_claims_in_order(sign_in):
    _, claims = jwt_parts(sign_in()["access_token"])
    assert list(claims) == CLAIM_KEYS


def test_jwt_claim_values(sign_in, stand_in, target):
    account = stand_in.create_account()
    session = sign_in(account)
    _, claims = jwt_parts(session["access_token"])
    assert claims["iss"] == target.auth_url
    assert claims["sub"] == session["user"]["id"]
    assert claims["aud"] == "authenticated"
    assert claims["exp"] == session["expires_at"]
    assert claims["exp"] - claims["iat"] == 3600
    assert (claims["email"], claims["phone"]) == (account["email"], "")
    assert claims["app_metadata"] == session["user"]["app_metadata"]
    assert claims["role"] == "authenticated"
    assert claims["aal"] == "aal1"
    assert UUID_RE.match(claims["session_id"])
    assert claims["is_anonymous"] is False


def test_jwt_amr_is_oauth(sign_in):
    _, claims = jwt_parts(sign_in()["access_token"])
    [entry] = claims["amr"]
    assert entry["method"] == "oauth"
    assert abs(entry["timestamp"] - time.time()) < 60


def test_each_exchange_creates_a_new_session(sign_in, stand_in):
    account = stand_in.create_account()
    first = jwt_parts(sign_in(account)["access_token"])[1]
    second = jwt_parts(sign_in(account)["access_token"])[1]
    assert first["sub"] == second["sub"]
    assert first["session_id"] != second["session_id"]


@pytest.mark.parametrize("body", [
    {},
    {"auth_code": "x"},
    {"code_verifier": "y"},
    {"auth_code": "", "code_verifier": ""},
])
def test_empty_fields_are_rejected(http, body):
    resp = http.post("/token", params={"grant_type": "pkce"}, json=body)
    assert_error(resp, 400, "validation_failed", EMPTY_FIELDS)


@pytest.mark.parametrize("content", [b"", b"{", b"not json", b"[1,"])
def test_unparseable_body_is_bad_json(http, content):
    resp = http.post("/token", params={"grant_type": "pkce"}, content=content,
                     headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_json")
    assert resp.json()["message"].startswith("Could not parse request body as JSON")


def test_unknown_code_is_not_found(oauth):
    resp = oauth.exchange(str(uuid.uuid4()), "v" * 43)
    assert_error(resp, 404, "flow_state_not_found", NOT_FOUND)


def test_wrong_verifier_is_rejected(oauth, oauth_code):
    flow = oauth_code()
    resp = oauth.exchange(flow.code, "w" * 43)
    assert_error(resp, 400, "bad_code_verifier", MISMATCH)


def test_wrong_verifier_keeps_the_code_usable(oauth, oauth_code):
    flow = oauth_code()
    oauth.exchange(flow.code, "w" * 43)
    resp = oauth.exchange(flow.code, flow.verifier)
    assert resp.status_code == 200, resp.text


def test_code_is_single_use(oauth, oauth_code):
    flow = oauth_code()
    assert oauth.exchange(flow.code, flow.verifier).status_code == 200
    resp = oauth.exchange(flow.code, flow.verifier)
    assert_error(resp, 404, "flow_state_not_found", NOT_FOUND)


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the flow-state expiry")
def test_expired_flow_state(oauth, oauth_code, clock):
    flow = oauth_code()
    clock.advance(FLOW_STATE_EXPIRY + 1)
    resp = oauth.exchange(flow.code, flow.verifier)
    assert_error(resp, 422, "flow_state_expired", "invalid flow state, flow state has expired")


@pytest.mark.emulator_only(reason="moves the emulator CLOCK to just before the flow-state expiry")
def test_flow_state_valid_until_expiry(oauth, oauth_code, clock):
    flow = oauth_code()
    clock.advance(FLOW_STATE_EXPIRY - 5)
    assert oauth.exchange(flow.code, flow.verifier).status_code == 200


@pytest.mark.parametrize("grant_type", ["password_plus", "authorization_code", ""])
def test_unknown_grant_type(http, grant_type):
    resp = http.post("/token", params={"grant_type": grant_type},
                     json={"auth_code": "x", "code_verifier": "y"})
    assert_error(resp, 400, "invalid_credentials", "unsupported_grant_type")


def test_grant_type_read_from_form_body(http):
    resp = http.post("/token", content=b"grant_type=pkce",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    # the grant type is recognised; the body is then not the JSON the pkce grant needs
    assert_error(resp, 400, "bad_json")


def test_real_client_exchanges_code(gotrue, client_sign_in, stand_in):
    account = stand_in.create_account()
    session = client_sign_in(account)
    assert session.user.email == account["email"]
    assert gotrue.get_user().user.id == session.user.id
