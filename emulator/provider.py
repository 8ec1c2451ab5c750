"""How the auth server talks to GitHub: in-process to the stand-in, or over HTTP."""

from typing import Any

import httpx
from flask import Flask, current_app

from . import github

TIMEOUT = 10.0


class ProviderError(Exception):
    """The code exchange or the profile fetch failed."""


class LocalGitHub:
    """The embedded stand-in, called directly (no HTTP to ourselves, no deadlock)."""

    def exchange(self, code: str) -> str:
        """Exchange a code for a GitHub access token."""
        config = current_app.config
        try:
            reply = github.redeem_code(config["GITHUB_CLIENT_ID"], config["GITHUB_CLIENT_SECRET"],
                                       code, config["GITHUB_REDIRECT_URI"])
        except github.GitHubError as error:
            raise ProviderError(error.error) from error
        return reply["access_token"]

    def profile(self, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Return (GET /user, GET /user/emails) for a token."""
        account = github.account_for_token(token)
        if account is None:
            raise ProviderError("Bad credentials")
        return github.user_json(account), github.emails_json(account)


class HttpGitHub:
    """A GitHub (Enterprise or fake) reached over HTTP, like x/oauth2 does it."""

    def __init__(self, base_url: str) -> None:
        self.auth_host = base_url
        self.api_host = base_url if base_url.endswith("api.github.com") else base_url + "/api/v3"
        self.client = httpx.Client(timeout=TIMEOUT)

    def exchange(self, code: str) -> str:
        """POST the code; try HTTP Basic first, then credentials in the body."""
        config = current_app.config
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": config["GITHUB_REDIRECT_URI"]}
        basic = httpx.BasicAuth(config["GITHUB_CLIENT_ID"], config["GITHUB_CLIENT_SECRET"])
        in_body = {**form, "client_id": config["GITHUB_CLIENT_ID"],
                   "client_secret": config["GITHUB_CLIENT_SECRET"]}
        try:
            return self.post_token(form, basic)
        except ProviderError:
            return self.post_token(in_body, None)

    def post_token(self, form: dict[str, str], auth: httpx.Auth | None) -> str:
        """One token request; parse form or JSON like x/oauth2."""
        url = self.auth_host + "/login/oauth/access_token"
        try:
            response = self.client.post(url, data=form, auth=auth)
        except httpx.HTTPError as error:
            raise ProviderError(str(error)) from error
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            if kind in {"application/x-www-form-urlencoded", "text/plain"}:
                body = dict(httpx.QueryParams(response.text))
            else:
                body = response.json()
        except ValueError as error:
            raise ProviderError("bad token response") from error
        if not response.is_success or not isinstance(body, dict) or body.get("error") \
                or not body.get("access_token"):
            raise ProviderError("token exchange failed")
        return body["access_token"]

    def profile(self, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """GET /user and /user/emails with the bearer token."""
        return self.get_json("/user", token), self.get_json("/user/emails", token)

    def get_json(self, path: str, token: str) -> Any:
        """GET an API path; any failure is a ProviderError."""
        try:
            response = self.client.get(self.api_host + path,
                                       headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ProviderError(str(error)) from error

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def init_app(app: Flask) -> None:
    """Choose the GitHub client once: in-process for the embedded stand-in."""
    config = app.config
    if config["GITHUB_URL"] == config["PUBLIC_URL"] + "/github":
        app.extensions["emulator.github"] = LocalGitHub()
    else:
        app.extensions["emulator.github"] = HttpGitHub(config["GITHUB_URL"])


def get_github() -> LocalGitHub | HttpGitHub:
    """Return the app's GitHub client."""
    return current_app.extensions["emulator.github"]
