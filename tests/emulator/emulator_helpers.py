"""Shared helpers for the emulator tests: PKCE values and flow shortcuts."""

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from emulator import keys

VERIFIER = "v" * 43
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(
    b"=").decode()
APP_CALLBACK = "http://127.0.0.1:5000/auth/callback"


def query(location: str) -> dict[str, str]:
    """The query parameters of a Location, one value each."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def authorize(client, **params):
    """GET /authorize with PKCE and the app's callback unless overridden."""
    args = {"provider": "github", "redirect_to": APP_CALLBACK, "code_challenge": CHALLENGE,
            "code_challenge_method": "s256", **params}
    return client.get("/auth/v1/authorize", query_string={k: v for k, v in args.items() if v})


def auth_code(client, **params) -> str:
    """Run authorize → stand-in → callback and return the auth code."""
    location = authorize(client, **params).headers["Location"]
    location = client.get(location).headers["Location"]
    location = client.get(location).headers["Location"]
    return query(location)["code"]


def bearer(session: dict) -> dict[str, str]:
    """Headers for a user request."""
    return {"apikey": keys.ANON_KEY, "Authorization": f"Bearer {session['access_token']}"}


def follow_to_app(client, location: str) -> str:
    """Follow stand-in and callback redirects until the app's URL; return that Location."""
    while not location.startswith("http://127.0.0.1:5000"):
        location = client.get(location).headers["Location"]
    return location


def link(client, session: dict, provider: str = "google", **params) -> str:
    """Ask to link a provider (JSON answer) and run its flow; return the app Location."""
    args = {"provider": provider, "redirect_to": APP_CALLBACK, "code_challenge": CHALLENGE,
            "code_challenge_method": "s256", "skip_http_redirect": "true", **params}
    response = client.get("/auth/v1/user/identities/authorize", query_string=args,
                          headers=bearer(session))
    assert response.status_code == 200, response.json
    return follow_to_app(client, response.json["url"])


def new_session(client, **params) -> dict:
    """Sign in through the whole flow on this client and return the session JSON."""
    response = client.post("/auth/v1/token?grant_type=pkce", headers={"apikey": keys.ANON_KEY},
                           json={"auth_code": auth_code(client, **params),
                                 "code_verifier": VERIFIER})
    assert response.status_code == 200, response.json
    return response.json
