"""The audit log: which actions write entries, their payloads, and GET /admin/audit."""

import pytest

from emulator import audit
from tests.emulator.emulator_helpers import (
    VERIFIER,
    authorize,
    bearer,
    follow_to_app,
    link,
    new_session,
    query,
)

NIL = "00000000-0000-0000-0000-000000000000"


def entries(client, admin, **params):
    """Entries as GET /admin/audit returns them, newest first."""
    response = client.get("/auth/v1/admin/audit", headers=admin, query_string=params)
    assert response.status_code == 200, response.json
    return response.json


def actions(client, admin, **params):
    """Action names, oldest first (easier to read as a story)."""
    return [e["payload"]["action"] for e in reversed(entries(client, admin, **params))]


def refresh(client, anon, token):
    return client.post("/auth/v1/token?grant_type=refresh_token", headers=anon,
                       json={"refresh_token": token})


def test_first_sign_in_signs_up_then_logs_in(client, admin, sign_in):
    user = sign_in()["user"]
    signed_up, login = reversed(entries(client, admin))
    assert signed_up["payload"] == {
        "action": "user_signedup", "actor_id": user["id"], "actor_name": "The Octocat",
        "actor_username": "octocat@example.com", "actor_via_sso": False, "log_type": "team",
        "traits": {"provider": "github"}}
    assert login["payload"]["traits"] == {"provider_type": "github"}  # the PKCE exchange
    assert login["payload"]["log_type"] == "account"
    assert set(login) == {"id", "payload", "created_at", "ip_address"}
    assert login["ip_address"] == "" and login["created_at"].endswith("Z")


def test_later_sign_ins_log_in_at_the_callback_and_the_exchange(client, admin, sign_in):
    sign_in()
    sign_in()
    assert actions(client, admin) == ["user_signedup", "login", "login", "login"]
    assert entries(client, admin)[1]["payload"]["traits"] == {"provider": "github"}


def test_a_banned_sign_in_writes_nothing(client, admin, sign_in):
    user = sign_in()["user"]
    client.put(f"/auth/v1/admin/users/{user['id']}", headers=admin,
               json={"ban_duration": "1h"})
    before = len(entries(client, admin))
    location = follow_to_app(client, authorize(client).headers["Location"])
    assert query(location)["error_code"] == "user_banned"
    assert len(entries(client, admin)) == before


def test_refresh_writes_refreshed_then_revoked(client, admin, anon, sign_in):
    first = sign_in()["refresh_token"]
    refresh(client, anon, first)
    assert actions(client, admin)[-2:] == ["token_refreshed", "token_revoked"]
    refresh(client, anon, first)  # the parent of the active token: handed the same one again
    assert actions(client, admin)[-3:] == ["token_refreshed", "token_revoked", "token_refreshed"]


def test_refresh_token_reuse_writes_nothing(client, admin, anon, sign_in, clock):
    first = sign_in()["refresh_token"]
    second = refresh(client, anon, first).json["refresh_token"]
    refresh(client, anon, second)
    clock.now += 60
    before = len(entries(client, admin))
    assert refresh(client, anon, first).json["error_code"] == "refresh_token_already_used"
    assert len(entries(client, admin)) == before


def test_logout(client, admin, anon, sign_in):
    session = sign_in()
    assert client.post("/auth/v1/logout", headers=bearer(session)).status_code == 204
    latest = entries(client, admin)[0]["payload"]
    assert (latest["action"], latest["actor_id"], "traits" in latest) == \
        ("logout", session["user"]["id"], False)


def test_admin_changes_name_the_service_role(client, admin):
    created = client.post("/auth/v1/admin/users", headers=admin,
                          json={"email": "a@example.com"}).json
    client.put(f"/auth/v1/admin/users/{created['id']}", headers=admin,
               json={"app_metadata": {"role": "admin"}})
    client.delete(f"/auth/v1/admin/users/{created['id']}", headers=admin)
    deleted, modified, signed_up = (e["payload"] for e in entries(client, admin))
    traits = {"user_id": created["id"], "user_email": "a@example.com", "user_phone": ""}
    assert signed_up["traits"] == {**traits, "provider": "email"}
    assert modified["traits"] == deleted["traits"] == traits
    for payload in (signed_up, modified, deleted):
        assert (payload["actor_id"], payload["actor_username"]) == (NIL, "service_role")
        assert "actor_name" not in payload
    assert [p["log_type"] for p in (signed_up, modified, deleted)] == ["team", "user", "team"]


