"""start_background() and the real supabase_auth client end to end."""

import socket

import httpx
import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient, SyncMemoryStorage

from emulator.serve import start_background


@pytest.fixture
def running():
    emulator = start_background({"DATABASE": ":memory:", "GITHUB_AUTO_LOGIN": "octocat"})
    yield emulator
    emulator.stop()


def test_running_emulator_exposes_url_and_keys(running):
    assert running.url.startswith("http://127.0.0.1:")
    assert running.app.config["PUBLIC_URL"] == running.url
    with httpx.Client() as http:
        response = http.get(running.url + "/auth/v1/health", headers={"apikey": running.anon_key})
    assert response.status_code == 200


@pytest.mark.parametrize("key", ["anon_key", "publishable_key"])
def test_supabase_auth_client_round_trip(running, key):
    auth = SyncGoTrueClient(url=running.url + "/auth/v1",
                            headers={"apikey": getattr(running, key)},
                            flow_type="pkce", auto_refresh_token=False,
                            storage=SyncMemoryStorage())
    try:
        start = auth.sign_in_with_oauth({"provider": "github", "options": {
            "redirect_to": "http://127.0.0.1:5000/auth/callback"}})
        code = httpx.URL(follow_to_app(start.url)).params["code"]
        signed_in = auth.exchange_code_for_session({"auth_code": code})
        assert signed_in.user.email == "octocat@example.com"
        assert signed_in.session.provider_token.startswith("gho_")
        refreshed = auth.refresh_session()
        assert refreshed.session.refresh_token != signed_in.session.refresh_token
        assert auth.get_user().user.id == signed_in.user.id
        claims = auth.get_claims()
        assert claims["headers"]["alg"] == "ES256"
        assert claims["claims"]["sub"] == signed_in.user.id
        auth.sign_out()
        assert auth.get_session() is None
    finally:
        auth._http_client.close()


def follow_to_app(location: str) -> str:
    """Follow the stand-in and callback redirects to the app's URL."""
    with httpx.Client(follow_redirects=False) as http:
        while not location.startswith("http://127.0.0.1:5000/"):
            location = http.get(location).headers["Location"]
    return location


def test_supabase_auth_client_links_and_unlinks_identities():
    emulator = start_background({"DATABASE": ":memory:", "AUTO_LOGIN": "octocat",
                                 "PROVIDERS": "github,google", "MANUAL_LINKING": "true"})
    auth = SyncGoTrueClient(url=emulator.url + "/auth/v1", headers={"apikey": emulator.anon_key},
                            flow_type="pkce", auto_refresh_token=False,
                            storage=SyncMemoryStorage())
    options = {"redirect_to": "http://127.0.0.1:5000/auth/callback"}
    try:
        start = auth.sign_in_with_oauth({"provider": "github", "options": options})
        code = httpx.URL(follow_to_app(start.url)).params["code"]
        user_id = auth.exchange_code_for_session({"auth_code": code}).user.id
        linking = auth.link_identity({"provider": "google", "options": options})
        code = httpx.URL(follow_to_app(linking.url)).params["code"]
        linked = auth.exchange_code_for_session({"auth_code": code})
        assert linked.user.id == user_id
        assert [i.provider for i in linked.user.identities] == ["github", "google"]
        assert linked.user.app_metadata["providers"] == ["github", "google"]
        github = auth.get_user_identities().identities[0]
        auth.unlink_identity(github)
        user = auth.get_user().user
        assert [i.provider for i in user.identities] == ["google"]
        assert user.app_metadata["providers"] == ["google"]
    finally:
        auth._http_client.close()
        emulator.stop()


