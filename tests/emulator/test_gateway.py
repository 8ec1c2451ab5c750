"""The gateway's apikey check: required on most routes, open on browser routes."""

import pytest

from emulator import keys


@pytest.mark.parametrize("path", ["/auth/v1/settings", "/auth/v1/user", "/auth/v1/health"])
def test_missing_key(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.json == {"message": "No API key found in request"}


def test_invalid_key(client):
    response = client.get("/auth/v1/settings", headers={"apikey": "nope"})
    assert (response.status_code, response.json) == (401, {"message": "Invalid API key"})


@pytest.mark.parametrize("key", [keys.ANON_KEY, keys.SERVICE_ROLE_KEY])
def test_both_keys_accepted_in_header_or_query(client, key):
    assert client.get("/auth/v1/settings", headers={"apikey": key}).status_code == 200
    assert client.get(f"/auth/v1/settings?apikey={key}").status_code == 200


@pytest.mark.parametrize("path", ["/auth/v1/callback", "/auth/v1/.well-known/jwks.json"])
def test_open_routes(client, path):
    assert client.get(path).status_code != 401


def test_keys_follow_a_custom_secret(make_app):
    client = make_app(JWT_SECRET="another-secret-with-at-least-32-characters!").test_client()
    assert client.get("/auth/v1/settings", headers={"apikey": keys.ANON_KEY}).status_code == 401


# ---- both key generations --------------------------------------------------------------

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


@pytest.mark.parametrize("key", [keys.PUBLISHABLE_KEY, keys.SECRET_KEY])
def test_opaque_keys_accepted_in_header_or_query(client, key):
    assert client.get("/auth/v1/settings", headers={"apikey": key}).status_code == 200
    assert client.get(f"/auth/v1/settings?apikey={key}").status_code == 200


@pytest.mark.parametrize("key", [
    "sb_publishable_another-project-key0000000000",
    "sb_secret_another-project-key000000000000000",
    keys.PUBLISHABLE_KEY + "x",
])
def test_foreign_opaque_key_is_invalid(client, key):
    response = client.get("/auth/v1/settings", headers={"apikey": key})
    assert (response.status_code, response.json) == (401, {"message": "Invalid API key"})


@pytest.mark.parametrize("authorization", [None, f"Bearer {keys.SECRET_KEY}"])
def test_secret_key_acts_as_the_service_role(client, authorization):
    headers = {"apikey": keys.SECRET_KEY}
    if authorization:
        headers["Authorization"] = authorization
    response = client.get("/auth/v1/admin/users", headers=headers)
    assert response.status_code == 200
    assert response.json["users"] == []


@pytest.mark.parametrize("authorization", [None, f"Bearer {keys.PUBLISHABLE_KEY}"])
def test_publishable_key_acts_as_anon(client, authorization):
    headers = {"apikey": keys.PUBLISHABLE_KEY}
    if authorization:
        headers["Authorization"] = authorization
    response = client.get("/auth/v1/admin/users", headers=headers)
    assert (response.status_code, response.json["error_code"]) == (403, "not_admin")


def test_legacy_service_role_key_alone_is_no_bearer(client):
    response = client.get("/auth/v1/admin/users", headers={"apikey": keys.SERVICE_ROLE_KEY})
    assert (response.status_code, response.json["error_code"]) == (401, "no_authorization")


@pytest.mark.parametrize(("apikey", "status", "message"), [
    # replaced by the anon role's JWT, which names no user
    (keys.PUBLISHABLE_KEY, 403, "invalid claim: missing sub claim"),
    # dropped next to a legacy key
    (keys.ANON_KEY, 401, "This endpoint requires a valid Bearer token"),
])
def test_opaque_bearer_is_never_a_user_token(client, apikey, status, message):
    headers = {"apikey": apikey, "Authorization": f"Bearer {keys.PUBLISHABLE_KEY}"}
    response = client.get("/auth/v1/user", headers=headers)
    assert (response.status_code, response.json["msg"]) == (status, message)


def test_secret_bearer_does_not_lift_a_publishable_key(client):
    headers = {"apikey": keys.PUBLISHABLE_KEY, "Authorization": f"Bearer {keys.SECRET_KEY}"}
    response = client.get("/auth/v1/admin/users", headers=headers)
    assert (response.status_code, response.json["error_code"]) == (403, "not_admin")


def test_user_token_passes_through_with_a_publishable_key(client, sign_in):
    session = sign_in()
    headers = {"apikey": keys.PUBLISHABLE_KEY,
               "Authorization": f"Bearer {session['access_token']}"}
    response = client.get("/auth/v1/user", headers=headers)
    assert (response.status_code, response.json["id"]) == (200, session["user"]["id"])


@pytest.mark.parametrize("user_agent", [
    BROWSER,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
])
@pytest.mark.parametrize("where", ["header", "query"])
def test_secret_key_refused_from_a_browser(client, user_agent, where):
    headers = {"User-Agent": user_agent}
    url = "/auth/v1/admin/users"
    if where == "header":
        headers["apikey"] = keys.SECRET_KEY
    else:
        url += f"?apikey={keys.SECRET_KEY}"
    response = client.get(url, headers=headers)
    assert response.status_code == 401
    assert response.json == {"message": "Forbidden use of secret API key in browser"}


@pytest.mark.parametrize("user_agent", ["", "curl/8.5.0", "python-httpx/0.28.1",
                                        "Werkzeug/3.1", "supabase-py/2.34.1"])
def test_secret_key_accepted_from_servers(client, user_agent):
    headers = {"apikey": keys.SECRET_KEY, "User-Agent": user_agent}
    assert client.get("/auth/v1/admin/users", headers=headers).status_code == 200


@pytest.mark.parametrize("key", [keys.PUBLISHABLE_KEY, keys.ANON_KEY, keys.SERVICE_ROLE_KEY])
def test_other_keys_work_from_a_browser(client, key):
    assert client.get("/auth/v1/settings",
                      headers={"apikey": key, "User-Agent": BROWSER}).status_code == 200


def test_browser_routes_stay_open_with_a_secret_key(client):
    response = client.get(f"/auth/v1/.well-known/jwks.json?apikey={keys.SECRET_KEY}",
                          headers={"User-Agent": BROWSER})
    assert response.status_code == 200


def test_opaque_keys_follow_the_config(make_app):
    client = make_app(PUBLISHABLE_API_KEY="sb_publishable_mine",
                      SECRET_API_KEY="sb_secret_mine").test_client()
    assert client.get("/auth/v1/settings",
                      headers={"apikey": keys.PUBLISHABLE_KEY}).status_code == 401
    assert client.get("/auth/v1/admin/users",
                      headers={"apikey": "sb_secret_mine"}).status_code == 200


# --- DNS rebinding: only the emulator's own names ---------------------------------------------

FOREIGN_HOSTS = ["evil.example", "evil.example:54321", "127.0.0.1.evil.example",
                 "127.0.0.1:54321.evil.example", "evil.example@127.0.0.1", "localhost.evil",
                 "[::1", "", "127.0.0.1 evil"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("path", ["/", "/dashboard", "/dashboard/audit", "/auth/v1/settings",
                                  "/auth/v1/.well-known/jwks.json",
                                  "/github/login/oauth/authorize"])
def test_a_foreign_host_reaches_no_page(client, host, path):
    response = client.get(path, headers={"Host": host, "apikey": keys.SERVICE_ROLE_KEY})
    assert response.status_code == 400
    assert response.get_data(as_text=True).startswith("This emulator answers only at")


def test_a_rebound_name_cannot_reset_the_database(client, admin, sign_in):
    """A page on a name that resolves to 127.0.0.1 posting with the published demo key."""
    sign_in()
    before = client.get("/auth/v1/admin/users", headers=admin).json["users"]
    assert before
    response = client.post("/emulator/v1/reset", headers={**admin, "Host": "evil.example"})
    assert response.status_code == 400
    assert client.get("/auth/v1/admin/users", headers=admin).json["users"] == before


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:54321", "localhost:8", "LocalHost",
                                  "[::1]", "[::1]:54321"])
def test_the_loopback_names_answer_on_any_port(client, host):
    assert client.get("/auth/v1/settings", headers={"Host": host,
                                                    "apikey": keys.ANON_KEY}).status_code == 200


def test_the_public_urls_host_answers(make_app):
    client = make_app(PUBLIC_URL="http://auth.dev.test:9999").test_client()
    assert client.get("/dashboard", headers={"Host": "auth.dev.test"}).status_code == 200
    assert client.get("/dashboard", headers={"Host": "dev.test"}).status_code == 400
