"""role_required: roles the team sets in app_metadata, read from the verified token."""

from __future__ import annotations

import pytest
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from roles import role_required
from tests.helpers import Browser, set_up_authenticator


def user_id_of(client) -> str:
    with client.session_transaction() as stored:
        return decode_jwt(stored[STORAGE_KEY]["access_token"])["payload"]["sub"]


@pytest.fixture
def team_member(make_app, emulator, admin, github_account):
    """A signed-in browser whose role the test sets through the admin API."""
    app = make_app(AUTH_REVALIDATE_SECONDS=0)

    @app.get("/editors")
    @role_required("editor", "admin")
    def editors():
        return "editors only"

    browser = Browser(app.test_client(), emulator.url)
    browser.sign_in(github_account())

    def with_role(role: str | None):
        user_id = user_id_of(browser.client)
        admin.put(f"/admin/users/{user_id}", json={"app_metadata": {"role": role}})
        return browser.client

    yield with_role
    browser.close()


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/admin")
    assert response.status_code == 302
    assert response.headers["Location"] == "/signin?next=/admin"


def test_people_without_the_role_get_a_403_page(team_member):
    response = team_member(None).get("/admin")
    assert response.status_code == 403
    assert "for the site&#39;s team" in response.get_data(as_text=True)


def test_admins_see_the_page_and_the_link_once_at_aal2(team_member):
    client = team_member("admin")
    assert 'href="/admin"' in client.get("/").get_data(as_text=True)
    response = client.get("/admin")  # @aal2_required: set up an authenticator app first
    assert response.headers["Location"] == "/account/two-factor?next=/admin"
    set_up_authenticator(client)
    response = client.get("/admin")
    assert response.status_code == 200
    assert "<strong>admin</strong>" in response.get_data(as_text=True)


@pytest.mark.parametrize("role, status", [("editor", 200), ("admin", 200), ("viewer", 403),
                                          (None, 403)])
def test_any_listed_role_is_enough(team_member, role, status):
    assert team_member(role).get("/editors").status_code == status


def test_a_role_set_only_in_user_metadata_is_ignored(team_member, admin):
    client = team_member(None)
    admin.put(f"/admin/users/{user_id_of(client)}", json={"user_metadata": {"role": "admin"}})
    assert client.get("/admin").status_code == 403
