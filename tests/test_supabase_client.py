"""One HTTP pool per process, one Supabase client per request, no timer threads."""

from __future__ import annotations

import threading

from supabase_client import extension, get_supabase


def test_one_client_per_request(app):
    with app.test_request_context():
        first = get_supabase()
        assert get_supabase() is first
    with app.test_request_context():
        assert get_supabase() is not first


def test_clients_share_the_process_http_pool_and_never_auto_refresh(app):
    with app.test_request_context():
        client = get_supabase()
        assert client.auth._http_client is extension().http
        assert client.auth._auto_refresh_token is False
        assert client.auth._flow_type == "pkce"


def test_the_client_is_dropped_on_teardown(app):
    with app.app_context() as context:
        get_supabase()
        assert "supabase_client" in context.g
    assert "supabase_client" not in context.g


def test_teardown_without_a_client_is_fine(client):
    assert client.get("/healthz").status_code == 200


def test_sign_ins_start_no_threads(make_app, emulator, github_account):
    from tests.helpers import Browser

    app = make_app(AUTH_REVALIDATE_SECONDS=0)  # every page refreshes: the worst case
    browser = Browser(app.test_client(), emulator.url)
    try:
        for _ in range(5):
            browser.sign_in(github_account())
            browser.client.get("/")
    finally:
        browser.close()
    # supabase_auth's refresh timers are threading.Timer threads; the emulator's own server
    # threads (it runs in this process) are not counted.
    assert [t for t in threading.enumerate() if isinstance(t, threading.Timer)] == []
