"""GET /settings, /health and /.well-known/jwks.json (§4.2, §6), and get_claims."""

import pytest
from supabase_auth.errors import AuthInvalidJwtError

EXTERNAL_KEYS = ["anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook",
                 "snapchat", "figma", "fly", "github", "gitlab", "google", "keycloak", "kakao",
                 "linkedin", "linkedin_oidc", "notion", "spotify", "slack", "slack_oidc",
                 "workos", "twitch", "twitter", "email", "phone", "zoom"]
SETTINGS_KEYS = ["external", "disable_signup", "mailer_autoconfirm", "phone_autoconfirm",
                 "sms_provider", "saml_enabled", "saml_private_key_next_configured",
                 "passkeys_enabled"]


@pytest.fixture
def settings(http) -> dict:
    resp = http.get("/settings")
    assert resp.status_code == 200
    return resp.json()


def test_settings_keys(settings):
    assert list(settings) == SETTINGS_KEYS


def test_settings_external_keys_are_booleans(settings):
    assert list(settings["external"]) == EXTERNAL_KEYS
    assert all(isinstance(v, bool) for v in settings["external"].values())


def test_settings_values(settings):
    assert settings["external"]["github"] is True
    assert settings["external"]["email"] is True
    assert settings["external"]["phone"] is False
    assert settings["external"]["gitlab"] is False
    assert (settings["disable_signup"], settings["mailer_autoconfirm"]) == (False, False)
    assert settings["sms_provider"] == ""


def test_health(http):
    resp = http.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["version", "name", "description"]
    assert isinstance(body["version"], str)
    assert body["name"] == "GoTrue"
    assert body["description"] == "GoTrue is a user registration and authentication API"


def test_jwks_cache_control(http):
    resp = http.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=600"


def test_jwks_lists_public_es256_keys(http):
    keys = http.get("/.well-known/jwks.json").json()["keys"]
    assert keys
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"}
        assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-256", "ES256")
        assert (key["use"], key["key_ops"]) == ("sig", ["verify"])
        assert key["kid"]


def test_real_client_get_claims_verifies_es256(gotrue, client_sign_in):
    session = client_sign_in()
    response = gotrue.get_claims()
    assert response["headers"]["alg"] == "ES256"
    assert response["claims"]["sub"] == session.user.id


def test_real_client_get_claims_rejects_bad_signature(gotrue, client_sign_in):
    token = client_sign_in().access_token
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with pytest.raises(AuthInvalidJwtError):
        gotrue.get_claims(jwt=forged)
