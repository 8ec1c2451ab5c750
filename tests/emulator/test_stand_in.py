"""What every stand-in shares: default accounts, the consent page, avatars, credentials."""

import pytest

from emulator import stand_in

CALLBACK = "http://127.0.0.1:54321/auth/v1/callback"


@pytest.fixture
def app(make_app):
    return make_app(PROVIDERS="github,google,gitlab", GITHUB_AUTO_LOGIN=None)


def test_each_served_stand_in_gets_a_default_account(app):
    rows = app.extensions["emulator.db"].all(
        "SELECT provider, id, login, email FROM stand_in_accounts ORDER BY provider")
    assert [tuple(r) for r in rows] == [
        ("github", 583231, "octocat", "octocat@example.com"),
        ("gitlab", 5832310, "octocat", "octocat+gitlab@example.com"),
        ("google", 104729583231000001, "octocat", "octocat+google@example.com"),
    ]


@pytest.mark.parametrize(("path", "title"), [
    ("/github/login/oauth/authorize", "GitHub"), ("/google/oauth/authorize", "Google"),
    ("/gitlab/oauth/authorize", "GitLab")])
def test_one_consent_page_for_every_provider(client, path, title):
    provider = path.split("/")[1]
    html = client.get(path, query_string={"client_id": client_id(provider),
                                          "redirect_uri": CALLBACK}).get_data(as_text=True)
    assert f"<p>{title} stand-in (local emulator)." in html
    assert ">Authorize</button>" in html and ">Cancel</button>" in html
    assert 'type="radio" name="login" value="octocat" checked' in html


def client_id(provider):
    return "emulator-github-client-id" if provider == "github" else \
        f"emulator-{provider}-client-id"


def test_new_accounts_count_up_per_provider(app):
    with app.app_context(), app.extensions["emulator.db"].transaction() as conn:
        first = stand_in.save_account(conn, "google", {"login": "a"}, 0)
        second = stand_in.save_account(conn, "google", {"login": "b"}, 0)
        github = stand_in.save_account(conn, "github", {"login": "a"}, 0)
    assert (first["id"], second["id"]) == (104729583231100000, 104729583231100001)
    assert github["id"] == 1_000_000


def test_avatar_colours_follow_the_id():
    first = stand_in.avatar_svg({"id": 1, "login": "ann"})
    assert first == stand_in.avatar_svg({"id": 1, "login": "ann"})
    assert first != stand_in.avatar_svg({"id": 2, "login": "ann"})
    assert ">A</text>" in first
    assert ">&lt;</text>" in stand_in.avatar_svg({"id": 3, "login": "<x"})


def test_other_stand_ins_use_fixed_dev_credentials(app):
    with app.app_context():
        google = stand_in.oauth_app("google")
    assert (google.client_id, google.client_secret, google.redirect_uri) == (
        "emulator-google-client-id", "emulator-google-client-secret", CALLBACK)
