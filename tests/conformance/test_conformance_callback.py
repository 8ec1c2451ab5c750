"""/callback (§2): state errors, provider errors, success, and what happens to the user."""

import uuid
from urllib.parse import urlsplit

import pytest

from tests.conformance.support import (
    APP_CALLBACK,
    FLOW_STATE_EXPIRY,
    SITE_URL,
    UUID_RE,
    assert_redirect_error,
    query_of,
    single,
    without_query,
)

DENIED = "The user has denied your application access."
UNVERIFIED = ("Unverified email with github. A confirmation email has been sent to your "
              "github email")


def assert_state_error(resp, code: str, description: str):
    """§2.1: 303 to SITE_URL, error only in the query."""
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    assert without_query(location) == SITE_URL
    assert single(query_of(location)) == {"error": "invalid_request", "error_code": code,
                                          "error_description": description}
    assert urlsplit(location).fragment == ""


@pytest.mark.parametrize(("params", "code", "description"), [
    ({}, "bad_oauth_callback", "OAuth state parameter missing"),
    ({"state": ""}, "bad_oauth_callback", "OAuth state parameter missing"),
    ({"state": "not-a-uuid"}, "bad_oauth_state", "OAuth state parameter is invalid"),
    ({"state": str(uuid.uuid4())}, "bad_oauth_state", "OAuth state not found or expired"),
], ids=["missing", "empty", "not-uuid", "unknown"])
def test_bad_state_goes_to_site_url(http, params, code, description):
    resp = http.get("/callback", params={"code": "abc", **params})
    assert_state_error(resp, code, description)


def test_bad_state_on_post_goes_to_site_url(http):
    resp = http.post("/callback", data={"state": "not-a-uuid", "code": "abc"})
    assert_state_error(resp, "bad_oauth_state", "OAuth state parameter is invalid")


def test_state_reused_after_success(http, oauth_code):
    flow = oauth_code()
    resp = http.get(flow.callback.request.url)
    assert_state_error(resp, "flow_state_already_used", "State has already been used")


@pytest.mark.emulator_only(reason="moves the emulator CLOCK past the flow-state expiry")
def test_expired_state_goes_to_site_url(oauth, stand_in, clock):
    account = stand_in.create_account()
    resp, _ = oauth.authorize({"redirect_to": APP_CALLBACK})
    clock.advance(FLOW_STATE_EXPIRY + 1)
    back = oauth.consent(resp.headers["location"], account["login"])
    assert_state_error(oauth.http.get(back.headers["location"]), "bad_oauth_state",
                       "OAuth state has expired")


def test_provider_error_goes_to_redirect_target(oauth):
    flow = oauth.run(button="Cancel")
    assert flow.callback.status_code == 302
    assert without_query(flow.location) == APP_CALLBACK
    assert_redirect_error(flow.location, "access_denied", None, DENIED)


def test_missing_code_is_bad_oauth_callback(oauth):
    resp, _ = oauth.authorize({"redirect_to": APP_CALLBACK})
    state = single(query_of(resp.headers["location"]))["state"]
    callback = oauth.http.get("/callback", params={"state": state})
    assert callback.status_code == 302
    assert without_query(callback.headers["location"]) == APP_CALLBACK
    assert_redirect_error(callback.headers["location"], "invalid_request", "bad_oauth_callback",
                          "OAuth callback with missing authorization code missing")


def test_success_redirects_with_code(oauth_code):
    flow = oauth_code()
    assert flow.callback.status_code == 302
    assert without_query(flow.location) == APP_CALLBACK
    assert set(query_of(flow.location)) == {"code"}
    assert UUID_RE.match(flow.code)
    assert urlsplit(flow.location).fragment == ""


def test_success_keeps_target_query(oauth_code):
    flow = oauth_code(redirect_to=APP_CALLBACK + "?next=%2Fdash&a=1")
    params = single(query_of(flow.location))
    assert {k: v for k, v in params.items() if k != "code"} == {"next": "/dash", "a": "1"}


def test_success_keeps_target_fragment(oauth_code):
    flow = oauth_code(redirect_to=APP_CALLBACK + "#section")
    assert urlsplit(flow.location).fragment == "section"
    assert UUID_RE.match(flow.code)


def test_success_query_keys_are_sorted(oauth_code):
    flow = oauth_code(redirect_to=APP_CALLBACK + "?zeta=1&alpha=2")
    keys = [pair.split("=")[0] for pair in urlsplit(flow.location).query.split("&")]
    assert keys == ["alpha", "code", "zeta"]


def test_callback_accepts_post(oauth, stand_in):
    account = stand_in.create_account()
    resp, _ = oauth.authorize({"redirect_to": APP_CALLBACK})
    back = oauth.consent(resp.headers["location"], account["login"])
    form = single(query_of(back.headers["location"]))
    callback = oauth.http.post("/callback", data=form)
    assert callback.status_code == 302
    assert UUID_RE.match(single(query_of(callback.headers["location"]))["code"])


def test_code_per_flow_is_distinct(oauth_code, stand_in):
    account = stand_in.create_account()
    assert oauth_code(account).code != oauth_code(account).code


def test_banned_user_is_refused(oauth, sign_in, stand_in, admin):
    account = stand_in.create_account()
    user_id = sign_in(account)["user"]["id"]
    admin.put(f"/admin/users/{user_id}", json={"ban_duration": "24h"})
    flow = oauth.run(account)
    assert flow.callback.status_code == 302
    assert without_query(flow.location) == APP_CALLBACK
    assert_redirect_error(flow.location, "access_denied", "user_banned", "User is banned")


def test_unverified_email_needs_verification(oauth, stand_in):
    flow = oauth.run(stand_in.create_account(verified=False))
    assert flow.callback.status_code == 302
    assert_redirect_error(flow.location, "access_denied", "provider_email_needs_verification",
                          UNVERIFIED)


def test_unverified_login_still_creates_the_user(oauth, stand_in, admin):
    account = stand_in.create_account(verified=False)
    oauth.run(account)
    users = admin.get("/admin/users", params={"filter": account["login"]}).json()["users"]
    assert [u["email"] for u in users] == [account["email"]]
    assert "email_confirmed_at" not in users[0]


def test_verified_email_links_to_admin_created_user(sign_in, stand_in, admin):
    email = f"linked-{uuid.uuid4().hex[:10]}@example.com"
    created = admin.post("/admin/users", json={"email": email, "email_confirm": True}).json()
    user = sign_in(stand_in.create_account(email=email))["user"]
    assert user["id"] == created["id"]
    assert user["app_metadata"]["providers"] == ["email", "github"]
    assert user["app_metadata"]["provider"] == "email"
    assert sorted(i["provider"] for i in user["identities"]) == ["email", "github"]


def test_returning_github_user_keeps_their_account(sign_in, stand_in):
    account = stand_in.create_account()
    assert sign_in(account)["user"]["id"] == sign_in(account)["user"]["id"]
