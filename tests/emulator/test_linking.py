"""Automatic linking by email, manual linking at the callback, and unlinking."""

import pytest

from tests.emulator.emulator_helpers import VERIFIER, bearer, link, query


@pytest.fixture
def client(make_app):
    app = make_app(PROVIDERS="github,google,gitlab", MANUAL_LINKING=True, AUTO_LOGIN="octocat")
    return app.test_client()


def exchange(client, anon, location):
    response = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                           json={"auth_code": query(location)["code"],
                                 "code_verifier": VERIFIER})
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture
def linked(client, anon, sign_in):
    """A GitHub user who linked their Google account: the new session."""
    return exchange(client, anon, link(client, sign_in()))


def test_link_adds_the_identity_to_the_signed_in_user(linked, sign_in):
    user = linked["user"]
    assert [i["provider"] for i in user["identities"]] == ["github", "google"]
    assert user["app_metadata"]["provider"] == "github"
    assert user["app_metadata"]["providers"] == ["github", "google"]
    assert user["email"] == "octocat@example.com"
    assert user["user_metadata"]["user_name"] == "octocat"  # not merged with Google's data


def test_linking_an_identity_twice(client, linked):
    location = link(client, linked)
    assert query(location)["error_code"] == "identity_already_exists"
    assert query(location)["error_description"] == "Identity is already linked"
    assert query(location)["error"] == "server_error"  # 422 has no OAuth error name


def test_linking_another_users_identity(client, anon, sign_in):
    sign_in(provider="gitlab")  # the GitLab account now belongs to a new user
    location = link(client, sign_in(), provider="gitlab")
    assert query(location)["error_description"] == "Identity is already linked to another user"


def test_linking_target_deleted_before_callback(client, admin, sign_in):
    session = sign_in()
    response = client.get("/auth/v1/user/identities/authorize", headers=bearer(session),
                          query_string={"provider": "google"})
    client.delete(f"/auth/v1/admin/users/{session['user']['id']}", headers=admin)
    callback = client.get(response.headers["Location"]).headers["Location"]
    answer = client.get(callback)
    assert answer.status_code == 303
    assert query(answer.headers["Location"])["error_description"] == \
        "Linking target user not found"


def unlink(client, session, identity_id):
    return client.delete(f"/auth/v1/user/identities/{identity_id}", headers=bearer(session))


def test_unlink_recomputes_providers_and_email(client, linked):
    github = linked["user"]["identities"][0]["identity_id"]
    response = unlink(client, linked, github)
    assert (response.status_code, response.json) == (200, {})
    user = client.get("/auth/v1/user", headers=bearer(linked)).json
    assert user["app_metadata"]["providers"] == ["google"]
    assert user["app_metadata"]["provider"] == "google"
    assert user["email"] == "octocat+google@example.com"
    assert user["email_confirmed_at"]


@pytest.mark.parametrize(("identity_id", "status", "code", "message"), [
    ("nope", 404, "validation_failed", "identity_id must be an UUID"),
    ("6c1f3a9e-3d5c-4b36-9d55-0d2f1e7b9a10", 422, "identity_not_found",
     "Identity doesn't exist"),
])
def test_unlink_errors(client, linked, identity_id, status, code, message):
    response = unlink(client, linked, identity_id)
    assert response.status_code == status
    assert (response.json["error_code"], response.json["msg"]) == (code, message)


def test_the_last_identity_cannot_be_unlinked(client, sign_in):
    session = sign_in()
    response = unlink(client, session, session["user"]["identities"][0]["identity_id"])
    assert (response.status_code, response.json["error_code"]) == (
        422, "single_identity_not_deletable")


def test_another_users_identity_is_not_found(client, linked, sign_in):
    other = sign_in(provider="gitlab")["user"]["identities"][0]["identity_id"]
    assert unlink(client, linked, other).json["error_code"] == "identity_not_found"


def test_unlink_email_conflict(client, admin, linked):
    client.post("/auth/v1/admin/users", headers=admin,
                json={"email": "octocat+google@example.com", "email_confirm": True})
    github = linked["user"]["identities"][0]["identity_id"]
    response = unlink(client, linked, github)
    assert (response.status_code, response.json["error_code"]) == (
        422, "email_conflict_identity_not_deletable")
