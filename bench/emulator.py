"""``python -m bench.emulator``: what the emulator itself costs, in-process (no sockets).

Times a whole PKCE sign-in (authorize -> GitHub stand-in -> callback -> token exchange) and a
refresh-token rotation through the emulator's WSGI app with Flask's test client, so that the
emulator can be seen not to dominate the app's benchmarks (aim: under 5 ms and 2 ms median).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import statistics
import time
from urllib.parse import parse_qs, urlsplit

from emulator import close_app, create_app, keys

APP_CALLBACK = "http://127.0.0.1:5000/callback"
HEADERS = {"apikey": keys.ANON_KEY}


def sign_in(client) -> dict:
    """One PKCE sign-in; the session JSON."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    response = client.get("/auth/v1/authorize", query_string={
        "provider": "github", "redirect_to": APP_CALLBACK, "code_challenge_method": "s256",
        "code_challenge": challenge.rstrip(b"=").decode()})
    while not response.headers["Location"].startswith(APP_CALLBACK):
        response = client.get(response.headers["Location"])
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    response = client.post("/auth/v1/token?grant_type=pkce", headers=HEADERS,
                           json={"auth_code": code, "code_verifier": verifier})
    assert response.status_code == 200, response.json
    return response.json


def refresh(client, refresh_token: str) -> dict:
    """One refresh-token rotation; the new session JSON."""
    response = client.post("/auth/v1/token?grant_type=refresh_token", headers=HEADERS,
                           json={"refresh_token": refresh_token})
    assert response.status_code == 200, response.json
    return response.json


def median_ms(action, count: int) -> float:
    """Median wall time of ``action()`` in milliseconds, after a short warm-up."""
    for _ in range(min(20, count)):
        action()
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations) * 1000


def main() -> None:
    """Print the medians for ``--count`` sign-ins and refreshes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    # Hundreds of sign-ins and refreshes a second from one test client: lift the /token limit.
    app = create_app({"DATABASE": ":memory:", "GITHUB_AUTO_LOGIN": "bench-user",
                      "RATE_LIMIT_TOKEN_REFRESH": 1_000_000_000})
    try:
        client = app.test_client()
        session = {"refresh_token": sign_in(client)["refresh_token"]}

        def rotate() -> None:
            session["refresh_token"] = refresh(client, session["refresh_token"])["refresh_token"]

        signin_ms = median_ms(lambda: sign_in(client), args.count)
        refresh_ms = median_ms(rotate, args.count)
    finally:
        close_app(app)
    print(f"emulator, in-process, {args.count} each: sign-in round trip median "
          f"{signin_ms:.2f} ms (aim < 5), refresh median {refresh_ms:.2f} ms (aim < 2)")


if __name__ == "__main__":
    main()