def free_port() -> int:
    """A port that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_external_github_over_http():
    """One emulator's auth API using another one's stand-in as GOTRUE_EXTERNAL_GITHUB_URL."""
    port = free_port()
    callback = f"http://127.0.0.1:{port}/auth/v1/callback"
    github = start_background({"DATABASE": ":memory:", "GITHUB_AUTO_LOGIN": "octocat",
                               "GITHUB_REDIRECT_URI": callback})
    auth = start_background({"DATABASE": ":memory:", "GITHUB_URL": github.url + "/github"},
                            port=port)
    try:
        with httpx.Client() as http:
            location = http.get(auth.url + "/auth/v1/authorize", params={
                "provider": "github", "redirect_to": "http://127.0.0.1:5000/cb"}).headers[
                "Location"]
            assert location.startswith(github.url + "/github/login/oauth/authorize?")
            location = http.get(location).headers["Location"]
            location = http.get(location).headers["Location"]
        assert location.startswith("http://127.0.0.1:5000/cb#access_token=")
        assert auth.app.extensions["emulator.providers"]["github"].__class__.__name__ == \
            "HttpGitHub"  # the exchange above parsed GitHub's form-encoded token answer
    finally:
        auth.stop()
        github.stop()


def test_underscore_headers_reach_the_app(running):
    with httpx.Client() as http:
        response = http.get(running.url + "/auth/v1/authorize", params={"provider": "github"},
                            headers={"redirect_to": "http://127.0.0.1:5000/from-header"})
    assert response.status_code == 302
    stored = running.app.extensions["emulator.db"].one("SELECT referrer FROM flow_states")
    assert stored["referrer"] == "http://127.0.0.1:5000/from-header"


def test_running_emulator_exposes_both_key_generations(running):
    assert running.publishable_key.startswith("sb_publishable_")
    assert running.secret_key.startswith("sb_secret_")
    with httpx.Client() as http:
        settings = http.get(running.url + "/auth/v1/settings",
                            headers={"apikey": running.publishable_key})
        users = http.get(running.url + "/auth/v1/admin/users",
                         headers={"apikey": running.secret_key})
    assert (settings.status_code, users.status_code) == (200, 200)


def test_admin_client_with_the_secret_key(running):
    admin = SyncGoTrueAdminAPI(url=running.url + "/auth/v1",
                               headers={"apikey": running.secret_key,
                                        "Authorization": f"Bearer {running.secret_key}"})
    try:
        created = admin.create_user({"email": "admin-made@example.com", "email_confirm": True})
        assert created.user.email == "admin-made@example.com"
        assert [user.id for user in admin.list_users()] == [created.user.id]
    finally:
        admin._http_client.close()


def test_connections_are_kept_alive_between_requests(running):
    """HTTP/1.1 keep-alive, as the hosted gateway: one connection serves many requests."""
    with httpx.Client() as http:
        for _ in range(3):
            response = http.get(running.url + "/auth/v1/health",
                                headers={"apikey": running.anon_key})
            assert response.status_code == 200
            assert response.headers.get("Connection", "").lower() != "close"
        assert len(http._transport._pool.connections) == 1


def test_a_request_with_an_unread_body_leaves_the_connection_usable(running):
    """A refused request's body is drained, so the next request on the connection parses."""
    with httpx.Client() as http:
        refused = http.post(running.url + "/auth/v1/token?grant_type=pkce",
                            content=b"x" * 100_000, headers={"apikey": "not-a-key"})
        assert refused.status_code == 401
        again = http.get(running.url + "/auth/v1/health", headers={"apikey": running.anon_key})
        assert again.status_code == 200
        assert len(http._transport._pool.connections) == 1


def test_stopping_closes_kept_connections_so_a_pool_reconnects():
    """After a restart on the same port the pool's old connection is not reused."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    first = start_background({"DATABASE": ":memory:"}, port=port)
    with httpx.Client() as http:
        settings = http.get(first.url + "/auth/v1/settings", headers={"apikey": first.anon_key})
        assert settings.json()["external"]["google"] is False
        first.stop()
        second = start_background({"DATABASE": ":memory:", "PROVIDERS": "github,google"},
                                  port=port)
        try:
            settings = http.get(second.url + "/auth/v1/settings",
                                headers={"apikey": second.anon_key})
        finally:
            second.stop()
    assert settings.json()["external"]["google"] is True  # the new emulator answered