def test_a_failed_admin_update_writes_nothing(client, admin):
    created = client.post("/auth/v1/admin/users", headers=admin,
                          json={"email": "a@example.com"}).json
    response = client.put(f"/auth/v1/admin/users/{created['id']}", headers=admin,
                          json={"ban_duration": "3d"})
    assert response.status_code == 400
    assert actions(client, admin) == ["user_signedup"]


@pytest.fixture
def linking_client(make_app):
    app = make_app(PROVIDERS="github,google", MANUAL_LINKING=True, AUTO_LOGIN="octocat")
    return app.test_client()


def test_manual_link_and_unlink_carry_the_address(linking_client, admin, anon):
    client = linking_client
    session = new_session(client)
    location = link(client, session)
    linked = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                         json={"auth_code": query(location)["code"],
                               "code_verifier": VERIFIER}).json
    google = next(i for i in linked["user"]["identities"] if i["provider"] == "google")
    client.delete(f"/auth/v1/user/identities/{google['identity_id']}", headers=bearer(linked))
    found = entries(client, admin, query="type:user")
    assert [e["payload"]["action"] for e in found] == ["identity_unlinked", "identity_linked"]
    for entry in found:
        assert entry["ip_address"] == "127.0.0.1"
        assert entry["payload"]["traits"] == {"identity_id": google["identity_id"],
                                              "provider": "google", "provider_id": google["id"]}


def test_automatic_link_by_email(client, admin, sign_in):
    client.post("/auth/v1/admin/users", headers=admin,
                json={"email": "octocat@example.com", "email_confirm": True})
    sign_in()
    assert actions(client, admin) == ["user_signedup", "identity_linked", "login", "login"]


def test_audit_needs_admin_credentials(client, anon):
    assert client.get("/auth/v1/admin/audit", headers=anon).status_code == 401
    assert client.get("/auth/v1/admin/audit").status_code == 401  # the gateway's key check


def test_pagination_headers(client, admin, sign_in):
    sign_in()  # two entries
    response = client.get("/auth/v1/admin/audit?per_page=1", headers=admin)
    assert response.headers["X-Total-Count"] == "2"
    assert response.headers["Link"] == ('</admin/audit?page=2&per_page=1>; rel="next", '
                                        '</admin/audit?page=2&per_page=1>; rel="last"')
    second = client.get("/auth/v1/admin/audit?per_page=1&page=2", headers=admin).json
    assert second[0]["payload"]["action"] == "user_signedup"


def test_empty_log(client, admin):
    response = client.get("/auth/v1/admin/audit", headers=admin)
    assert (response.json, response.headers["Link"]) == ([], '</admin/audit?page=0>; rel="last"')


@pytest.mark.parametrize(("query_text", "expected"), [
    ("action:user_signedup", ["user_signedup"]),
    ("type:team", ["user_signedup"]),
    ("type:account", ["login"]),
    ("author:OCTO", ["user_signedup", "login"]),  # actor_username or actor_name, any case
    ("author:nobody", []),
    ("action:", ["user_signedup", "login"]),  # an empty text filters nothing
])
def test_query_scopes(client, admin, sign_in, query_text, expected):
    sign_in()
    assert actions(client, admin, query=query_text) == expected


@pytest.mark.parametrize("query_text", ["actor:octocat", "author", "email:x"])
def test_unknown_query_scope(client, admin, query_text):
    response = client.get("/auth/v1/admin/audit", headers=admin,
                          query_string={"query": query_text})
    assert (response.status_code, response.json["msg"]) == \
        (400, f"Invalid query scope: {query_text}")


def test_every_action_has_the_real_log_type():
    assert audit.LOG_TYPES["user_deleted"] == "team"
    assert audit.LOG_TYPES["factor_deleted"] == "factor"
    assert len(audit.LOG_TYPES) == 25
