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
