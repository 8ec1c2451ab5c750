"""How the auth server talks to providers and turns their answers into identity claims.

GitHub is reached in-process when it is the embedded stand-in, else over HTTP like x/oauth2.
The other providers are always the embedded stand-ins, called in-process. The claim shapes
follow the real server's ``internal/api/provider/{github,google,gitlab}.go``.
"""

from typing import Any, NamedTuple

import httpx
from flask import Flask, current_app

from . import github, oauth_stand_in, stand_in

TIMEOUT = 10.0
DEFAULT_SCOPES = {"github": ["user:email"], "google": ["email", "profile"],
                  "gitlab": ["read_user"]}


class ProviderError(Exception):
    """The code exchange or the profile fetch failed."""


class UserData(NamedTuple):
    """What a provider tells the auth server: claims (without email) and the emails."""

    claims: dict[str, Any]
    emails: list[dict[str, Any]]


def compact(claims: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values, as the ``omitempty`` claim fields are dropped."""
    return {key: value for key, value in claims.items() if value not in (None, "", {})}


def github_user_data(profile: Any, emails: Any, api_host: str) -> UserData:
    """GitHub's ``/user`` and ``/user/emails`` as claims (github.go)."""
    if not isinstance(profile, dict) or not isinstance(emails, list) or \
            not all(isinstance(e, dict) for e in emails):
        raise ProviderError("unexpected GitHub JSON")
    sub = str(profile.get("id", ""))
    claims = compact({"iss": api_host, "sub": sub, "name": profile.get("name"),
                      "preferred_username": profile.get("login"),
                      "full_name": profile.get("name"), "avatar_url": profile.get("avatar_url"),
                      "user_name": profile.get("login"), "provider_id": sub})
    listed = [{"email": e["email"], "verified": bool(e.get("verified")),
               "primary": bool(e.get("primary"))} for e in emails if e.get("email")]
    return UserData(claims, listed)


def google_user_data(info: dict[str, Any]) -> UserData:
    """Google's ID-token claims (google.go / oidc.go); ``hd`` goes to custom_claims."""
    verified = bool(info.get("verified_email") or info.get("email_verified"))
    emails = [{"email": info["email"], "verified": verified, "primary": True}] \
        if info.get("email") else []
    claims = compact({"iss": info.get("iss"), "sub": info.get("sub"), "name": info.get("name"),
                      "picture": info.get("picture"),
                      "custom_claims": {"hd": info["hd"]} if info.get("hd") else None,
                      "full_name": info.get("name"), "avatar_url": info.get("picture"),
                      "provider_id": info.get("sub")})
    return UserData(claims, emails)


def gitlab_user_data(user: dict[str, Any], extra_emails: list[dict[str, Any]],
                     host: str) -> UserData:
    """GitLab's ``/user`` (+ ``/user/emails``, never verified) as claims (gitlab.go)."""
    emails = [{"email": e["email"], "verified": False, "primary": False}
              for e in extra_emails if e.get("email")]
    if user.get("email"):
        emails.append({"email": user["email"], "verified": bool(user.get("confirmed_at")),
                       "primary": True})
    sub = str(user.get("id", ""))
    claims = compact({"iss": host, "sub": sub, "name": user.get("name"),
                      "picture": user.get("avatar_url"), "full_name": user.get("name"),
                      "avatar_url": user.get("avatar_url"), "provider_id": sub})
    return UserData(claims, emails)


def oidc_user_data(info: dict[str, Any]) -> UserData:
    """Plain OpenID Connect claims, for the generic stand-in."""
    emails = [{"email": info["email"], "verified": bool(info.get("email_verified")),
               "primary": True}] if info.get("email") else []
    claims = compact({"iss": info.get("iss"), "sub": info.get("sub"), "name": info.get("name"),
                      "preferred_username": info.get("preferred_username"),
                      "picture": info.get("picture"), "full_name": info.get("name"),
                      "avatar_url": info.get("picture"),
                      "user_name": info.get("preferred_username"),
                      "provider_id": info.get("sub")})
    return UserData(claims, emails)


def github_api_host(base: str) -> str:
    """chooseHost: ``<base>/api/v3`` unless the base is api.github.com itself."""
    return base if base.endswith("api.github.com") else base + "/api/v3"


class LocalStandIn:
    """An embedded stand-in, called directly (no HTTP to ourselves, no deadlock)."""

    def __init__(self, name: str, authorize_endpoint: str) -> None:
        self.name = name
        self.authorize_endpoint = authorize_endpoint

    def exchange(self, code: str) -> str:
        """Exchange a code for the provider's access token."""
        app = stand_in.oauth_app(self.name)
        try:
            reply = stand_in.redeem_code(self.name, app.client_id, app.client_secret, code,
                                         app.redirect_uri)
        except stand_in.StandInError as error:
            raise ProviderError(error.error) from error
        return reply["access_token"]

    def user_data(self, token: str) -> UserData:
        """Read the token's user the way the real server reads this provider."""
        account = stand_in.account_for_token(self.name, token)
        if account is None:
            raise ProviderError("Bad credentials")
        if self.name == "github":
            api_host = github_api_host(current_app.config["GITHUB_URL"])
            return github_user_data(github.user_json(account), github.emails_json(account),
                                    api_host)
        profile = oauth_stand_in.profile_json(self.name, account)
        if self.name == "google":
            return google_user_data(profile)
        if self.name == "gitlab":
            return gitlab_user_data(profile, [], oauth_stand_in.issuer(self.name))
        return oidc_user_data(profile)


class HttpGitHub:
    """A GitHub (Enterprise or fake) reached over HTTP, like x/oauth2 does it."""

    name = "github"

    def __init__(self, base_url: str) -> None:
        self.authorize_endpoint = base_url + "/login/oauth/authorize"
        self.token_endpoint = base_url + "/login/oauth/access_token"
        self.api_host = github_api_host(base_url)
        self.client = httpx.Client(timeout=TIMEOUT)

    def exchange(self, code: str) -> str:
        """POST the code; try HTTP Basic first, then credentials in the body."""
        app = stand_in.oauth_app(self.name)
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": app.redirect_uri}
        in_body = {**form, "client_id": app.client_id, "client_secret": app.client_secret}
        try:
            return self.post_token(form, httpx.BasicAuth(app.client_id, app.client_secret))
        except ProviderError:
            return self.post_token(in_body, None)

    def post_token(self, form: dict[str, str], auth: httpx.Auth | None) -> str:
        """One token request; parse a form or JSON answer like x/oauth2."""
        try:
            response = self.client.post(self.token_endpoint, data=form, auth=auth)
        except httpx.HTTPError as error:
            raise ProviderError(str(error)) from error
        return parse_token_response(response)

    def user_data(self, token: str) -> UserData:
        """GET /user and /user/emails with the bearer token."""
        return github_user_data(self.get_json("/user", token),
                                self.get_json("/user/emails", token), self.api_host)

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


def parse_token_response(response: httpx.Response) -> str:
    """x/oauth2's rule: form for x-www-form-urlencoded or text/plain, else JSON."""
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    try:
        if kind in {"application/x-www-form-urlencoded", "text/plain"}:
            body: Any = dict(httpx.QueryParams(response.text))
        else:
            body = response.json()
    except ValueError as error:
        raise ProviderError("bad token response") from error
    if not response.is_success or not isinstance(body, dict) or body.get("error") \
            or not body.get("access_token"):
        raise ProviderError("token exchange failed")
    return body["access_token"]


Client = LocalStandIn | HttpGitHub


def init_app(app: Flask) -> None:
    """Build each enabled provider's client once: GitHub may be remote, the rest are local."""
    config = app.config
    clients: dict[str, Client] = {}
    for name in config["PROVIDERS"]:
        if name != "github":
            clients[name] = LocalStandIn(name, f"{config['PUBLIC_URL']}/{name}/oauth/authorize")
        elif config["GITHUB_URL"] == config["PUBLIC_URL"] + "/github":
            clients[name] = LocalStandIn(name, config["GITHUB_URL"] + "/login/oauth/authorize")
        else:
            clients[name] = HttpGitHub(config["GITHUB_URL"])
    app.extensions["emulator.providers"] = clients


def get_provider(name: str) -> Client:
    """Return an enabled provider's client."""
    return current_app.extensions["emulator.providers"][name]


def close(app: Flask) -> None:
    """Close the HTTP pools the clients opened."""
    for client in app.extensions.get("emulator.providers", {}).values():
        if isinstance(client, HttpGitHub):
            client.close()
