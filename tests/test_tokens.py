"""TokenVerifier: local ES256/RS256/HS256 checks, the JWKS cache and the claims cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import tokens
from tokens import (
    JWKS_MIN_INTERVAL,
    InvalidToken,
    KeysUnavailable,
    TokenVerifier,
    UnknownSigningKey,
)

ISSUER = "http://127.0.0.1:54321/auth/v1"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key, kid: str, alg: str) -> dict:
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}


class JWKSServer:
    """A JWKS endpoint that counts its fetches and can be switched off."""

    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"keys": self.keys})


def claims(**overrides) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "5b0c5a8e-0000-4000-8000-000000000001", "aud": "authenticated",
            "exp": now + 3600, "iat": now, "role": "authenticated", **overrides}


def sign(key, kid: str | None = "k1", alg: str = "ES256", **overrides) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


@pytest.fixture
def jwks():
    return JWKSServer([public_jwk(EC_KEY, "k1", "ES256"), public_jwk(RSA_KEY, "r1", "RS256")])


@pytest.fixture
def make_verifier(jwks):
    clients = []

    def make(**options) -> TokenVerifier:
        http = httpx.Client(transport=httpx.MockTransport(jwks))
        clients.append(http)
        return TokenVerifier(http=http, jwks_url=JWKS_URL, headers={}, issuer=ISSUER, **options)

    yield make
    for http in clients:
        http.close()


@pytest.mark.parametrize("token_factory", [
    lambda: sign(EC_KEY),
    lambda: sign(RSA_KEY, kid="r1", alg="RS256"),
])
def test_asymmetric_tokens_verify_through_the_jwks(make_verifier, token_factory):
    assert make_verifier().verify(token_factory())["role"] == "authenticated"


def test_verified_claims_are_cached(make_verifier, jwks, monkeypatch):
    verifier = make_verifier()
    token = sign(EC_KEY)
    verifier.verify(token)
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("verified twice"))
    assert verifier.verify(token)["sub"] == claims()["sub"]
    assert jwks.fetches == 1


def test_expired_token_still_yields_claims_for_the_caller_to_refresh(make_verifier):
    token = sign(EC_KEY, exp=int(time.time()) - 10)
    assert make_verifier().verify(token)["exp"] < time.time()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_unknown_kid_refetches_then_accepts_a_rotated_key(make_verifier, jwks):
    clock = Clock()
    verifier = make_verifier(clock=clock, keys_clock=clock)
    verifier.verify(sign(EC_KEY))
    jwks.keys.append(public_jwk(OTHER_EC_KEY, "k2", "ES256"))
    clock.now += JWKS_MIN_INTERVAL
    assert verifier.verify(sign(OTHER_EC_KEY, kid="k2"))["aud"] == "authenticated"
    assert jwks.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(make_verifier, jwks):
    clock = Clock()
    verifier = make_verifier(clock=clock, keys_clock=clock)
    verifier.verify(sign(EC_KEY))
    for n in range(20):  # forged or rotated: either way, no burst of JWKS calls
        with pytest.raises(UnknownSigningKey):
            verifier.verify(sign(OTHER_EC_KEY, kid=f"unknown-{n}"))
    assert jwks.fetches == 1
    clock.now += JWKS_MIN_INTERVAL
    with pytest.raises(UnknownSigningKey):
        verifier.verify(sign(OTHER_EC_KEY, kid="unknown-again"))
    assert jwks.fetches == 2


def test_failed_refetch_keeps_the_last_good_keys(make_verifier, jwks):
    clock = Clock()
    verifier = make_verifier(clock=clock, keys_clock=clock, jwks_ttl=60)
    verifier.verify(sign(EC_KEY, sub="5b0c5a8e-0000-4000-8000-00000000000a"))
    jwks.down = True
    clock.now += 61  # the keys are stale, and the JWKS is down: stale beats nothing
    assert verifier.verify(sign(EC_KEY))["role"] == "authenticated"
    assert jwks.fetches == 2


def test_no_lock_is_held_while_the_jwks_is_fetched(make_verifier, jwks):
    """A request whose key is known is not held up by another request's slow refetch."""
    verifier = make_verifier()
    verifier.verify(sign(EC_KEY, sub="5b0c5a8e-0000-4000-8000-00000000000b"))
    entered, release = threading.Event(), threading.Event()

    def slow_jwks(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(5)
        return httpx.Response(200, json={"keys": jwks.keys})

    verifier._http._transport = httpx.MockTransport(slow_jwks)
    verifier._jwks._tried_at = float("-inf")  # allow the refetch now
    outcome = []

    def verify_rotated() -> None:
        try:
            verifier.verify(sign(OTHER_EC_KEY, kid="rotated"))
        except UnknownSigningKey as error:
            outcome.append(error)

    slow = threading.Thread(target=verify_rotated)
    slow.start()
    try:
        assert entered.wait(5)
        assert verifier.verify(sign(EC_KEY))["role"] == "authenticated"  # while it waits
        assert outcome == []  # the refetch is still under way
    finally:
        release.set()
        slow.join(5)
    assert len(outcome) == 1


def test_claims_handed_out_are_read_only(make_verifier):
    verifier = make_verifier()
    token = sign(EC_KEY, app_metadata={"role": "member", "providers": ["github"]})
    claims = verifier.verify(token)
    with pytest.raises(TypeError):
        claims["app_metadata"]["role"] = "admin"
    with pytest.raises((TypeError, AttributeError)):
        claims["app_metadata"]["providers"].append("gitlab")
    assert verifier.verify(token)["app_metadata"]["role"] == "member"


@pytest.mark.parametrize("token_factory", [
    lambda: sign(OTHER_EC_KEY, kid="k1"),  # right kid, wrong key
    lambda: sign(OTHER_EC_KEY, kid="nope"),  # a kid this project never had
    lambda: sign(EC_KEY, iss="https://other.supabase.co/auth/v1"),
    lambda: sign(EC_KEY, aud="anon"),
    lambda: sign(EC_KEY, sub=None),
    lambda: jwt.encode(claims(), None, algorithm="none"),
    lambda: sign(EC_KEY, kid=None),
    lambda: sign(RSA_KEY, kid="k1", alg="RS256"),  # an RS256 token naming the EC key
    lambda: "not.a.jwt",
    lambda: "",
])
def test_foreign_or_forged_tokens_are_invalid(make_verifier, token_factory):
    with pytest.raises(InvalidToken):
        make_verifier().verify(token_factory())


def hs256_by_hand(payload: dict, secret: bytes) -> str:
    """HS256 signed with any bytes (PyJWT refuses a PEM as an HMAC secret; attackers do not)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT","kid":"k1"}') + "." + part(
        json.dumps(payload).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


@pytest.mark.parametrize("secret", [None, "the-project-secret-0123456789abcdef"])
def test_hs256_token_signed_with_the_public_key_is_refused(make_verifier, secret):
    public_pem = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = hs256_by_hand(claims(), public_pem)
    verifier = make_verifier(jwt_secret=secret)
    if secret is None:  # nothing local can check it: the server is asked (and refuses it)
        assert verifier.verify(token) is None
    else:
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_hs256_with_the_project_secret_verifies(make_verifier):
    secret = "the-project-secret-0123456789abcdef"
    token = jwt.encode(claims(), secret, algorithm="HS256")
    assert make_verifier(jwt_secret=secret).verify(token)["role"] == "authenticated"


def test_hs256_without_a_secret_is_left_to_the_server(make_verifier):
    token = jwt.encode(claims(), "some-secret-only-the-server-knows-123", algorithm="HS256")
    assert make_verifier().verify(token) is None


def test_unreachable_jwks_is_unavailable_not_invalid(make_verifier, jwks):
    jwks.down = True
    with pytest.raises(KeysUnavailable):
        make_verifier().verify(sign(EC_KEY))


def test_claims_cache_is_bounded(make_verifier):
    verifier = make_verifier(max_entries=8)
    for n in range(50):
        verifier.verify(sign(EC_KEY, sub=f"5b0c5a8e-0000-4000-8000-{n:012d}"))
    assert len(verifier._claims) <= 8


def test_claims_cache_is_safe_under_threads(make_verifier):
    verifier = make_verifier(max_entries=16)
    tokens = [sign(EC_KEY, sub=f"5b0c5a8e-0000-4000-8000-{n:012d}") for n in range(64)]
    errors = []

    def churn(offset: int) -> None:
        try:
            for n in range(400):
                token = tokens[(n + offset) % len(tokens)]
                assert verifier.verify(token)["sub"].endswith(f"{(n + offset) % 64:012d}")
                if n % 3 == 0:
                    verifier.forget(token)
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(k * 7,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(verifier._claims) <= 16


# -- keys before they are needed: at start, kept on disk, when Supabase hands a token over ------

class Gate:
    """A stand-in for the process's back-off: open or closed, and what it was told."""

    def __init__(self, open: bool = True) -> None:
        self.open = open
        self.told: list[str] = []

    def ready(self) -> bool:
        return self.open

    def failed(self) -> None:
        self.told.append("failed")

    def succeeded(self) -> None:
        self.told.append("succeeded")

    def release(self) -> None:
        self.told.append("released")


def test_start_fetches_the_keys_before_any_token_needs_them(make_verifier, jwks):
    verifier = make_verifier()
    verifier.start(wait=1)
    assert jwks.fetches == 1
    verifier.verify(sign(EC_KEY))
    assert jwks.fetches == 1


def test_start_with_the_jwks_down_neither_raises_nor_invents_keys(make_verifier, jwks):
    jwks.down = True
    verifier = make_verifier()
    verifier.start(wait=1)
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(EC_KEY))


