"""The signed-in person's GitHub profile, read with the provider token Supabase handed over."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubTokenRejected(Exception):
    """GitHub no longer accepts the token (revoked, or the OAuth app was removed)."""


class GitHubUnavailable(Exception):
    """GitHub could not be reached or answered with something unexpected."""


@dataclass(frozen=True)
class GitHubProfile:
    """The parts of GET /user that the account page shows."""

    login: str
    name: str | None
    html_url: str
    avatar_url: str | None
    public_repos: int
    followers: int


def fetch_profile(http: httpx.Client, api_url: str, token: str) -> GitHubProfile:
    """GET {api_url}/user with the person's token."""
    try:
        response = http.get(f"{api_url.rstrip('/')}/user",
                            headers={**GITHUB_HEADERS, "Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        raise GitHubUnavailable(type(error).__name__) from error
    if response.status_code == 401:
        raise GitHubTokenRejected()
    try:
        response.raise_for_status()
        return _profile(response.json())
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise GitHubUnavailable(f"unexpected answer ({response.status_code})") from error


def _profile(data: dict) -> GitHubProfile:
    return GitHubProfile(
        login=str(data["login"]),
        name=data.get("name") if isinstance(data.get("name"), str) else None,
        html_url=str(data["html_url"]),
        avatar_url=data.get("avatar_url") if isinstance(data.get("avatar_url"), str) else None,
        public_repos=int(data["public_repos"]),
        followers=int(data.get("followers") or 0),
    )
