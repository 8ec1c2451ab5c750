"""The GitHub stand-in: consent page, code exchange, revocation, REST endpoints, avatars."""

import base64
from urllib.parse import parse_qs

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
    assert '<strong>octocat</strong> <span class="muted">octocat@example.com</span>' in html
    assert ">Authorize</button>" in html and ">Cancel</button>" in html


def test_consent_page_marks_an_unverified_account(page_client):
    page_client.post("/github/_accounts", json={"login": "ursula", "email": "ursula@example.com",
                                                "verified": False})
    html = page_client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID,
                                                    "redirect_uri": CALLBACK}).get_data(
        as_text=True)
    ursula = html[html.index("<strong>ursula</strong>"):].split("</li>")[0]
    octocat = html[html.index("<strong>octocat</strong>"):].split("</li>")[0]
    assert "unverified email" in ursula and "unverified" not in octocat


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
    assert '<strong>hubot</strong> <span class="muted">hubot@example.com</span>' in html


def exchange(client, code, **kwargs):
    return client.post("/github/login/oauth/access_token", **kwargs,
                       data={"code": code, "redirect_uri": CALLBACK,
                             **kwargs.pop("extra", {})})


def basic(user=CLIENT_ID, password=SECRET):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def form_body(response) -> dict[str, str]:
    assert response.mimetype == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(response.get_data(as_text=True)).items()}


JSON = {"Accept": "application/json"}


def test_code_exchange_is_form_encoded_by_default_and_single_use(page_client):
    code = code_for(page_client)["code"]
    first = form_body(exchange(page_client, code, headers=basic()))
    assert first["access_token"].startswith("gho_") and len(first["access_token"]) == 40
    assert (first["token_type"], first["scope"]) == ("bearer", "user:email")
    second = form_body(exchange(page_client, code, headers=basic()))
    assert second["error"] == "bad_verification_code"


def test_code_exchange_json_when_accept_asks(page_client):
    code = code_for(page_client)["code"]
    response = page_client.post("/github/login/oauth/access_token", headers=JSON,
                                data={"code": code, "client_id": CLIENT_ID,
                                      "client_secret": SECRET})
    assert response.mimetype == "application/json"
    assert response.json["access_token"].startswith("gho_")


def test_wrong_secret_and_wrong_redirect_uri(page_client):
    code = code_for(page_client)["code"]
    assert exchange(page_client, code, headers={**basic(password="x"), **JSON}).json[
        "error"] == "incorrect_client_credentials"
    response = page_client.post("/github/login/oauth/access_token", headers={**basic(), **JSON},
                                data={"code": code, "redirect_uri": CALLBACK + "/other"})
    assert response.json["error"] == "redirect_uri_mismatch"


def new_token(client) -> str:
    return exchange(client, code_for(client)["code"], headers={**basic(), **JSON}).json[
        "access_token"]


@pytest.fixture
def token(page_client):
    return new_token(page_client)


def test_user_is_a_full_github_user(page_client, token):
    user = page_client.get("/github/api/v3/user",
                           headers={"Authorization": f"token {token}"}).json
    assert {"login", "id", "node_id", "avatar_url", "html_url", "name", "company", "blog",
            "location", "email", "bio", "public_repos", "public_gists", "followers",
            "following", "created_at", "updated_at"} <= set(user)
    assert (user["login"], user["id"], user["public_repos"]) == ("octocat", 583231, 3)
    assert user["avatar_url"] == "http://127.0.0.1:54321/github/avatars/583231.svg"
    assert user["created_at"] == "2011-01-25T18:44:36Z"


def test_emails(page_client, token):
    assert page_client.get("/github/api/v3/user/emails",
                           headers={"Authorization": f"Bearer {token}"}).json == [
        {"email": "octocat@example.com", "primary": True, "verified": True,
         "visibility": "public"}]


def repos(client, token, **args):
    return client.get("/github/api/v3/user/repos", query_string=args,
                      headers={"Authorization": f"Bearer {token}"})


