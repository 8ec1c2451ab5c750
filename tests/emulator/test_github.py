"""The GitHub stand-in: consent page, code exchange, REST endpoints, seeding."""

import base64

import pytest

from tests.emulator.emulator_helpers import query

CLIENT_ID = "emulator-github-client-id"
SECRET = "emulator-github-client-secret"
CALLBACK = "http://127.0.0.1:54321/auth/v1/callback"
AUTHORIZE = "/github/login/oauth/authorize"


@pytest.fixture
def page_client(make_app):
    return make_app(GITHUB_AUTO_LOGIN=None).test_client()


def consent_form(client, **extra):
    params = {"client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": "s1",
              "scope": "user:email"}
    html = client.get(AUTHORIZE, query_string=params).get_data(as_text=True)
    token = html.split('name="csrf_token" value="')[1].split('"')[0]
    return {**params, "csrf_token": token, **extra}


def code_for(client, **extra):
    form = consent_form(client, action="authorize", **{"login": "octocat", **extra})
    response = client.post(AUTHORIZE, data=form)
    assert response.status_code == 302
    return query(response.headers["Location"])


def test_consent_page(page_client):
    response = page_client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID,
                                                        "redirect_uri": CALLBACK})
    html = response.get_data(as_text=True)
    assert "<title>Authorize Supabase Auth Emulator</title>" in html
    assert 'type="radio" name="login" value="octocat" checked' in html
    assert "octocat — octocat@example.com" in html
    assert ">Authorize</button>" in html and ">Cancel</button>" in html


def test_cancel_redirects_like_github(page_client):
    response = page_client.post(AUTHORIZE, data=consent_form(page_client, action="cancel"))
    assert response.headers["Location"] == (
        CALLBACK + "?error=access_denied&error_description=The+user+has+denied+your+"
        "application+access.&state=s1")


def test_post_without_csrf_is_refused(page_client):
    assert page_client.post(AUTHORIZE, data={"client_id": CLIENT_ID}).status_code == 400


def test_unknown_client_and_bad_redirect_uri(page_client):
    assert page_client.get(AUTHORIZE, query_string={"client_id": "x"}).status_code == 404
    response = page_client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID,
                                                        "redirect_uri": "https://evil.test/cb"})
    assert query(response.headers["Location"])["error"] == "redirect_uri_mismatch"


def test_new_account_from_form(page_client):
    params = code_for(page_client, new_login="hubot", new_name="Hubot",
                      new_email="hubot@example.com", new_verified="1")
    assert params["state"] == "s1" and params["code"]
    html = page_client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID}).get_data(as_text=True)
    assert "hubot — hubot@example.com" in html


def exchange(client, code, **kwargs):
    return client.post("/github/login/oauth/access_token", **kwargs,
                       data={"code": code, "redirect_uri": CALLBACK,
                             **kwargs.pop("extra", {})})


def basic(user=CLIENT_ID, password=SECRET):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_code_exchange_basic_auth_json_and_single_use(page_client):
    code = code_for(page_client)["code"]
    first = exchange(page_client, code, headers=basic())
    assert first.json["access_token"].startswith("gho_")
    assert len(first.json["access_token"]) == 40
    assert first.json["token_type"] == "bearer"
    second = exchange(page_client, code, headers=basic())
    assert (second.status_code, second.json["error"]) == (200, "bad_verification_code")


def test_code_exchange_body_credentials_form_reply(page_client):
    code = code_for(page_client)["code"]
    response = page_client.post("/github/login/oauth/access_token",
                                headers={"Accept": "application/x-www-form-urlencoded"},
                                data={"code": code, "client_id": CLIENT_ID,
                                      "client_secret": SECRET})
    assert response.mimetype == "application/x-www-form-urlencoded"
    assert response.get_data(as_text=True).startswith("access_token=gho_")


def test_wrong_secret_and_wrong_redirect_uri(page_client):
    code = code_for(page_client)["code"]
    assert exchange(page_client, code, headers=basic(password="x")).json["error"] == \
        "incorrect_client_credentials"
    response = page_client.post("/github/login/oauth/access_token", headers=basic(),
                                data={"code": code, "redirect_uri": CALLBACK + "/other"})
    assert response.json["error"] == "redirect_uri_mismatch"


def test_api_endpoints(page_client):
    token = exchange(page_client, code_for(page_client)["code"], headers=basic()).json[
        "access_token"]
    headers = {"Authorization": f"token {token}"}
    assert page_client.get("/github/api/v3/user", headers=headers).json["id"] == 583231
    assert page_client.get("/github/api/v3/user/emails", headers=headers).json == [
        {"email": "octocat@example.com", "primary": True, "verified": True,
         "visibility": "public"}]
    assert page_client.get("/github/api/v3/user/repos", headers=headers).json[0]["full_name"] \
        == "octocat/hello-world"
    bad = page_client.get("/github/api/v3/user", headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json["message"]) == (401, "Bad credentials")


def test_auto_login_creates_account(make_app):
    client = make_app(GITHUB_AUTO_LOGIN="newdev").test_client()
    response = client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID, "state": "s"})
    assert query(response.headers["Location"])["state"] == "s"
    token = exchange(client, query(response.headers["Location"])["code"],
                     headers=basic()).json["access_token"]
    emails = client.get("/github/api/v3/user/emails",
                        headers={"Authorization": f"Bearer {token}"}).json
    assert emails[0]["email"] == "newdev@example.com" and emails[0]["verified"] is True


def test_seed_accounts(client):
    created = client.post("/github/_accounts", json={"login": "x", "name": "X", "id": 42,
                                                     "email": "x@example.com", "verified": False})
    assert (created.status_code, created.json["id"], created.json["verified"]) == (201, 42, False)
    assert client.post("/github/_accounts", json={"login": "x"}).status_code == 200
    assert client.post("/github/_accounts", json={}).status_code == 422
