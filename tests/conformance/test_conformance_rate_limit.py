"""POST /token's rate limit: burst 30 per key, 0.5 tokens a second, all grants in one bucket.

Each test keys its requests with fresh values of the rate-limit header (README.md: the server
must run with GOTRUE_RATE_LIMIT_HEADER set to that header), so buckets never carry over.
"""

import secrets
import time

import httpx
import pytest

from tests.conformance.support import RATE_LIMIT_BURST, rate_limit_key

API_2024 = {"X-Supabase-Api-Version": "2024-01-01"}
LIMITED = {
    "initial": {"code": 429, "error_code": "over_request_rate_limit",
                "msg": "Request rate limit reached"},
    "2024-01-01": {"code": "over_request_rate_limit", "message": "Request rate limit reached"},
}
REFILL_WAIT = 2.2  # seconds: a little over one token at 150 requests per 5 minutes
BURST_DEADLINE = 1.5  # seconds the 31 burst requests may take (under REFILL_WAIT's one token)


@pytest.fixture
def token(bare_http: httpx.Client, target):
    """POST /token?grant_type=refresh_token with an unknown token, under a given key.

    The API version is 2024-01-01 unless ``version`` says otherwise ({} for the initial one).
    """

    def run(key: dict[str, str], version: dict[str, str] | None = None) -> httpx.Response:
        headers = {"apikey": target.anon_key, **key, **(API_2024 if version is None else version)}
        return bare_http.post("/token", params={"grant_type": "refresh_token"}, headers=headers,
                         json={"refresh_token": secrets.token_hex(6)})

    return run


def use_up(token, key: dict[str, str]) -> float:
    """Spend the key's whole burst, check the next request is refused; seconds it took."""
    started = time.monotonic()
    statuses = [token(key).status_code for _ in range(RATE_LIMIT_BURST)]
    refused = token(key).status_code
    elapsed = time.monotonic() - started
    assert elapsed < BURST_DEADLINE, f"the burst took {elapsed:.1f} s: too slow to test the limit"
    assert 429 not in statuses
    assert refused == 429
    return elapsed


@pytest.mark.parametrize("version", ["initial", "2024-01-01"])
def test_thirty_requests_pass_and_the_next_is_refused(token, version):
    key = rate_limit_key()
    headers = {} if version == "initial" else API_2024
    started = time.monotonic()
    answers = [token(key, headers) for _ in range(RATE_LIMIT_BURST + 1)]
    assert time.monotonic() - started < BURST_DEADLINE
    assert [a.status_code for a in answers[:RATE_LIMIT_BURST]].count(429) == 0
    refused = answers[RATE_LIMIT_BURST]
    assert refused.status_code == 429
    assert refused.json() == LIMITED[version]
    assert refused.headers.get("x-sb-error-code") == "over_request_rate_limit"


def test_another_key_has_its_own_bucket(token):
    use_up(token, rate_limit_key())
    assert token(rate_limit_key()).status_code != 429


def test_a_token_comes_back_after_two_seconds(token):
    key = rate_limit_key()
    use_up(token, key)
    time.sleep(REFILL_WAIT)
    assert token(key).status_code != 429
    assert token(key).status_code == 429


def test_every_grant_shares_the_bucket(http, oauth, oauth_code, target):
    key = rate_limit_key()
    flow = oauth_code()
    session = http.post("/token", params={"grant_type": "pkce"}, headers=key,
                        json={"auth_code": flow.code, "code_verifier": flow.verifier})
    assert session.status_code == 200, session.text
    rotated = http.post("/token", params={"grant_type": "refresh_token"}, headers=key,
                        json={"refresh_token": session.json()["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    for _ in range(RATE_LIMIT_BURST - 2):
        password = http.post("/token", params={"grant_type": "password"}, headers=key,
                             json={"email": "nobody@example.com", "password": "wrong"})
        assert password.status_code != 429, password.text  # counted, whatever it answers
    refused = http.post("/token", params={"grant_type": "refresh_token"}, headers=key,
                        json={"refresh_token": rotated.json()["refresh_token"]})
    assert refused.status_code == 429


def test_an_unsupported_grant_type_is_refused_before_the_limit(http, token):
    key = rate_limit_key()
    use_up(token, key)
    resp = http.post("/token", params={"grant_type": "client_credentials"}, headers=key,
                     json={})
    assert resp.status_code == 400
    assert resp.json()["message"] == "unsupported_grant_type"


def test_a_refused_pkce_exchange_leaves_the_code_usable(http, oauth_code, token):
    flow = oauth_code()
    body = {"auth_code": flow.code, "code_verifier": flow.verifier}
    key = rate_limit_key()
    use_up(token, key)
    refused = http.post("/token", params={"grant_type": "pkce"}, headers=key, json=body)
    assert refused.status_code == 429
    exchanged = http.post("/token", params={"grant_type": "pkce"}, headers=rate_limit_key(),
                          json=body)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["user"]["identities"][0]["provider"] == "github"


def test_get_user_is_not_limited(http, sign_in, token):
    key = rate_limit_key()
    jwt = sign_in()["access_token"]
    use_up(token, key)
    statuses = {http.get("/user", headers={**key, "Authorization": f"Bearer {jwt}"}).status_code
                for _ in range(40)}
    assert statuses == {200}
