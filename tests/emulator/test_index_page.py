"""The home page at /: links and which key to use."""

import html as markup
import re

from emulator import keys


def test_home_page_links_and_keys(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    for link in ('href="/dashboard"', 'href="/dashboard/signing-keys"',
                 'href="/auth/v1/.well-known/jwks.json"'):
        assert link in html
    assert "http://127.0.0.1:54321/auth/v1" in html
    assert "http://127.0.0.1:54321/github" in html
    assert keys.PUBLISHABLE_KEY in html
    assert keys.SECRET_KEY not in html and keys.SERVICE_ROLE_KEY not in html
    assert "--print-env" in html and "trusted backends" in html
    assert "<script" not in html


def test_home_page_lists_every_enabled_stand_in(make_app):
    html = make_app(PROVIDERS="github,gitlab").test_client().get("/").get_data(as_text=True)
    assert "http://127.0.0.1:54321/gitlab" in html
    assert 'href="/stand-ins/github">GitHub</a>' in html
    assert 'href="/stand-ins/gitlab">GitLab</a>' in html


def test_home_page_has_the_dashboards_header_and_navigation(client):
    html = client.get("/").get_data(as_text=True)
    assert '<nav aria-label="Dashboard">' in html
    for link in ('href="/dashboard">Users</a>', 'href="/dashboard/audit">Audit log</a>',
                 'href="/dashboard/signing-keys">Signing keys</a>'):
        assert link in html


def test_stand_in_page_lists_its_accounts(client):
    assert client.post("/github/_accounts", json={
        "login": "ursula", "name": "Ursula", "email": "ursula@example.com",
        "verified": False}).status_code in (200, 201)
    response = client.get("/stand-ins/github")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "GitHub stand-in" in html
    assert "http://127.0.0.1:54321/github/login/oauth/authorize" in html
    assert "<strong>octocat</strong>" in html and "<strong>ursula</strong>" in html
    assert html.count('<span class="badge badge-unconfirmed">unverified</span>') == 1


def test_a_stand_in_that_is_not_served_has_no_page(client):
    assert client.get("/stand-ins/gitlab").status_code == 404


def test_health_link_carries_the_publishable_key(client):
    html = client.get("/").get_data(as_text=True)
    link = markup.unescape(re.search(r'href="(/auth/v1/health\?[^"]*)"', html).group(1))
    assert client.get(link).status_code == 200


def test_other_unknown_paths_stay_go_404s(client):
    assert client.get("/nope").get_data(as_text=True) == "404 page not found\n"
