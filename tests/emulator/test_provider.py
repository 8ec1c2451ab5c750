"""The auth server's provider clients: token-response parsing and claim shapes."""

import httpx
import pytest

from emulator.provider import (
    ProviderError,
    github_user_data,
    gitlab_user_data,
    google_user_data,
    parse_token_response,
)


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", "access_token=gho_abc&scope=user%3Aemail"),
    ("text/plain; charset=utf-8", "access_token=gho_abc&token_type=bearer"),
    ("application/json", '{"access_token": "gho_abc"}'),
    ("", '{"access_token": "gho_abc"}'),
])
def test_token_response_form_or_json(content_type, body):
    response = httpx.Response(200, headers={"Content-Type": content_type}, text=body)
    assert parse_token_response(response) == "gho_abc"


@pytest.mark.parametrize(("status", "content_type", "body"), [
    (200, "application/x-www-form-urlencoded", "error=bad_verification_code"),
    (200, "application/json", '{"error": "bad_verification_code"}'),
    (200, "application/json", "{}"),
    (200, "application/json", "not json"),
    (401, "application/json", '{"access_token": "x"}'),
])
def test_token_response_failures(status, content_type, body):
    response = httpx.Response(status, headers={"Content-Type": content_type}, text=body)
    with pytest.raises(ProviderError):
        parse_token_response(response)


def test_github_claims_skip_empty_fields_and_emails():
    data = github_user_data({"id": 7, "login": "ann", "name": None},
                            [{"email": "", "primary": True}, {"email": "a@x.io"}], "H")
    assert data.claims == {"iss": "H", "sub": "7", "preferred_username": "ann",
                           "user_name": "ann", "provider_id": "7"}
    assert data.emails == [{"email": "a@x.io", "verified": False, "primary": False}]


def test_github_bad_json_is_a_provider_error():
    with pytest.raises(ProviderError):
        github_user_data([], [], "H")


def test_google_hosted_domain_goes_to_custom_claims():
    data = google_user_data({"iss": "I", "sub": "1", "email": "a@corp.test", "hd": "corp.test",
                             "verified_email": True})
    assert data.claims["custom_claims"] == {"hd": "corp.test"}
    assert data.emails == [{"email": "a@corp.test", "verified": True, "primary": True}]


def test_gitlab_extra_emails_are_unverified_and_the_main_one_last():
    data = gitlab_user_data({"id": 3, "email": "main@x.io", "confirmed_at": None},
                            [{"email": "other@x.io"}], "https://gitlab.test")
    assert data.emails == [{"email": "other@x.io", "verified": False, "primary": False},
                           {"email": "main@x.io", "verified": False, "primary": True}]
    assert data.claims == {"iss": "https://gitlab.test", "sub": "3", "provider_id": "3"}