def test_repos_list_public_and_private_with_github_fields(page_client, token):
    listed = repos(page_client, token).json
    assert [r["full_name"] for r in listed] == ["octocat/hello-world", "octocat/linguist",
                                                "octocat/private-notes", "octocat/Spoon-Knife"]
    assert {"id", "name", "full_name", "private", "html_url", "description", "fork",
            "language", "stargazers_count", "updated_at"} <= set(listed[0])
    assert [r["name"] for r in repos(page_client, token, visibility="public").json] == [
        "hello-world", "linguist", "Spoon-Knife"]


def test_repos_pagination(page_client, token):
    first = repos(page_client, token, per_page=3)
    assert len(first.json) == 3
    assert 'page=2>; rel="next"' in first.headers["Link"]
    second = repos(page_client, token, per_page=3, page=2)
    assert [r["name"] for r in second.json] == ["Spoon-Knife"] and "Link" not in second.headers


@pytest.mark.parametrize("authorization", ["Bearer nope", None])
def test_unknown_token_is_bad_credentials(page_client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = page_client.get("/github/api/v3/user", headers=headers)
    assert response.status_code == 401
    assert response.json["documentation_url"] and response.json["status"] == "401"


def revoke(client, token, auth=None):
    return client.delete(f"/github/applications/{CLIENT_ID}/token", headers=auth or basic(),
                         json={"access_token": token})


def test_revoked_token_is_bad_credentials(page_client, token):
    response = revoke(page_client, token)
    assert (response.status_code, response.get_data()) == (204, b"")
    after = page_client.get("/github/api/v3/user", headers={"Authorization": f"token {token}"})
    assert (after.status_code, after.json["message"]) == (401, "Bad credentials")
    assert revoke(page_client, token).status_code == 404


def test_revocation_needs_the_app_credentials(page_client, token):
    assert revoke(page_client, token, basic(password="wrong")).status_code == 404
    missing = page_client.delete(f"/github/applications/{CLIENT_ID}/token", headers=basic(),
                                 json={})
    assert missing.status_code == 422


def test_avatar_is_a_generated_svg(page_client):
    response = page_client.get("/github/avatars/583231.svg")
    assert response.mimetype == "image/svg+xml"
    svg = response.get_data(as_text=True)
    assert svg.startswith("<svg") and ">O</text>" in svg
    assert page_client.get("/github/avatars/583231.svg").get_data(as_text=True) == svg
    assert page_client.get("/github/avatars/1.svg").status_code == 404


def test_auto_login_creates_account(make_app):
    client = make_app(GITHUB_AUTO_LOGIN="newdev").test_client()
    response = client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID, "state": "s"})
    assert query(response.headers["Location"])["state"] == "s"
    token = exchange(client, query(response.headers["Location"])["code"],
                     headers={**basic(), **JSON}).json["access_token"]
    emails = client.get("/github/api/v3/user/emails",
                        headers={"Authorization": f"Bearer {token}"}).json
    assert emails[0]["email"] == "newdev@example.com" and emails[0]["verified"] is True


def test_seed_accounts(client):
    created = client.post("/github/_accounts", json={"login": "x", "name": "X", "id": 42,
                                                     "email": "x@example.com", "verified": False})
    assert (created.status_code, created.json["id"], created.json["verified"]) == (201, 42, False)
    assert client.post("/github/_accounts", json={"login": "x"}).status_code == 200
    assert client.post("/github/_accounts", json={}).status_code == 422


def test_the_consent_page_cannot_be_framed(page_client):
    """Framed on another site, the Authorize button could be clicked blind (clickjacking)."""
    response = page_client.get(AUTHORIZE, query_string={"client_id": CLIENT_ID,
                                                        "redirect_uri": CALLBACK})
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    # Browsers apply form-action to the redirects after the POST (to the client, anywhere).
    assert "form-action" not in policy
    answered = page_client.post(AUTHORIZE, data=consent_form(page_client, action="cancel"))
    assert answered.headers["X-Frame-Options"] == "DENY"


def test_a_consent_post_from_another_site_is_refused(page_client):
    form = consent_form(page_client, action="authorize", login="octocat")
    response = page_client.post(AUTHORIZE, data=form, headers={"Origin": "http://evil.example"})
    assert response.status_code == 400 and "Location" not in response.headers
