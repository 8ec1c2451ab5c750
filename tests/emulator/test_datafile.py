"""Data files: export, import (round trip, replace, refusals), the start-up seed, HTTP reset."""

import copy
import json

import pytest

from emulator import datafile, keys
from tests.emulator.emulator_helpers import bearer, new_session

USER_ID = "9b3c4a52-5f5e-4c8e-9a52-5b0c6f7d1e01"
SEED = {
    "format": "supabase-auth-emulator",
    "version": 1,
    "users": [{
        "id": USER_ID,
        "email": "Ada@Example.com",
        "email_confirmed_at": "2026-01-02T03:04:05.123456Z",
        "app_metadata": {"provider": "github", "providers": ["github"], "role": "admin"},
        "user_metadata": {"full_name": "Ada Lovelace", "user_name": "ada"},
        "created_at": "2026-01-02T03:04:05Z",
        "identities": [{"id": "1000001", "provider": "github",
                        "identity_data": {"sub": "1000001", "email": "ada@example.com",
                                          "user_name": "ada", "email_verified": True}}],
    }],
    "stand_in_accounts": [{"provider": "github", "id": 1000001, "login": "ada",
                           "name": "Ada Lovelace", "email": "ada@example.com"}],
}


def export(app):
    with app.app_context():
        return datafile.export_data(app.config["CLOCK"]())


def load(app, data):
    with app.app_context():
        return datafile.import_data(data)


def without_export_time(data):
    return {k: v for k, v in data.items() if k != "exported_at"}


def test_export_holds_users_identities_and_accounts(app, sign_in):
    user = sign_in()["user"]
    data = export(app)
    assert (data["format"], data["version"]) == ("supabase-auth-emulator", 1)
    assert data["exported_at"] == "2027-01-15T08:00:00Z"
    # The admin API's user JSON, plus the person's passkeys (none here).
    assert data["users"] == [{**json.loads(json.dumps(user)), "passkeys": []}]
    assert data["stand_in_accounts"] == [{
        "provider": "github", "id": 583231, "login": "octocat", "name": "The Octocat",
        "email": "octocat@example.com", "verified": True, "created_at": "2011-01-25T18:44:36Z"}]


def test_round_trip_into_a_fresh_emulator(make_app, app, sign_in, admin):
    sign_in()
    client = app.test_client()
    client.put(f"/auth/v1/admin/users/{export(app)['users'][0]['id']}", headers=admin,
               json={"ban_duration": "24h", "app_metadata": {"role": "admin"}})
    client.post("/github/_accounts", json={"login": "grace", "email": "grace@example.com"})
    before = export(app)
    fresh = make_app()
    assert load(fresh, before) == {"users": 1, "stand_in_accounts": 2}
    assert without_export_time(export(fresh)) == without_export_time(before)


def test_the_imported_user_signs_in_as_themselves(make_app, anon):
    app = make_app(GITHUB_AUTO_LOGIN="ada")
    load(app, SEED)
    client = app.test_client()
    session = new_session(client)
    assert session["user"]["id"] == USER_ID
    assert session["user"]["app_metadata"]["role"] == "admin"
    assert client.get("/auth/v1/user", headers=bearer(session)).json["email"] == \
        "ada@example.com"


def test_defaults_for_what_a_file_leaves_out(app, clock):
    load(app, {"version": 1, "users": [{"id": USER_ID}]})
    (user,) = export(app)["users"]
    assert (user["aud"], user["role"], user["email"], user["identities"]) == \
        ("authenticated", "authenticated", "", [])
    assert user["created_at"] == user["updated_at"] == "2027-01-15T08:00:00Z"


def test_importing_again_replaces_the_user_and_identities(app):
    load(app, SEED)
    changed = copy.deepcopy(SEED)
    changed["users"][0]["user_metadata"] = {"full_name": "Countess"}
    changed["users"][0]["identities"][0]["identity_data"]["user_name"] = "ada2"
    load(app, changed)
    (user,) = export(app)["users"]
    assert user["user_metadata"] == {"full_name": "Countess"}
    assert [i["identity_data"]["user_name"] for i in user["identities"]] == ["ada2"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(version=2), "version: this emulator reads version 1, not 2"),
    (lambda d: d.update(format="firebase"), "format: expected 'supabase-auth-emulator'"),
    (lambda d: d["users"][0].update(id="nope"), "users[0].id: 'nope' is not a UUID"),
    (lambda d: d["users"][0].update(created_at="yesterday"),
     "users[0].created_at: 'yesterday' is not an RFC 3339 timestamp"),
    (lambda d: d["users"][0].update(app_metadata=[]), "users[0].app_metadata: expected an object"),
    (lambda d: d["users"][0]["identities"][0].pop("provider"),
     "users[0].identities[0].provider: expected a provider name"),
    (lambda d: d["users"].append({**d["users"][0], "id": "9b3c4a52-5f5e-4c8e-9a52-5b0c6f7d1e02"}),
     "users[1].email: ada@example.com belongs to another user"),
    (lambda d: d["users"].append({"id": "9b3c4a52-5f5e-4c8e-9a52-5b0c6f7d1e02",
                                  "identities": d["users"][0]["identities"]}),
     "users[1].identities[0]: github identity 1000001 already belongs to user " + USER_ID),
    (lambda d: d["stand_in_accounts"][0].update(id=583231),
     "stand_in_accounts[0].id: github id 583231 belongs to login 'octocat'"),
    (lambda d: d["stand_in_accounts"][0].update(provider="myspace"),
     "stand_in_accounts[0].provider: 'myspace' is not a provider the real server knows"),
    (lambda d: d["stand_in_accounts"][0].update(verified="yes"),
     "stand_in_accounts[0].verified: expected true or false"),
])
def test_a_wrong_file_imports_nothing(app, change, message):
    data = copy.deepcopy(SEED)
    change(data)
    with pytest.raises(datafile.DataFileError, match=message.replace("[", r"\[")):
        load(app, data)
    after = export(app)
    assert after["users"] == [] and len(after["stand_in_accounts"]) == 1


