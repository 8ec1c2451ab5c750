"""The dashboard page: list users, ban/unban, delete, app_metadata.role."""

import pytest


@pytest.fixture
def user_id(sign_in):
    return sign_in()["user"]["id"]


def csrf(client):
    html = client.get("/dashboard").get_data(as_text=True)
    return html.split('name="csrf_token" value="')[1].split('"')[0]


def test_lists_users(client, user_id):
    html = client.get("/dashboard").get_data(as_text=True)
    assert "octocat@example.com" in html and user_id in html


def test_ban_and_unban(client, user_id, app):
    response = client.post(f"/dashboard/users/{user_id}/ban", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert "banned until" in client.get("/dashboard").get_data(as_text=True)
    client.post(f"/dashboard/users/{user_id}/unban", data={"csrf_token": csrf(client)})
    row = app.extensions["emulator.db"].one("SELECT banned_until FROM users")
    assert row["banned_until"] is None


def test_set_and_clear_role(client, user_id, app):
    client.post(f"/dashboard/users/{user_id}/role", data={"csrf_token": csrf(client),
                                                          "role": "admin"})
    assert '"role": "admin"' in app.extensions["emulator.db"].one(
        "SELECT app_metadata FROM users")[0]
    client.post(f"/dashboard/users/{user_id}/role", data={"csrf_token": csrf(client), "role": ""})
    assert "role" not in app.extensions["emulator.db"].one("SELECT app_metadata FROM users")[0]


def test_delete(client, user_id, app):
    client.post(f"/dashboard/users/{user_id}/delete", data={"csrf_token": csrf(client)})
    assert app.extensions["emulator.db"].one("SELECT count(*) FROM users")[0] == 0
    assert "No users yet" in client.get("/dashboard").get_data(as_text=True)


def test_bad_ban_duration_is_flashed(client, user_id):
    response = client.post(f"/dashboard/users/{user_id}/ban", follow_redirects=True,
                           data={"csrf_token": csrf(client), "duration": "3d"})
    assert "invalid format for ban duration" in response.get_data(as_text=True)


def test_post_without_csrf_is_refused(client, user_id):
    assert client.post(f"/dashboard/users/{user_id}/delete").status_code == 400


def test_revoke_github_tokens(client, sign_in):
    session = sign_in()
    token = session["provider_token"]
    assert ">Revoke GitHub tokens</button>" in client.get("/dashboard").get_data(as_text=True)
    response = client.post(f"/dashboard/users/{session['user']['id']}/revoke-github",
                           data={"csrf_token": csrf(client)}, follow_redirects=True)
    assert "Revoked 1 GitHub token(s) of octocat@example.com." in response.get_data(as_text=True)
    after = client.get("/github/api/v3/user", headers={"Authorization": f"Bearer {token}"})
    assert (after.status_code, after.json["message"]) == (401, "Bad credentials")
