"""The dashboard's signing-keys page: list, rotate, revoke, CSRF."""

import re

import pytest

from emulator import keys

DEV_KID = keys.JWT_PRIVATE_JWK["kid"]
PAGE = "/dashboard/signing-keys"


def csrf(client):
    html = client.get(PAGE).get_data(as_text=True)
    return html.split('name="csrf_token" value="')[1].split('"')[0]


def states(app):
    return {key.kid: key.state for key in app.extensions["emulator.signing_keys"].all()}


def test_lists_keys_with_their_states(client, app):
    html = client.get(PAGE).get_data(as_text=True)
    assert DEV_KID in html and "current (in use)" in html and "standby" in html
    assert "Revoke</button>" not in html  # nothing is previously used yet
    assert "<script" not in html


def test_rotate(client, app):
    response = client.post(PAGE + "/rotate", data={"csrf_token": csrf(client)})
    assert (response.status_code, response.headers["Location"]) == (303, PAGE)
    assert states(app)[DEV_KID] == "previously_used"
    html = client.get(PAGE).get_data(as_text=True)
    assert "Rotated: new access tokens are signed with" in html
    assert f'href="{PAGE}/{DEV_KID}/revoke"' in html  # Revoke asks first, on its own page
    assert "Revoke</button>" not in html


def test_revoke(client, app):
    client.post(PAGE + "/rotate", data={"csrf_token": csrf(client)})
    response = client.post(f"{PAGE}/{DEV_KID}/revoke", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert states(app)[DEV_KID] == "revoked"
    assert f"Revoked {DEV_KID}" in client.get(PAGE).get_data(as_text=True)


def test_revoke_asks_first(client, app):
    client.post(PAGE + "/rotate", data={"csrf_token": csrf(client)})
    response = client.get(f"{PAGE}/{DEV_KID}/revoke")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and f"Revoke the signing key {DEV_KID}?" in html
    assert f'action="{PAGE}/{DEV_KID}/revoke"' in html and ">Revoke key</button>" in html
    assert f'href="{PAGE}">Cancel</a>' in html
    assert states(app)[DEV_KID] == "previously_used"  # asking changes nothing


@pytest.mark.parametrize("kid", [DEV_KID, "no-such-key"])  # in use, unknown
def test_no_confirm_page_for_a_key_that_cannot_be_revoked(client, kid):
    response = client.get(f"{PAGE}/{kid}/revoke")
    assert response.status_code == 404
    assert "<h1" in response.get_data(as_text=True)  # the dashboard's page, not a bare 404


def test_times_read_like_the_other_dashboard_pages(client):
    html = client.get(PAGE).get_data(as_text=True)
    assert re.search(r'<time datetime="[^"]+Z">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>', html)
    assert "<title>Signing keys · Supabase Auth emulator</title>" in html
    assert html.count("<h1") == 1 and 'class="card' in html


def test_refused_revoke_is_flashed(client, app):
    client.post(f"{PAGE}/{DEV_KID}/revoke", data={"csrf_token": csrf(client)})
    assert states(app)[DEV_KID] == "in_use"
    assert "Not revoked: only a previously used key can be revoked" in client.get(
        PAGE).get_data(as_text=True)


def test_posts_without_csrf_are_refused(client, app):
    assert client.post(PAGE + "/rotate").status_code == 400
    assert client.post(f"{PAGE}/{DEV_KID}/revoke", data={"csrf_token": "x"}).status_code == 400
    assert states(app)[DEV_KID] == "in_use"


def test_hs256_mode_is_explained(make_app):
    html = make_app(JWT_ALG="HS256").test_client().get(PAGE).get_data(as_text=True)
    assert "HS256 mode" in html


def test_the_page_has_the_dashboards_strict_headers(client):
    response = client.get("/dashboard/signing-keys")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