def test_seed_at_start_and_reset_back_to_it(make_app, tmp_path, admin):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(SEED))
    app = make_app(SEED=str(seed))
    client = app.test_client()
    assert [u["id"] for u in export(app)["users"]] == [USER_ID]
    client.delete(f"/auth/v1/admin/users/{USER_ID}", headers=admin)
    client.post("/auth/v1/admin/users", headers=admin, json={"email": "extra@example.com"})
    response = client.post("/emulator/v1/reset", headers=admin)
    assert response.json == {"imported": {"users": 1, "stand_in_accounts": 1}}
    data = export(app)
    assert [u["id"] for u in data["users"]] == [USER_ID]
    assert [a["login"] for a in data["stand_in_accounts"]] == ["octocat", "ada"]
    assert client.get("/auth/v1/admin/audit", headers=admin).json == []


def test_a_broken_seed_stops_the_start(make_app, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text('{"version": 1, "users": [{"id": 1}]}')
    with pytest.raises(ValueError, match=r"SEED .*seed.json: users\[0\].id: expected a UUID"):
        make_app(SEED=str(seed))


def test_reset_forgets_sessions_and_stand_in_tokens(client, admin, sign_in):
    session = sign_in()
    assert client.post("/emulator/v1/reset", headers=admin).status_code == 200
    assert client.get("/auth/v1/user", headers=bearer(session)).json["error_code"] == \
        "user_not_found"
    github = client.get("/github/api/v3/user",
                        headers={"Authorization": f"Bearer {session['provider_token']}"})
    assert github.status_code == 401
    assert export(client.application)["users"] == []


def test_reset_with_a_body_imports_it(client, admin):
    response = client.post("/emulator/v1/reset", headers=admin, json=SEED)
    assert response.json["imported"] == {"users": 1, "stand_in_accounts": 1}
    bad = client.post("/emulator/v1/reset", headers=admin, json={"version": 9})
    assert (bad.status_code, bad.json["error_code"]) == (400, "validation_failed")
    assert len(export(client.application)["users"]) == 1  # the refused reset changed nothing


def test_http_export_and_import(client, make_app, admin):
    client.post("/emulator/v1/import", headers=admin, json=SEED)
    data = client.get("/emulator/v1/export", headers=admin).json
    assert [u["email"] for u in data["users"]] == ["ada@example.com"]
    other = make_app().test_client()
    assert other.post("/emulator/v1/import", headers=admin, json=data).status_code == 200
    assert other.post("/emulator/v1/import", headers=admin).json["error_code"] == "bad_json"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"apikey": keys.ANON_KEY}, 403),
    ({"Authorization": f"Bearer {keys.ANON_KEY}"}, 403),
    ({"apikey": keys.SERVICE_ROLE_KEY}, 200),
    ({"Authorization": f"Bearer {keys.SERVICE_ROLE_KEY}"}, 200),
])
def test_only_the_service_key_drives_the_emulator(client, headers, status):
    assert client.post("/emulator/v1/reset", headers=headers).status_code == status
    assert client.get("/emulator/v1/export", headers=headers).status_code == status


def test_factors_stay_out_of_the_file(client, app, sign_in):
    session = sign_in()
    client.post("/auth/v1/factors", headers=bearer(session), json={"factor_type": "totp"})
    assert "factors" in client.get("/auth/v1/user", headers=bearer(session)).json
    assert "factors" not in export(app)["users"][0]


def test_the_secret_key_drives_the_emulator_too(client):
    response = client.get("/emulator/v1/export", headers={"apikey": keys.SECRET_KEY})
    assert response.status_code == 200
    assert client.get("/emulator/v1/export",
                      headers={"apikey": keys.PUBLISHABLE_KEY}).status_code == 403
