"""Error-body shapes (§8), the gateway's apikey rule (§0b) and hostile input (§0)."""

import uuid

import pytest

NO_AUTH = "This endpoint requires a valid Bearer token"


@pytest.mark.parametrize("version", ["2024-01-01", "2025-06-30"])
def test_versioned_error_shape(bare_http, target, version):
    resp = bare_http.get("/user", headers={"apikey": target.anon_key,
                                           "X-Supabase-Api-Version": version})
    assert resp.status_code == 401
    assert resp.json() == {"code": "no_authorization", "message": NO_AUTH}
    assert resp.headers["X-Supabase-Api-Version"] == "2024-01-01"
    assert resp.headers["x-sb-error-code"] == "no_authorization"


@pytest.mark.parametrize("version", [None, "2023-12-31", "yesterday"])
def test_initial_error_shape(bare_http, target, version):
    headers = {"apikey": target.anon_key}
    if version is not None:
        headers["X-Supabase-Api-Version"] = version
    resp = bare_http.get("/user", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"code": 401, "error_code": "no_authorization", "msg": NO_AUTH}
    assert "X-Supabase-Api-Version" not in resp.headers
    assert resp.headers["x-sb-error-code"] == "no_authorization"


def test_error_responses_are_json(http):
    resp = http.get("/user")
    assert resp.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/settings"),
    ("GET", "/health"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/authorize?provider=github"),
])
def test_success_never_carries_version_header(http, method, path):
    resp = http.request(method, path)
    assert resp.status_code in (200, 302)
    assert "X-Supabase-Api-Version" not in resp.headers


# ---- the gateway -----------------------------------------------------------------------

GUARDED = [
    ("POST", "/token?grant_type=pkce"),
    ("POST", "/token?grant_type=refresh_token"),
    ("GET", "/user"),
    ("POST", "/logout"),
    ("GET", "/settings"),
    ("GET", "/health"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("GET", f"/admin/users/{uuid.uuid4()}"),
]


@pytest.mark.gateway
@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_gateway_requires_apikey(bare_http, method, path):
    resp = bare_http.request(method, path, json={})
    assert resp.status_code == 401
    assert isinstance(resp.json()["message"], str)


@pytest.mark.gateway
@pytest.mark.parametrize(("method", "path"), GUARDED[:3])
def test_gateway_rejects_unknown_apikey(bare_http, method, path):
    resp = bare_http.request(method, path, json={}, headers={"apikey": "not-a-key"})
    assert resp.status_code == 401
    assert isinstance(resp.json()["message"], str)


def test_gateway_accepts_apikey_query_param(bare_http, target):
    resp = bare_http.get("/settings", params={"apikey": target.anon_key})
    assert resp.status_code == 200


def test_gateway_accepts_service_key(bare_http, target):
    resp = bare_http.get("/settings", headers={"apikey": target.service_key})
    assert resp.status_code == 200


@pytest.mark.parametrize(("path", "status"), [
    ("/authorize?provider=github", 302),
    ("/callback", 303),
    ("/.well-known/jwks.json", 200),
])
def test_browser_routes_are_open(bare_http, path, status):
    assert bare_http.get(path).status_code == status


# ---- hostile input ---------------------------------------------------------------------

def test_body_over_one_mib_is_413(http):
    body = b'{"auth_code":"' + b"a" * (1024 * 1024) + b'","code_verifier":"b"}'
    resp = http.post("/token", params={"grant_type": "pkce"}, content=body,
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_body_just_under_one_mib_is_read(http):
    padding = 1024 * 1024 - 100
    body = b'{"auth_code":"' + b"a" * padding + b'","code_verifier":"b"}'
    resp = http.post("/token", params={"grant_type": "pkce"}, content=body,
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == 404
    assert resp.json()["code"] == "flow_state_not_found"


JSON_ENDPOINTS = [
    ("http", "POST", "/token?grant_type=pkce"),
    ("http", "POST", "/token?grant_type=refresh_token"),
    ("admin", "POST", "/admin/users"),
    ("admin", "PUT", "/admin/users/{user_id}"),
    ("admin", "DELETE", "/admin/users/{user_id}"),
]


@pytest.mark.parametrize(("client", "method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize("content", [b"{", b"[1, 2", b"\xff\xfe", b'{"email": }'])
def test_malformed_json_is_bad_json(request, admin, client, method, path, content):
    user_id = admin.post("/admin/users", json={"email": f"{uuid.uuid4().hex}@example.com"})
    path = path.format(user_id=user_id.json()["id"])
    resp = request.getfixturevalue(client).request(
        method, path, content=content, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "bad_json"


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/settings")])
def test_unknown_routes_are_not_server_errors(http, method, path):
    resp = http.request(method, path)
    assert resp.status_code in (404, 405)
