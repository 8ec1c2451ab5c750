"""The dashboard: find people, one person's page, actions through the admin code, audit log."""

import re

import pytest

from emulator import keys
from tests.emulator.emulator_helpers import bearer


@pytest.fixture
def session(sign_in):
    return sign_in()


@pytest.fixture
def user_id(session):
    return session["user"]["id"]


def page(client, path="/dashboard", status=200):
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def csrf(client):
    """The token the dashboard's forms carry for this browser (its cookie), read off a page."""
    html = page(client, "/dashboard/signing-keys")
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf(client), **data}, follow_redirects=True)


def user_row(app, user_id):
    return app.extensions["emulator.db"].one("SELECT * FROM users WHERE id = ?", (user_id,))


def add_user(client, admin, email, **body):
    response = client.post("/auth/v1/admin/users", headers=admin, json={"email": email, **body})
    assert response.status_code == 200
    return response.json["id"]


def test_lists_users_with_name_email_providers_and_status(client, user_id):
    html = page(client)
    assert "The Octocat" in html and "octocat@example.com" in html and user_id in html
    assert '<span class="tag">github</span>' in html
    assert '<span class="badge badge-active">active</span>' in html
    assert "1 user<" in html


@pytest.mark.parametrize("text", ["OCTOCAT@example", "octo", "The Octo"])
def test_search_finds_by_email_github_login_or_name(client, admin, user_id, text):
    add_user(client, admin, "someone@example.com")
    html = page(client, f"/dashboard?q={text}")
    assert user_id in html and "someone@example.com" not in html


def test_search_by_id_and_no_match(client, admin, user_id):
    add_user(client, admin, "someone@example.com")
    assert user_id in page(client, f"/dashboard?q={user_id[:8]}")
    assert "No user matches “nobody”." in page(client, "/dashboard?q=nobody")


def test_sort_by_created_and_last_sign_in(client, admin, clock, sign_in):
    first = add_user(client, admin, "first@example.com")
    clock.now += 60
    second = add_user(client, admin, "second@example.com")
    clock.now += 60
    octocat = sign_in()["user"]["id"]

    def order(query):
        html = page(client, f"/dashboard?{query}")
        return sorted((first, second, octocat), key=html.index)

    assert order("sort=created&order=desc") == [octocat, second, first]
    assert order("sort=created&order=asc") == [first, second, octocat]
    assert order("sort=last_sign_in&order=desc")[0] == octocat  # never signed in: last
    assert order("sort=last_sign_in&order=asc")[0] == octocat
    assert 'aria-sort="ascending"' in page(client, "/dashboard?sort=created&order=asc")


def test_pages_of_fifty(client, admin):
    for n in range(51):
        add_user(client, admin, f"u{n:02}@example.com")
    html = page(client)
    assert "Showing 1–50 of 51" in html and "Next →" in html
    assert "Showing 51–51 of 51" in page(client, "/dashboard?page=2")


def test_status_column(client, admin, user_id, clock):
    add_user(client, admin, "new@example.com")
    client.put(f"/auth/v1/admin/users/{user_id}", headers=admin, json={"ban_duration": "1h"})
    html = page(client)
    assert "badge-unconfirmed" in html
    assert "banned until 2027-01-15 09:00:00 UTC" in html


def test_user_page_shows_identities_metadata_and_sessions(client, session, user_id):
    html = page(client, f"/dashboard/users/{user_id}")
    assert "<h1 id=\"user-title\">The Octocat</h1>" in html
    assert "583231" in html and ">octocat<" in html  # the GitHub identity and its login
    assert "&#34;providers&#34;: [\n    &#34;github&#34;\n  ]" in html  # formatted JSON
    assert "&#34;user_name&#34;: &#34;octocat&#34;" in html
    assert session["user"]["id"] in html and "Active sessions" in html
    assert '<span class="tag">oauth</span>' in html
    assert "user_signedup" in html  # recent audit entries


def test_unknown_user_page_is_a_404_page(client):
    html = page(client, "/dashboard/users/00000000-0000-0000-0000-000000000001", 404)
    assert "No user has this id" in html


