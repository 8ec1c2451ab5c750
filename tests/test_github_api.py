"""github_api: the profile through GitHub's REST API, and what each failure means."""

from __future__ import annotations

import httpx
import pytest

from github_api import GitHubProfile, GitHubTokenRejected, GitHubUnavailable, fetch_profile

USER = {"login": "mona", "name": "Mona Lisa", "html_url": "https://github.com/mona",
        "avatar_url": "https://avatars.example/1", "public_repos": 7, "followers": 3}


def fetch(handler) -> GitHubProfile:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return fetch_profile(http, "https://api.github.test/", "gho_token")


def test_reads_the_profile_with_the_token():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(url=str(request.url), auth=request.headers["Authorization"])
        return httpx.Response(200, json=USER)

    profile = fetch(handler)
    assert profile == GitHubProfile(login="mona", name="Mona Lisa",
                                    html_url="https://github.com/mona",
                                    avatar_url="https://avatars.example/1",
                                    public_repos=7, followers=3)
    assert seen == {"url": "https://api.github.test/user", "auth": "Bearer gho_token"}


def test_a_revoked_token_is_rejected():
    with pytest.raises(GitHubTokenRejected):
        fetch(lambda request: httpx.Response(401, json={"message": "Bad credentials"}))


@pytest.mark.parametrize("handler", [
    lambda request: httpx.Response(500, text="oops"),
    lambda request: httpx.Response(200, text="<html>not json"),
    lambda request: httpx.Response(200, json={"login": "mona"}),
    lambda request: httpx.Response(200, json=["not", "an", "object"]),
])
def test_unexpected_answers_are_unavailable(handler):
    with pytest.raises(GitHubUnavailable):
        fetch(handler)


def test_network_failure_is_unavailable():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GitHubUnavailable):
        fetch(refuse)