@pytest.fixture
def saved(tmp_path):
    return tmp_path / "instance" / "jwks.json"


def test_a_fetched_jwks_is_kept_on_disk_owner_only(make_verifier, saved):
    make_verifier(saved_keys=saved).start(wait=1)
    kept = json.loads(saved.read_text())
    assert kept["jwks_url"] == JWKS_URL
    assert sorted(key["kid"] for key in kept["keys"]) == ["k1", "r1"]
    assert all("d" not in key for key in kept["keys"])  # public keys only
    assert saved.stat().st_mode & 0o777 == 0o600
    assert saved.parent.stat().st_mode & 0o777 == 0o700


def test_a_worker_started_while_the_jwks_is_down_verifies_with_the_kept_copy(
        make_verifier, jwks, saved):
    make_verifier(saved_keys=saved).start(wait=1)
    jwks.down = True
    born_in_outage = make_verifier(saved_keys=saved)
    born_in_outage.start(wait=1)
    assert born_in_outage.verify(sign(EC_KEY))["role"] == "authenticated"
    assert born_in_outage.verify(sign(RSA_KEY, kid="r1", alg="RS256"))["aud"] == "authenticated"


def test_the_kept_copy_is_used_only_while_fetching_fails(make_verifier, jwks, saved):
    clock = Clock()
    make_verifier(saved_keys=saved).start(wait=1)
    jwks.down = True
    verifier = make_verifier(saved_keys=saved, clock=clock, keys_clock=clock)
    verifier.start(wait=1)
    verifier.verify(sign(EC_KEY, sub="5b0c5a8e-0000-4000-8000-0000000000c1"))
    jwks.down = False
    jwks.keys = [public_jwk(OTHER_EC_KEY, "k2", "ES256")]  # rotated while it was down
    clock.now += JWKS_MIN_INTERVAL
    assert verifier.verify(sign(OTHER_EC_KEY, kid="k2"))["role"] == "authenticated"
    with pytest.raises(UnknownSigningKey):  # the copy's key is gone from the fetched JWKS
        verifier.verify(sign(EC_KEY, sub="5b0c5a8e-0000-4000-8000-0000000000c2"))
    assert [key["kid"] for key in json.loads(saved.read_text())["keys"]] == ["k2"]


