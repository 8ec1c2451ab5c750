"""POST /token's rate limit: burst, refill, keys, shared grants, and bounded memory."""

import threading

import pytest

from emulator import keys
from emulator.ratelimit import BURST, TokenBuckets, forwarded_address
from tests.emulator.emulator_helpers import VERIFIER, auth_code, bearer

API_2024 = {"X-Supabase-Api-Version": "2024-01-01"}
LIMITED_INITIAL = {"code": 429, "error_code": "over_request_rate_limit",
                   "msg": "Request rate limit reached"}
LIMITED_2024 = {"code": "over_request_rate_limit", "message": "Request rate limit reached"}


def refresh(client, headers=None, **kwargs):
    """One cheap /token request (an unknown refresh token: 400 once past the limiter)."""
    return client.post("/auth/v1/token?grant_type=refresh_token",
                       headers={"apikey": keys.ANON_KEY, **(headers or {})},
                       json={"refresh_token": "unknowntoken"}, **kwargs)


def exhaust(client, headers=None, **kwargs) -> None:
    """Use up a bucket: BURST requests pass the limiter, the next one is refused."""
    statuses = [refresh(client, headers, **kwargs).status_code for _ in range(BURST)]
    assert 429 not in statuses
    assert refresh(client, headers, **kwargs).status_code == 429


def drain(client) -> None:
    """Empty a bucket that may already be in use."""
    assert any(limited(refresh(client)) for _ in range(BURST + 1))


def limited(response) -> bool:
    return response.status_code == 429


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


@pytest.mark.parametrize(("headers", "body"), [({}, LIMITED_INITIAL), (API_2024, LIMITED_2024)])
def test_thirty_first_request_is_429_in_the_request_version_shape(client, headers, body):
    answers = [refresh(client, headers) for _ in range(BURST + 1)]
    assert [a.status_code for a in answers[:BURST]] == [400] * BURST
    refused = answers[BURST]
    assert refused.status_code == 429
    assert refused.json == body
    assert refused.headers["x-sb-error-code"] == "over_request_rate_limit"
    assert "Retry-After" not in refused.headers  # the real server sends none


def test_tokens_come_back_at_half_a_second_each(client, clock):
    exhaust(client)
    clock.now += 1.9
    assert limited(refresh(client))
    clock.now += 0.1
    assert not limited(refresh(client))
    assert limited(refresh(client))


def test_a_minute_idle_refills_the_whole_burst(client, clock):
    exhaust(client)
    clock.now += 60
    exhaust(client)


def test_refused_requests_take_nothing(client, clock):
    exhaust(client)
    for _ in range(10):
        assert limited(refresh(client))
    clock.now += 2
    assert not limited(refresh(client))


def test_a_higher_limit_refills_faster(make_app, clock):
    client = make_app(RATE_LIMIT_TOKEN_REFRESH=300).test_client()  # one a second
    exhaust(client)
    clock.now += 1
    assert not limited(refresh(client))


def test_each_address_has_its_own_bucket(client):
    exhaust(client, **from_address("192.0.2.1"))
    assert not limited(refresh(client, **from_address("192.0.2.2")))
    assert limited(refresh(client, **from_address("192.0.2.1")))


def test_every_grant_shares_one_bucket(client, sign_in):
    sessions = [sign_in() for _ in range(10)]
    for session in sessions:
        response = client.post("/auth/v1/token?grant_type=refresh_token",
                               headers={"apikey": keys.ANON_KEY},
                               json={"refresh_token": session["refresh_token"]})
        assert response.status_code == 200
    for grant in ("password", "id_token") * 5:
        response = client.post(f"/auth/v1/token?grant_type={grant}",
                               headers={"apikey": keys.ANON_KEY}, json={})
        assert response.status_code == 400  # counted, then not implemented by the emulator
    assert limited(refresh(client))


@pytest.mark.parametrize("grant", ["", "web3", "client_credentials"])
def test_unsupported_grants_are_refused_before_the_limit_and_not_counted(client, grant):
    exhaust(client)
    response = client.post(f"/auth/v1/token?grant_type={grant}",
                           headers={"apikey": keys.ANON_KEY}, json={})
    assert response.status_code == 400
    assert response.json["msg"] == "unsupported_grant_type"


def test_requests_without_an_api_key_are_not_counted(client):
    for _ in range(BURST + 5):
        assert client.post("/auth/v1/token?grant_type=refresh_token").status_code == 401
    assert not limited(refresh(client))


def test_a_refused_pkce_exchange_leaves_the_code_usable(client, anon, clock):
    code = auth_code(client)
    exhaust(client)
    body = {"auth_code": code, "code_verifier": VERIFIER}
    assert limited(client.post("/auth/v1/token?grant_type=pkce", headers=anon, json=body))
    clock.now += 2
    response = client.post("/auth/v1/token?grant_type=pkce", headers=anon, json=body)
    assert response.status_code == 200, response.json
    assert response.json["access_token"]


