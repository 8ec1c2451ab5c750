"""The admin API (§7): authentication, listing, CRUD, bans and deletion cascades."""

import math
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from supabase_auth import SyncGoTrueClient

from tests.conformance.support import TIMEOUT, UUID_RE, assert_error


def new_email() -> str:
    return f"admin-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def user(admin) -> dict:
    resp = admin.post("/admin/users", json={"email": new_email(), "email_confirm": True})
    assert resp.status_code == 200, resp.text
    return resp.json()


def links(header: str) -> dict[str, dict[str, str]]:
    """rel -> query of each Link entry."""
    found = re.findall(r'<([^>]+)>;\s*rel="(\w+)"', header)
    return {rel: {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            for url, rel in found}


def test_no_authorization_header(http):
    assert_error(http.get("/admin/users"), 401, "no_authorization")


def test_anon_key_is_not_admin(bearer, target):
    resp = bearer("GET", "/admin/users", target.anon_key)
    assert_error(resp, 403, "not_admin", "User not allowed")


def test_user_access_token_is_not_admin(bearer, sign_in):
    resp = bearer("GET", "/admin/users", sign_in()["access_token"])
    assert_error(resp, 403, "not_admin", "User not allowed")


def test_garbage_bearer_is_bad_jwt(bearer):
    assert_error(bearer("GET", "/admin/users", "garbage"), 403, "bad_jwt")


def test_list_shape(admin, user):
    body = admin.get("/admin/users").json()
    assert set(body) == {"users", "aud"}
    assert body["aud"] == "authenticated"
    assert user["id"] in [u["id"] for u in body["users"]]


def test_list_users_have_null_identities(admin, user):
    users = admin.get("/admin/users").json()["users"]
    listed = next(u for u in users if u["id"] == user["id"])
    assert listed["identities"] is None


def test_list_is_newest_first(admin):
    first = admin.post("/admin/users", json={"email": new_email()}).json()
    second = admin.post("/admin/users", json={"email": new_email()}).json()
    ids = [u["id"] for u in admin.get("/admin/users").json()["users"]]
    assert ids.index(second["id"]) < ids.index(first["id"])


def test_pagination_counts_and_page_size(admin, user):
    admin.post("/admin/users", json={"email": new_email()})
    resp = admin.get("/admin/users", params={"page": 1, "per_page": 1})
    assert resp.status_code == 200
    assert len(resp.json()["users"]) == 1
    assert int(resp.headers["X-Total-Count"]) >= 2


def test_pagination_links(admin, user):
    admin.post("/admin/users", json={"email": new_email()})
    resp = admin.get("/admin/users", params={"page": 1, "per_page": 2})
    total = int(resp.headers["X-Total-Count"])
    rels = links(resp.headers["Link"])
    assert rels["next"] == {"page": "2", "per_page": "2"}
    assert rels["last"] == {"page": str(math.ceil(total / 2)), "per_page": "2"}


def test_last_page_has_no_next_link(admin, user):
    total = int(admin.get("/admin/users").headers["X-Total-Count"])
    resp = admin.get("/admin/users", params={"page": total, "per_page": 1})
    rels = links(resp.headers["Link"])
    assert set(rels) == {"last"}
    assert rels["last"]["page"] == str(total)


@pytest.mark.parametrize("params", [
    {"page": "x"},
    {"per_page": "-1"},
    # The real server answers 500 here (it divides by per_page for the Link header); the
    # emulator's 400 is stricter.
    pytest.param({"per_page": "0"}, marks=pytest.mark.emulator_only(
        reason="the real server answers 500 to per_page=0")),
])
def test_bad_pagination_is_validation_failed(admin, params):
    resp = admin.get("/admin/users", params=params)
    assert_error(resp, 400, "validation_failed")
    assert resp.json()["message"].startswith("Bad Pagination Parameters: ")


def test_get_user_includes_identities(admin, user):
    resp = admin.get(f"/admin/users/{user['id']}")
    assert resp.status_code == 200
    assert [i["provider"] for i in resp.json()["identities"]] == ["email"]


def test_get_non_uuid_is_validation_failed(admin):
    assert_error(admin.get("/admin/users/not-a-uuid"), 404, "validation_failed",
                 "user_id must be an UUID")


def test_get_unknown_is_user_not_found(admin):
    assert_error(admin.get(f"/admin/users/{uuid.uuid4()}"), 404, "user_not_found",
                 "User not found")


def test_create_returns_user(admin):
    email = new_email()
    resp = admin.post("/admin/users", json={"email": email, "user_metadata": {"a": 1}})
    assert resp.status_code == 200, resp.text
    user = resp.json()
    assert UUID_RE.match(user["id"])
    assert (user["email"], user["aud"], user["role"]) == (email, "authenticated", "authenticated")
    assert user["user_metadata"] == {"a": 1}


def test_create_merges_app_metadata_into_provider_email(admin):
    resp = admin.post("/admin/users", json={"email": new_email(),
                                            "app_metadata": {"role": "editor"}})
    assert resp.json()["app_metadata"] == {"provider": "email", "providers": ["email"],
                                           "role": "editor"}


def test_create_email_confirm_sets_confirmed_at(admin):
    user = admin.post("/admin/users", json={"email": new_email(), "email_confirm": True}).json()
    assert user["email_confirmed_at"]


def test_create_with_custom_id(admin):
    wanted = str(uuid.uuid4())
    resp = admin.post("/admin/users", json={"email": new_email(), "id": wanted})
    assert resp.json()["id"] == wanted


def test_create_duplicate_email_is_email_exists(admin, user):
    resp = admin.post("/admin/users", json={"email": user["email"]})
    assert_error(resp, 422, "email_exists")


def test_update_merges_metadata(admin, user):
    admin.put(f"/admin/users/{user['id']}", json={"user_metadata": {"a": 1, "b": 2}})
    resp = admin.put(f"/admin/users/{user['id']}", json={"user_metadata": {"b": 3, "c": 4}})
    assert resp.status_code == 200
    assert {k: resp.json()["user_metadata"].get(k) for k in "abc"} == {"a": 1, "b": 3, "c": 4}


def test_update_null_deletes_metadata_key(admin, user):
    admin.put(f"/admin/users/{user['id']}", json={"app_metadata": {"role": "editor"}})
    resp = admin.put(f"/admin/users/{user['id']}", json={"app_metadata": {"role": None}})
    assert "role" not in resp.json()["app_metadata"]
    assert resp.json()["app_metadata"]["provider"] == "email"


def test_ban_sets_banned_until(admin, user):
    resp = admin.put(f"/admin/users/{user['id']}", json={"ban_duration": "24h"})
    assert resp.status_code == 200
    assert resp.json()["banned_until"]


def test_ban_none_lifts_the_ban(admin, user):
    admin.put(f"/admin/users/{user['id']}", json={"ban_duration": "24h"})
    resp = admin.put(f"/admin/users/{user['id']}", json={"ban_duration": "none"})
    assert resp.status_code == 200
    assert "banned_until" not in resp.json()


@pytest.mark.parametrize("duration", ["1d", "forever", "24"])
def test_bad_ban_duration_is_validation_failed(admin, user, duration):
    resp = admin.put(f"/admin/users/{user['id']}", json={"ban_duration": duration})
    assert_error(resp, 400, "validation_failed")
    assert resp.json()["message"].startswith("invalid format for ban duration")


def test_update_unknown_is_user_not_found(admin):
    resp = admin.put(f"/admin/users/{uuid.uuid4()}", json={"user_metadata": {}})
    assert_error(resp, 404, "user_not_found")


def test_delete_answers_empty_object(admin, user):
    resp = admin.delete(f"/admin/users/{user['id']}")
    assert resp.status_code == 200
    assert resp.json() == {}


def test_deleted_user_is_gone(admin, user):
    admin.delete(f"/admin/users/{user['id']}")
    assert_error(admin.get(f"/admin/users/{user['id']}"), 404, "user_not_found")


def test_delete_cascades_to_identities(admin, sign_in, stand_in):
    account = stand_in.create_account()
    admin.delete(f"/admin/users/{sign_in(account)['user']['id']}")
    # the GitHub identity went with the user, so the next login creates a new user
    again = sign_in(account)["user"]
    assert [i["id"] for i in again["identities"]] == [str(account["id"])]
    assert admin.get(f"/admin/users/{again['id']}").status_code == 200


def test_real_client_admin_api(target):
    """supabase_auth's admin API, configured with the service key as supabase-py does."""
    headers = {"apikey": target.service_key, "Authorization": f"Bearer {target.service_key}"}
    client = SyncGoTrueClient(url=target.auth_url, headers=headers, auto_refresh_token=False,
                              http_client=httpx.Client(timeout=TIMEOUT))
    with client:
        created = client.admin.create_user({"email": new_email(), "email_confirm": True}).user
        fetched = client.admin.get_user_by_id(created.id).user
        client.admin.delete_user(created.id)
    assert fetched.email == created.email