@pytest.mark.parametrize("content", [
    b"not json",
    b'{"keys": []}',  # whose?
    json.dumps({"jwks_url": "https://other.supabase.co/auth/v1/.well-known/jwks.json",
                "keys": [public_jwk(EC_KEY, "k1", "ES256")]}).encode(),
    json.dumps({"jwks_url": JWKS_URL, "keys": [{"kid": "k1", "kty": "nonsense"}]}).encode(),
])
def test_a_kept_copy_that_is_not_this_projects_is_not_used(make_verifier, jwks, saved, content):
    saved.parent.mkdir()
    saved.write_bytes(content)
    jwks.down = True
    verifier = make_verifier(saved_keys=saved)
    verifier.start(wait=1)
    with pytest.raises(KeysUnavailable):
        verifier.verify(sign(EC_KEY))


def test_the_copy_is_written_only_when_the_keys_change(make_verifier, jwks, saved, monkeypatch):
    writes = []
    monkeypatch.setattr(tokens, "write_atomically",
                        lambda path, data: writes.append(data) or path.write_bytes(data))
    for _ in range(3):
        make_verifier(saved_keys=saved).start(wait=1)
    jwks.keys.append(public_jwk(OTHER_EC_KEY, "k2", "ES256"))
    make_verifier(saved_keys=saved).start(wait=1)
    assert len(writes) == 2


