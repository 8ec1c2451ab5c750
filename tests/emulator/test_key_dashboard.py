"""The dashboard's signing-keys page: list, rotate, revoke, CSRF."""

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
    assert f'action="{PAGE}/{DEV_KID}/revoke"' in html


def test_revoke(client, app):
    client.post(PAGE + "/rotate", data={"csrf_token": csrf(client)})
    response = client.post(f"{PAGE}/{DEV_KID}/revoke", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert states(app)[DEV_KID] == "revoked"
    assert f"Revoked {DEV_KID}" in client.get(PAGE).get_data(as_text=True)


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
