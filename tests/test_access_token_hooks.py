"""The app with a custom access token hook in the project: checks stay checks, roles from claims.

The emulator runs the hook on every token it issues (sign-in and each refresh), once with a
hook that adds a ``user_role`` claim and once with one that rewrites ``app_metadata`` in the
token. Either way the token differs from what GET /user says about the person, which must not
turn every periodic check into a refresh.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY
from supabase_auth.helpers import decode_jwt

from roles import role_required
from tests.helpers import SITE_URL, move_app_clock
from tests.test_sessions import REFRESH, Network

REVALIDATE = 60


def project_role(app_metadata: dict) -> str:
    """The hook's own lookup (a table in a real project): the docs team are editors."""
    return "editor" if app_metadata.get("team") == "docs" else "member"


def add_user_role(claims: dict) -> None:
    claims["user_role"] = project_role(claims["app_metadata"])


def rewrite_app_metadata(claims: dict) -> None:
    app_metadata = claims["app_metadata"]
    claims["app_metadata"] = {**app_metadata, "role": project_role(app_metadata),
                              "hooked": True}


HOOKS = {"user_role": add_user_role, "app_metadata": rewrite_app_metadata}
ROLE_CLAIM = {"user_role": "user_role", "app_metadata": "app_metadata.role"}


FAILING: dict[str, httpx.Response] = {}  # a test puts an "answer" here to make the hook fail


def hook_transport(change) -> httpx.MockTransport:
    """The hook's endpoint: the claims it was sent, changed (or the failure a test set)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if "answer" in FAILING:
            return FAILING["answer"]
        claims = json.loads(request.content)["claims"]
        change(claims)
        return httpx.Response(200, json={"claims": claims})

    return httpx.MockTransport(handle)


@pytest.fixture(scope="module", params=sorted(HOOKS))
def hook(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def emulator(hook):
    """An emulator whose project has the custom access token hook on (overrides conftest's)."""
    from emulator.serve import start_background

    secret = "v1,whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    running = start_background({
        "DATABASE": ":memory:", "SITE_URL": SITE_URL, "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000,
        "HOOK_CUSTOM_ACCESS_TOKEN_ENABLED": True,
        "HOOK_CUSTOM_ACCESS_TOKEN_URI": "http://127.0.0.1/hooks/custom-access-token",
        "HOOK_CUSTOM_ACCESS_TOKEN_SECRETS": secret, "HOOK_TRANSPORT": hook_transport(HOOKS[hook]),
    })
    yield running
    running.stop()


@pytest.fixture
def network():
    recorded = Network()
    yield recorded
    recorded.close()


@pytest.fixture
def app(make_app, network, hook):
    app = make_app(SUPABASE_TRANSPORT=network, AUTH_REVALIDATE_SECONDS=REVALIDATE,
                   AUTH_PROVIDERS="github", AUTH_ROLE_CLAIM=ROLE_CLAIM[hook])

    @app.get("/editors")
    @role_required("editor")
    def editors():
        return "editors only"

    return app


def claims_of(client) -> dict:
    with client.session_transaction() as stored:
        return decode_jwt(stored[STORAGE_KEY]["access_token"])["payload"]


def user_id_of(client) -> str:
    return claims_of(client)["sub"]


def test_the_hooks_claims_are_in_the_token(client, signed_in, hook):
    client.get("/")
    claims = claims_of(client)
    role = claims["user_role"] if hook == "user_role" else claims["app_metadata"]["role"]
    assert role == "member"


def test_each_check_is_one_user_call_not_a_refresh(client, signed_in, network, monkeypatch):
    client.get("/")
    network.calls.clear()
    for window in range(1, 4):
        move_app_clock(monkeypatch, window * (REVALIDATE + 1))
        assert "Hello," in client.get("/").get_data(as_text=True)
    assert network.names() == ["user", "user", "user"]


def test_a_change_in_supabase_costs_one_refresh_then_checks_again(
        client, signed_in, network, admin, monkeypatch):
    client.get("/")
    admin.put(f"/admin/users/{user_id_of(client)}", json={"app_metadata": {"team": "docs"}})
    network.calls.clear()
    move_app_clock(monkeypatch, REVALIDATE + 1)
    client.get("/")
    assert network.names() == ["user", REFRESH]
    network.calls.clear()
    move_app_clock(monkeypatch, 2 * (REVALIDATE + 1))  # counted from the refreshed token
    client.get("/")
    assert network.names() == ["user"]


def test_role_required_reads_the_claim_the_hook_gives(client, signed_in, admin, monkeypatch):
    assert client.get("/editors").status_code == 403
    admin.put(f"/admin/users/{user_id_of(client)}", json={"app_metadata": {"team": "docs"}})
    move_app_clock(monkeypatch, REVALIDATE + 1)
    response = client.get("/editors")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "editors only"


def test_a_cookie_from_before_the_digest_refreshes_at_most_once(
        client, signed_in, network, monkeypatch, hook):
    client.get("/")
    with client.session_transaction() as stored:
        tokens = dict(stored[STORAGE_KEY])
        del tokens["app_metadata_digest"]
        stored[STORAGE_KEY] = tokens
    network.calls.clear()
    for window in range(1, 3):
        move_app_clock(monkeypatch, window * (REVALIDATE + 1))
        client.get("/")
    # The old rule compares /user with the token: a hook that rewrites app_metadata makes
    # it differ once; the refresh stores the digest and the next check is a check again.
    once = [REFRESH] if hook == "app_metadata" else []
    assert network.names() == ["user", *once, "user"]


def sign_in_while_the_hook_answers(answer: httpx.Response, browser, account):
    """Sign in while the hook gives ``answer`` instead of claims; the app's response."""
    FAILING["answer"] = answer
    try:
        return browser.sign_in(account)
    finally:
        FAILING.clear()


@pytest.mark.parametrize("answer", [
    httpx.Response(500),
    httpx.Response(200, json={"claims": {"sub": "only"}}),
], ids=["hook-500", "claims-missing"])
def test_a_failing_hook_at_sign_in_is_a_page_and_try_again_works_once_it_answers(
        client, browser, github_account, answer):
    response = sign_in_while_the_hook_answers(answer, browser, github_account())
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "Please try again in a moment." in page
    retry = re.search(r'href="(/callback\?[^"]+)">Try again', page)
    assert retry  # Supabase kept the code: the failed exchange was rolled back
    assert client.get(html.unescape(retry.group(1))).status_code in (302, 303)
    assert "Hello," in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("http_code", [400, 403])
def test_a_hook_that_refuses_the_person_says_so(client, browser, github_account, http_code):
    """Not "could not reach the sign-in service": the project's own rule said no."""
    refusal = httpx.Response(200, json={"error": {
        "http_code": http_code, "message": "Only <staff> may sign in here"}})
    response = sign_in_while_the_hook_answers(refusal, browser, github_account())
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "sign-in rules do not let this account in: Only &lt;staff&gt; may sign in" in page
    assert 'href="/callback' not in page  # no retrying the same refusal
    assert "Hello," not in client.get("/").get_data(as_text=True)
