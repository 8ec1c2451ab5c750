"""Error shapes by API version, chi-style 404/405, 413 and the 500 safety net."""

import pytest

from emulator.errors import ApiError


def test_initial_version_shape(client, anon):
    response = client.post("/auth/v1/token?grant_type=nope", headers=anon)
    assert response.json == {"code": 400, "error_code": "invalid_credentials",
                             "msg": "unsupported_grant_type"}
    assert response.headers["x-sb-error-code"] == "invalid_credentials"
    assert "X-Supabase-Api-Version" not in response.headers


@pytest.mark.parametrize("version", ["2024-01-01", "2025-06-30"])
def test_2024_shape_echoes_version(client, anon, version):
    headers = {**anon, "X-Supabase-Api-Version": version}
    response = client.post("/auth/v1/token?grant_type=nope", headers=headers)
    assert response.json == {"code": "invalid_credentials", "message": "unsupported_grant_type"}
    assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"


@pytest.mark.parametrize("version", ["2023-12-31", "garbage"])
def test_old_or_bad_version_selects_initial_shape(client, anon, version):
    headers = {**anon, "X-Supabase-Api-Version": version}
    assert "msg" in client.post("/auth/v1/token?grant_type=x", headers=headers).json


def test_unknown_route_is_plain_text_404(client, anon):
    response = client.get("/auth/v1/nope", headers=anon)
    assert (response.status_code, response.get_data(as_text=True)) == (404, "404 page not found\n")
    assert response.mimetype == "text/plain"


def test_wrong_method_is_empty_405(client, anon):
    response = client.get("/auth/v1/token", headers=anon)
    assert (response.status_code, response.get_data()) == (405, b"")
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_413(client, anon):
    response = client.post("/auth/v1/token?grant_type=pkce", headers=anon,
                           data=b"x" * (1024 * 1024 + 1), content_type="application/json")
    assert (response.status_code, response.json["error_code"]) == (413, "request_entity_too_large")


def test_unexpected_exception_is_500_json(app, anon):
    @app.get("/auth/v1/boom")
    def boom():
        raise RuntimeError("boom")

    app.testing = False  # let the handler answer instead of re-raising
    app.logger.disabled = True
    response = app.test_client().get("/auth/v1/boom", headers=anon)
    assert response.status_code == 500
    assert response.json["error_code"] == "unexpected_failure"
    assert response.json["msg"].startswith("Unexpected failure")
    assert "error_id" in response.json


def test_api_error_keeps_status_and_code():
    error = ApiError(422, "email_exists", "taken")
    assert (error.status, error.error_code, str(error)) == (422, "email_exists", "taken")


def forged(claims: dict) -> str:
    """An HS256 token signed with the dev secret, carrying arbitrary claims."""
    import jwt

    from emulator import keys

    return jwt.encode(claims, keys.JWT_SECRET, "HS256")


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("get", "/auth/v1/user", {"headers": {"Authorization": "Bearer a.b.c"}}),
    ("get", "/auth/v1/user", {"headers": {"Authorization": "Bearer " + forged({"sub": 5})}}),
    ("get", "/auth/v1/user", {"headers": {"Authorization": "Bearer " + forged(
        {"sub": "6c1f3a9e-3d5c-4b36-9d55-0d2f1e7b9a10", "session_id": ["x"]})}}),
    ("get", "/auth/v1/user", {"headers": {"Authorization": "Bearer " + forged({"exp": "soon"})}}),
    ("get", "/auth/v1/admin/users", {"headers": {"Authorization": "Bearer " + forged(
        {"role": ["service_role"]})}}),
    ("post", "/auth/v1/token?grant_type=pkce", {"data": "[1, 2]"}),
    ("post", "/auth/v1/token?grant_type=pkce", {"data": "\xff\xfe"}),
    ("post", "/auth/v1/token?grant_type=refresh_token", {"data": "null"}),
    ("post", "/auth/v1/token?grant_type=refresh_token", {"json": {"refresh_token": "A" * 60}}),
    ("post", "/auth/v1/admin/users", {"json": {"email": 5}}),
    ("post", "/auth/v1/callback", {"data": {"state": "\x00"}}),
    ("get", "/auth/v1/authorize?provider=github&redirect_to=http://[::1", {}),
    ("get", "/auth/v1/authorize?provider=GITHUB&redirect_to=%ff", {}),
    ("post", "/github/login/oauth/access_token", {"data": {"code": "x"}}),
    ("get", "/github/api/v3/user", {"headers": {"Authorization": "token"}}),
])
def test_garbage_never_gives_500(client, admin, method, path, kwargs):
    headers = {**admin, **kwargs.pop("headers", {})}
    response = getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code < 500, response.get_data(as_text=True)