def test_get_user_is_not_limited(client, sign_in):
    session = sign_in()
    drain(client)
    for _ in range(BURST * 3):
        assert client.get("/auth/v1/user", headers=bearer(session)).status_code == 200


@pytest.fixture
def header_client(make_app):
    return make_app(RATE_LIMIT_HEADER="X-Client-Key").test_client()


def test_header_value_is_the_key(header_client):
    exhaust(header_client, {"X-Client-Key": "alice"}, **from_address("192.0.2.1"))
    assert limited(refresh(header_client, {"X-Client-Key": "alice"}, **from_address("192.0.2.2")))
    assert not limited(refresh(header_client, {"X-Client-Key": "bob"}))
    assert not limited(refresh(header_client, **from_address("192.0.2.1")))


def test_header_key_is_its_leftmost_value(header_client):
    exhaust(header_client, {"X-Client-Key": "alice"})
    assert limited(refresh(header_client, {"X-Client-Key": " alice , bob"}))


@pytest.mark.parametrize("value", [None, "", " , alice"])
def test_without_a_header_value_the_address_is_the_key(header_client, value):
    headers = {} if value is None else {"X-Client-Key": value}
    exhaust(header_client, headers, **from_address("192.0.2.7"))
    assert limited(refresh(header_client, **from_address("192.0.2.7")))
    assert not limited(refresh(header_client, {"X-Client-Key": "alice"},
                               **from_address("192.0.2.7")))


@pytest.fixture
def sbff_client(make_app):
    return make_app(SB_FORWARDED_FOR=True, RATE_LIMIT_HEADER="X-Client-Key").test_client()


def test_a_valid_sb_forwarded_for_address_wins(sbff_client):
    sbff = {"Sb-Forwarded-For": "203.0.113.5", "X-Client-Key": "alice"}
    exhaust(sbff_client, sbff)
    assert limited(refresh(sbff_client, {"Sb-Forwarded-For": "203.0.113.5, 10.0.0.1"}))
    assert limited(refresh(sbff_client, {"Sb-Forwarded-For": "::ffff:203.0.113.5"}))
    assert not limited(refresh(sbff_client, {"X-Client-Key": "alice"}))
    assert not limited(refresh(sbff_client))


@pytest.mark.parametrize("value", ["not-an-ip", "", ", 203.0.113.5", "203.0.113.500"])
def test_an_invalid_sb_forwarded_for_is_ignored(sbff_client, value):
    exhaust(sbff_client, {"X-Client-Key": "alice"})
    assert limited(refresh(sbff_client, {"Sb-Forwarded-For": value, "X-Client-Key": "alice"}))


def test_sb_forwarded_for_is_ignored_unless_enabled(client):
    exhaust(client, {"Sb-Forwarded-For": "203.0.113.5"})
    assert limited(refresh(client, {"Sb-Forwarded-For": "203.0.113.6"}))


@pytest.mark.parametrize(("value", "address"), [
    ("203.0.113.5", "203.0.113.5"),
    (" 203.0.113.5 , 10.0.0.1", "203.0.113.5"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("::ffff:203.0.113.5", "203.0.113.5"),
    ("fe80::1%eth0", None),
    ("[2001:db8::1]", None),
    ("203.0.113.5:443", None),
    ("unknown", None),
    ("", None),
])
def test_forwarded_address_parses_like_go(value, address):
    assert forwarded_address(value) == address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_idle_until_full_are_forgotten():
    clock = Clock()
    buckets = TokenBuckets(rate=0.5, burst=BURST, clock=clock)
    for number in range(1000):
        buckets.allow(f"key{number}")
    assert len(buckets) == 1000
    clock.now += BURST / 0.5
    buckets.allow("late")
    assert len(buckets) == 1


def test_buckets_are_capped_least_recently_used_first():
    clock = Clock()
    buckets = TokenBuckets(rate=0.5, burst=2, clock=clock, max_keys=3)
    for key in ("a", "b", "c", "a", "d"):
        buckets.allow(key)
    assert len(buckets) == 3
    assert buckets.allow("a") is False  # kept: used recently, and now empty
    assert buckets.allow("b") is True  # forgotten, so full again


def test_a_clock_moved_backwards_refills_nothing():
    clock = Clock()
    buckets = TokenBuckets(rate=0.5, burst=1, clock=clock)
    assert buckets.allow("a")
    clock.now -= 100
    assert not buckets.allow("a")
    clock.now += 2
    assert buckets.allow("a")


def test_concurrent_requests_get_exactly_the_burst():
    buckets = TokenBuckets(rate=0.5, burst=BURST, clock=Clock())
    results = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(20):
            allowed = buckets.allow("shared")
            with lock:
                results.append(allowed)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == BURST


@pytest.mark.parametrize(("rate", "burst", "max_keys"), [(0, 30, 10), (-1, 30, 10),
                                                        (0.5, 0, 10), (0.5, 30, 0)])
def test_bucket_settings_are_checked(rate, burst, max_keys):
    with pytest.raises(ValueError):
        TokenBuckets(rate=rate, burst=burst, clock=Clock(), max_keys=max_keys)