def test_pages_carry_a_strict_policy(client, user_id):
    for path in ("/dashboard", f"/dashboard/users/{user_id}", "/dashboard/audit",
                 f"/dashboard/users/{user_id}/delete"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        html = response.get_data(as_text=True)
        assert "<script" not in html and "<style" not in html and " style=" not in html
    with client.get("/static/emulator.css") as css:
        assert css.status_code == 200 and css.mimetype == "text/css"


@pytest.mark.parametrize(("choice", "seconds", "label"), [
    ("1h", 3600, "1 hour"), ("24h", 86400, "24 hours"), ("7d", 7 * 86400, "7 days"),
    ("forever", 876000 * 3600, "forever"),
])
def test_ban_for_a_chosen_duration_and_unban(client, app, user_id, clock, choice, seconds, label):
    html = post(client, f"/dashboard/users/{user_id}/ban", duration=choice).get_data(as_text=True)
    assert f"Banned octocat@example.com for {label}." in html
    assert user_row(app, user_id)["banned_until"] == clock.now + seconds
    assert "Unban</button>" in html
    post(client, f"/dashboard/users/{user_id}/unban")
    assert user_row(app, user_id)["banned_until"] is None


def test_a_ban_ends_the_session_at_the_next_check(client, session, user_id):
    post(client, f"/dashboard/users/{user_id}/ban", duration="1h")
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert (response.status_code, response.json["error_code"]) == (403, "user_banned")


def test_an_unknown_ban_duration_changes_nothing(client, app, user_id):
    html = post(client, f"/dashboard/users/{user_id}/ban", duration="3d").get_data(as_text=True)
    assert "Nothing changed: choose how long the ban lasts" in html
    assert user_row(app, user_id)["banned_until"] is None


def test_set_and_remove_role(client, app, session, user_id):
    html = post(client, f"/dashboard/users/{user_id}/role", role="admin").get_data(as_text=True)
    assert "Set the role of octocat@example.com to admin." in html
    assert client.get("/auth/v1/user", headers=bearer(session)).json["app_metadata"]["role"] == \
        "admin"
    post(client, f"/dashboard/users/{user_id}/role", role="")
    assert "role" not in user_row(app, user_id)["app_metadata"]


def test_actions_write_the_admin_apis_audit_entries(client, admin, user_id):
    post(client, f"/dashboard/users/{user_id}/ban", duration="1h")
    post(client, f"/dashboard/users/{user_id}/role", role="admin")
    entries = client.get("/auth/v1/admin/audit?query=action:user_modified", headers=admin).json
    assert len(entries) == 2
    assert {e["payload"]["actor_username"] for e in entries} == {"service_role"}
    assert entries[0]["payload"]["traits"]["user_id"] == user_id


@pytest.mark.parametrize(("action", "heading", "button"), [
    ("delete", "Delete The Octocat?", "Delete user"),
    ("sign-out", "Sign The Octocat out everywhere?", "Sign out of every session"),
    ("revoke-github", "Revoke The Octocat&#39;s GitHub tokens?", "Revoke GitHub tokens"),
])
def test_destructive_actions_ask_first(client, user_id, action, heading, button):
    html = page(client, f"/dashboard/users/{user_id}/{action}")
    assert f"<h1 id=\"confirm-title\">{heading}</h1>" in html
    assert f'action="/dashboard/users/{user_id}/{action}"' in html
    assert f">{button}</button>" in html and ">Cancel</a>" in html


def test_delete(client, app, admin, user_id):
    html = post(client, f"/dashboard/users/{user_id}/delete").get_data(as_text=True)
    assert "Deleted octocat@example.com." in html and "No users yet" in html
    assert user_row(app, user_id) is None
    latest = client.get("/auth/v1/admin/audit", headers=admin).json[0]["payload"]
    assert (latest["action"], latest["traits"]["user_id"]) == ("user_deleted", user_id)


def test_sign_out_of_every_session(client, admin, sign_in, session, user_id):
    sign_in()
    html = post(client, f"/dashboard/users/{user_id}/sign-out").get_data(as_text=True)
    assert "Signed octocat@example.com out of 2 session(s)." in html
    assert "No active sessions." in html
    response = client.get("/auth/v1/user", headers=bearer(session))
    assert response.json["error_code"] == "session_not_found"
    latest = client.get("/auth/v1/admin/audit", headers=admin).json[0]["payload"]
    assert (latest["action"], latest["actor_id"]) == ("logout", user_id)


def test_revoke_github_tokens(client, session, user_id):
    token = session["provider_token"]
    assert "Revoke GitHub tokens… <span class=\"muted\">(1)</span>" in \
        page(client, f"/dashboard/users/{user_id}")
    html = post(client, f"/dashboard/users/{user_id}/revoke-github").get_data(as_text=True)
    assert "Revoked 1 GitHub token(s) of octocat@example.com." in html
    after = client.get("/github/api/v3/user", headers={"Authorization": f"Bearer {token}"})
    assert (after.status_code, after.json["message"]) == (401, "Bad credentials")


@pytest.mark.parametrize("path", ["ban", "unban", "role", "delete", "sign-out", "revoke-github"])
def test_every_form_needs_its_csrf_token(client, app, user_id, path):
    response = client.post(f"/dashboard/users/{user_id}/{path}", data={"duration": "1h"})
    assert response.status_code == 400
    assert "CSRF token is missing or wrong" in response.get_data(as_text=True)
    assert user_row(app, user_id) is not None and user_row(app, user_id)["banned_until"] is None


def test_every_form_posts_with_a_token(client, user_id):
    for path in (f"/dashboard/users/{user_id}", f"/dashboard/users/{user_id}/delete"):
        html = page(client, path)
        forms = re.findall(r"<form[^>]*>.*?</form>", html, re.S)
        assert forms
        for form in forms:
            if 'method="get"' in form:
                continue
            assert 'method="post"' in form and 'name="csrf_token"' in form


def test_audit_log_page_filters(client, admin, session, user_id):
    client.post("/auth/v1/admin/users", headers=admin, json={"email": "x@example.com"})
    html = page(client, "/dashboard/audit")
    assert "3 entries" in html and "user_signedup" in html and "service_role" in html
    assert f'href="/dashboard/users/{user_id}">octocat@example.com</a>' in html
    only_login = page(client, "/dashboard/audit?action=login")
    assert "1 entry" in only_login and "provider_type: github" in only_login
    assert "2 entries" in page(client, "/dashboard/audit?actor=octocat")
    assert "No entries match." in page(client, "/dashboard/audit?actor=nobody")


def test_audit_filter_offers_only_the_actions_written(client, admin, session):
    client.post("/auth/v1/admin/users", headers=admin, json={"email": "x@example.com"})
    options = re.findall(r'<option value="([a-z_]*)"', page(client, "/dashboard/audit"))
    assert options == ["", "login", "user_signedup"]  # "any action", then what the log holds
    chosen = page(client, "/dashboard/audit?action=invite_accepted")  # known, never written
    assert '<option value="invite_accepted" selected>' in chosen


def test_navigation_links_the_other_pages(client):
    html = page(client)
    assert 'href="/dashboard/audit">Audit log</a>' in html
    assert '<a href="/dashboard" aria-current="page">Users</a>' in html
    assert 'href="/static/emulator.css"' in html


def test_the_service_key_is_never_shown(client, user_id):
    for path in ("/dashboard", f"/dashboard/users/{user_id}", "/dashboard/audit"):
        assert keys.SERVICE_ROLE_KEY not in page(client, path)


def enrol(client, session, name="Phone app"):
    response = client.post("/auth/v1/factors", headers=bearer(session),
                           json={"factor_type": "totp", "friendly_name": name})
    assert response.status_code == 200, response.json
    return response.json["id"]


def test_factors_are_listed_and_removed_after_asking(client, admin, session, user_id):
    factor_id = enrol(client, session)
    html = page(client, f"/dashboard/users/{user_id}")
    assert "Phone app" in html and factor_id in html and "unverified" in html
    confirm = page(client, f"/dashboard/users/{user_id}/factors/{factor_id}/remove")
    assert "Remove the factor “Phone app” of The Octocat?" in confirm
    assert ">Remove factor</button>" in confirm
    html = post(client, f"/dashboard/users/{user_id}/factors/{factor_id}/remove") \
        .get_data(as_text=True)
    assert "Removed the factor Phone app of octocat@example.com." in html
    assert "No factors enrolled." in html
    assert "factors" not in client.get("/auth/v1/user", headers=bearer(session)).json
    latest = client.get("/auth/v1/admin/audit", headers=admin).json[0]
    assert (latest["payload"]["action"], latest["payload"]["actor_id"]) == \
        ("factor_deleted", user_id)
    assert latest["ip_address"] == "127.0.0.1"


def test_removing_an_unknown_factor_is_a_404_page(client, user_id):
    path = f"/dashboard/users/{user_id}/factors/00000000-0000-0000-0000-000000000009/remove"
    assert "no such factor" in page(client, path, 404)
    response = client.post(path, data={"csrf_token": csrf(client)})
    assert response.status_code == 404


def test_the_signing_keys_page_shares_the_dashboard(client):
    html = page(client, "/dashboard/signing-keys")
    assert 'href="/static/emulator.css"' in html and "<style" not in html
    assert '<a href="/dashboard/signing-keys" aria-current="page">Signing keys</a>' in html


def test_the_home_page_links_the_users_and_the_audit_log(client):
    html = page(client, "/")
    assert 'href="/dashboard"' in html and 'href="/dashboard/audit"' in html
    assert "<style" not in html


def test_the_consent_page_uses_the_stylesheet(make_app):
    client = make_app(GITHUB_AUTO_LOGIN=None).test_client()
    html = page(client, "/github/login/oauth/authorize?client_id=emulator-github-client-id"
                        "&state=s&scope=user:email")
    assert 'href="/static/emulator.css"' in html and "<style" not in html


def test_the_emulators_cookie_never_replaces_the_apps_session(client, user_id):
    """Cookies ignore ports: the emulator's must not be called "session" like the app's."""
    response = client.get("/dashboard/signing-keys")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("emulator_session=") and "Path=/;" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    response = client.post(f"/dashboard/users/{user_id}/role",
                           data={"csrf_token": csrf(client), "role": "admin"})
    assert response.headers["Set-Cookie"].startswith("emulator_session=")


# --- another site, another browser -----------------------------------------------------------


def test_a_token_from_another_browser_is_refused(app, client, user_id):
    """The CSRF token is per browser: one read in one browser is worthless in another."""
    token = csrf(client)  # what an attacker's own visit shows them
    victim = app.test_client()
    page(victim, "/dashboard")  # the victim's browser has its own emulator cookie
    response = victim.post(f"/dashboard/users/{user_id}/role",
                           data={"csrf_token": token, "role": "admin"})
    assert response.status_code == 400
    assert "CSRF token is missing or wrong" in response.get_data(as_text=True)
    assert "admin" not in user_row(app, user_id)["app_metadata"]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_a_post_from_another_origin_is_refused(app, client, user_id, origin):
    response = client.post(f"/dashboard/users/{user_id}/role", headers={"Origin": origin},
                           data={"csrf_token": csrf(client), "role": "admin"})
    assert response.status_code == 400
    assert "sent from another site" in response.get_data(as_text=True)
    assert "admin" not in user_row(app, user_id)["app_metadata"]


def test_a_post_from_the_dashboard_itself_goes_through(app, client, user_id):
    response = client.post(f"/dashboard/users/{user_id}/role",
                           headers={"Origin": "http://localhost"},  # the test client's origin
                           data={"csrf_token": csrf(client), "role": "admin"})
    assert response.status_code == 303
    assert "admin" in user_row(app, user_id)["app_metadata"]
