"""Admin API: service_role auth, list/get/create/update/delete users."""

import pytest

from emulator import keys


def create(client, admin, **body):
    response = client.post("/auth/v1/admin/users", headers=admin,
                           json={"email": "a@example.com", **body})
    assert response.status_code == 200, response.json
    return response.json


def test_requires_admin_role(client, anon):
    response = client.get("/auth/v1/admin/users",
                          headers={**anon, "Authorization": f"Bearer {keys.ANON_KEY}"})
    assert (response.status_code, response.json["error_code"]) == (403, "not_admin")
    assert client.get("/auth/v1/admin/users", headers=anon).status_code == 401


def test_create_and_get(client, admin):
    user = create(client, admin, user_metadata={"a": 1}, app_metadata={"role": "editor"})
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"], "role": "editor"}
    assert user["identities"][0]["provider"] == "email"
    fetched = client.get(f"/auth/v1/admin/users/{user['id']}", headers=admin).json
    assert fetched["id"] == user["id"]


def test_duplicate_email(client, admin):
    create(client, admin)
    response = client.post("/auth/v1/admin/users", headers=admin, json={"email": "A@example.com"})
    assert (response.status_code, response.json["error_code"]) == (422, "email_exists")


def test_list_pagination_headers(client, admin):
    for n in range(3):
        create(client, admin, email=f"u{n}@example.com")
    response = client.get("/auth/v1/admin/users?page=1&per_page=2", headers=admin)
    assert response.headers["X-Total-Count"] == "3"
    assert response.headers["Link"] == ('</admin/users?page=2&per_page=2>; rel="next", '
                                        '</admin/users?page=2&per_page=2>; rel="last"')
    assert len(response.json["users"]) == 2
    assert response.json["users"][0]["identities"] is None
    assert response.json["aud"] == "authenticated"


def test_empty_list_link(client, admin):
    response = client.get("/auth/v1/admin/users", headers=admin)
    assert response.headers["Link"] == '</admin/users?page=0>; rel="last"'


def test_bad_page(client, admin):
    response = client.get("/auth/v1/admin/users?page=x", headers=admin)
    assert (response.status_code, response.json["error_code"]) == (400, "validation_failed")


def test_update_merges_metadata_and_bans(client, admin, clock):
    user = create(client, admin, user_metadata={"keep": 1, "drop": 2})
    response = client.put(f"/auth/v1/admin/users/{user['id']}", headers=admin, json={
        "user_metadata": {"drop": None, "new": 3}, "ban_duration": "1h30m"})
    assert response.json["user_metadata"] == {"keep": 1, "new": 3}
    assert response.json["banned_until"] == "2027-01-15T09:30:00Z"
    unbanned = client.put(f"/auth/v1/admin/users/{user['id']}", headers=admin,
                          json={"ban_duration": "none"}).json
    assert "banned_until" not in unbanned


def test_bad_ban_duration(client, admin):
    user = create(client, admin)
    response = client.put(f"/auth/v1/admin/users/{user['id']}", headers=admin,
                          json={"ban_duration": "1d"})
    assert response.json["msg"] == ('invalid format for ban duration: '
                                    'time: unknown unit "d" in duration "1d"')


@pytest.mark.parametrize(("user_id", "code"), [("nope", "validation_failed"),
                                               ("6c1f3a9e-3d5c-4b36-9d55-0d2f1e7b9a10",
                                                "user_not_found")])
def test_unknown_user_is_404(client, admin, user_id, code):
    response = client.get(f"/auth/v1/admin/users/{user_id}", headers=admin)
    assert (response.status_code, response.json["error_code"]) == (404, code)


def test_delete_returns_empty_object(client, admin):
    user = create(client, admin)
    response = client.delete(f"/auth/v1/admin/users/{user['id']}", headers=admin)
    assert (response.status_code, response.json) == (200, {})
    assert client.get(f"/auth/v1/admin/users/{user['id']}", headers=admin).status_code == 404