def test_an_unwritable_instance_folder_does_not_stop_verification(make_verifier, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    verifier = make_verifier(saved_keys=blocked / "jwks.json")
    verifier.start(wait=1)
    assert verifier.verify(sign(EC_KEY))["role"] == "authenticated"


def test_a_token_supabase_hands_over_brings_its_key_when_it_is_new(make_verifier, jwks):
    clock = Clock()
    verifier = make_verifier(clock=clock, keys_clock=clock)
    verifier.start(wait=1)
    issued = sign(EC_KEY)
    verifier.remember_issued(issued, jwt.decode(issued, options={"verify_signature": False}))
    assert jwks.fetches == 1  # its key was known
    jwks.keys.append(public_jwk(OTHER_EC_KEY, "k2", "ES256"))
    clock.now += JWKS_MIN_INTERVAL
    rotated = sign(OTHER_EC_KEY, kid="k2")
    verifier.remember_issued(rotated, jwt.decode(rotated, options={"verify_signature": False}))
    assert jwks.fetches == 2
    assert verifier.verify(sign(OTHER_EC_KEY, kid="k2", sub="5b0c5a8e-0000-4000-8000-0000000000d1"))


def test_a_worker_that_only_met_handed_over_tokens_has_the_keys(make_verifier, jwks):
    verifier = make_verifier()  # never started (say, the keys were down then)
    issued = sign(EC_KEY)
    verifier.remember_issued(issued, jwt.decode(issued, options={"verify_signature": False}))
    assert jwks.fetches == 1
    jwks.down = True
    assert verifier.verify(sign(EC_KEY, sub="5b0c5a8e-0000-4000-8000-0000000000d2"))


@pytest.mark.parametrize("answer, told", [
    (lambda request: httpx.Response(200, json={"keys": []}), "succeeded"),
    (lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
     "failed"),
    (lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
     "failed"),
    (lambda request: httpx.Response(503, text="down"), "failed"),
    (lambda request: httpx.Response(404, text="no such page"), "released"),
    (lambda request: httpx.Response(200, text="<html>"), "released"),
])
def test_the_gate_hears_whether_supabase_could_be_reached(answer, told):
    gate = Gate()
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        TokenVerifier(http=http, jwks_url=JWKS_URL, headers={}, issuer=ISSUER,
                      gate=gate).start(wait=1)
    assert gate.told == [told]


def test_a_closed_gate_means_no_fetch(make_verifier, jwks, saved):
    make_verifier(saved_keys=saved).start(wait=1)
    verifier = make_verifier(saved_keys=saved, gate=Gate(open=False))
    assert verifier.verify(sign(EC_KEY))["role"] == "authenticated"  # from the kept copy
    assert jwks.fetches == 1
