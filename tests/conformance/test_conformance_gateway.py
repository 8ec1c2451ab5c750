"""Both API-key generations at the gateway (§0b): publishable and secret keys next to the
legacy anon / service_role JWTs.

Tests marked `gateway` check what the gateway decides (roles, refusals); against a bare Auth
server they run only with AUTH_CONFORMANCE_GATEWAY=1. The others hold with or without one.
"""

import uuid

import pytest
from supabase_auth import SyncGoTrueClient

from tests.conformance.support import (
    APP_CALLBACK,
    TIMEOUT,
    assert_error,
    query_of,
    rate_limit_key,
    single,
)

BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
           "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")


def test_publishable_key_reads_settings(keyed_http, publishable_key):
    assert keyed_http(publishable_key).get("/settings").status_code == 200


def test_publishable_key_signs_in_refreshes_and_reads_the_user(keyed_http, oauth_for,
                                                               publishable_key):
    http = keyed_http(publishable_key)
    oauth = oauth_for(http)
    flow = oauth.run()
    session = oauth.exchange(flow.code, flow.verifier)
    assert session.status_code == 200, session.text
    refreshed = http.post("/token", params={"grant_type": "refresh_token"},
                          json={"refresh_token": session.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    user = http.get("/user", headers={
        "Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert (user.status_code, user.json()["id"]) == (200, session.json()["user"]["id"])


def test_the_real_client_with_a_publishable_key(target, publishable_key, keyed_http, oauth_for):
    oauth = oauth_for(keyed_http(publishable_key))
    account = oauth.stand_in.create_account()
    client = SyncGoTrueClient(url=target.auth_url,
                              headers={"apikey": publishable_key, **rate_limit_key()},
                              flow_type="pkce", auto_refresh_token=False)
    with client:
        url = client.sign_in_with_oauth({"provider": "github",
                                         "options": {"redirect_to": APP_CALLBACK}}).url
        back = oauth.consent(oauth.http.get(url).headers["location"], account["login"])
        location = oauth.http.get(back.headers["location"]).headers["location"]
        code = single(query_of(location))["code"]
        session = client.exchange_code_for_session({"auth_code": code}).session
        assert client.get_user(session.access_token).user.email == account["email"]
        assert client.get_claims(session.access_token)["claims"]["sub"] == session.user.id


# ---- what only the gateway decides -----------------------------------------------------

@pytest.mark.gateway
@pytest.mark.parametrize("authorization", [None, "same"])
def test_secret_key_is_the_service_role(keyed_http, secret_key, authorization):
    headers = {"Authorization": f"Bearer {secret_key}"} if authorization else {}
    resp = keyed_http(secret_key, **headers).get("/admin/users")
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json()["users"], list)


@pytest.mark.gateway
def test_secret_key_in_the_query(bare_http, secret_key):
    assert bare_http.get("/admin/users", params={"apikey": secret_key}).status_code == 200


@pytest.mark.gateway
@pytest.mark.parametrize("authorization", [None, "same"])
def test_publishable_key_is_not_admin(keyed_http, publishable_key, authorization):
    headers = {"Authorization": f"Bearer {publishable_key}"} if authorization else {}
    assert_error(keyed_http(publishable_key, **headers).get("/admin/users"), 403, "not_admin")


@pytest.mark.gateway
def test_publishable_key_as_bearer_is_no_user_token(keyed_http, publishable_key):
    http = keyed_http(publishable_key, Authorization=f"Bearer {publishable_key}")
    assert_error(http.get("/user"), 403, "bad_jwt")


@pytest.mark.gateway
@pytest.mark.parametrize("where", ["header", "query"])
def test_secret_key_refused_from_a_browser(bare_http, secret_key, where):
    if where == "header":
        resp = bare_http.get("/admin/users", headers={"apikey": secret_key,
                                                      "User-Agent": BROWSER})
    else:
        resp = bare_http.get("/admin/users", params={"apikey": secret_key},
                             headers={"User-Agent": BROWSER})
    assert resp.status_code == 401
    assert resp.json() == {"message": "Forbidden use of secret API key in browser"}


@pytest.mark.gateway
def test_publishable_key_is_fine_from_a_browser(bare_http, publishable_key):
    resp = bare_http.get("/settings", headers={"apikey": publishable_key, "User-Agent": BROWSER})
    assert resp.status_code == 200


@pytest.mark.gateway
@pytest.mark.parametrize("kind", ["publishable", "secret"])
def test_another_projects_key_is_invalid(bare_http, kind):
    foreign = f"sb_{kind}_{uuid.uuid4().hex}"
    resp = bare_http.get("/settings", headers={"apikey": foreign}, timeout=TIMEOUT)
    assert resp.status_code == 401
    assert isinstance(resp.json()["message"], str)
