"""classify(): what each failed Supabase call means, from the errors supabase_auth really raises.

Every error here comes out of a real SyncGoTrueClient whose HTTP pool answers through an
httpx.MockTransport, so its type, status, code and __cause__ are what the app's views see.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate

import httpx
import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import (
    AuthApiError,
    AuthRetryableError,
    AuthSessionMissingError,
    AuthUnknownError,
    UserDoesntExist,
)
from supabase_auth.helpers import decode_jwt

import supabase_errors
from supabase_errors import REFRESH_ENDING, SESSION_ENDING, SUPABASE_ERRORS, Failure, classify
from tokens import KeysUnavailable

URL = "https://abcdefghijklmnop.supabase.co/auth/v1"
API_KEY = "sb_publishable_Z9kq3VtX2wLr8JcN4pHs1A_secret-part"
ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY2Nlc3MtdG9rZW4tdW5kZXItdGVzdCJ9.c2lnbmF0dXJl"
REFRESH_TOKEN = "r3fr3shtok3n"
AUTH_CODE = "0b7f0d6e-6a1c-4c55-9d4e-3f0b6f3f2a11"
VERSION_HEADER = {"X-Supabase-Api-Version": "2024-01-01"}
HTML = "<html><head><title>Error</title></head><body><h1>Something went wrong</h1></body></html>"
USER = {"id": "5b0c5a8e-0000-4000-8000-000000000001", "aud": "authenticated",
        "app_metadata": {}, "user_metadata": {}, "created_at": "2024-05-01T10:00:00Z"}


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch):
    """Each test starts as a fresh process would: nothing reported yet."""
    monkeypatch.setattr(supabase_errors, "_reported", set())


def api_error(status: int, code: str, message: str = "Refused") -> httpx.Response:
    """The Auth API's error answer for API version 2024-01-01 (what supabase_auth asks for)."""
    return httpx.Response(status, json={"code": code, "message": message}, headers=VERSION_HEADER)


def legacy_error(status: int, code: str, message: str = "Refused") -> httpx.Response:
    """The same answer in the shape of the initial API version (no version header)."""
    return httpx.Response(status, json={"code": status, "error_code": code, "msg": message})


def refused(exception: type[httpx.TransportError]):
    """An answer that never comes: the transport raises like a real network failure."""
    def fail(request: httpx.Request) -> httpx.Response:
        raise exception("[Errno 111] Connection refused", request=request)
    return fail


def call(answer, action: str = "get_user", seen: list | None = None) -> Exception:
    """The exception a GoTrue client call raises when Supabase sends ``answer``."""
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if callable(answer):
            return answer(request)
        # A fresh copy per call: a Response object is bound to the request it answered.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = SyncGoTrueClient(url=URL, headers={"apikey": API_KEY}, http_client=http,
                              auto_refresh_token=False, persist_session=False, flow_type="pkce")
    calls = {
        "get_user": lambda: client.get_user(ACCESS_TOKEN),
        "refresh": lambda: client.refresh_session(REFRESH_TOKEN),
        "exchange": lambda: client.exchange_code_for_session(
            {"auth_code": AUTH_CODE, "code_verifier": "v" * 43, "redirect_to": ""}),
    }
    with http, pytest.raises(SUPABASE_ERRORS) as raised:
        calls[action]()
    return raised.value


def reports(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == supabase_errors.__name__]


# What the real server sends when a session is over, and from which call.
ENDING_ANSWERS = [
    ("user_banned", 403, "get_user"),
    ("user_banned", 400, "refresh"),
    ("user_not_found", 403, "get_user"),
    ("user_not_found", 404, "get_user"),
    ("session_not_found", 403, "get_user"),
    ("session_expired", 403, "get_user"),
    ("refresh_token_not_found", 400, "refresh"),
    ("refresh_token_already_used", 400, "refresh"),
    ("bad_jwt", 403, "get_user"),
    ("bad_jwt", 400, "get_user"),
]


def test_the_ending_answers_cover_every_session_ending_code():
    assert {code for code, _, _ in ENDING_ANSWERS} == SESSION_ENDING


@pytest.mark.parametrize("shape", [api_error, legacy_error])
@pytest.mark.parametrize(("code", "status", "action"), ENDING_ANSWERS)
def test_session_ending_answers_end_the_session(code, status, action, shape):
    error = call(shape(status, code), action)
    assert classify(error) is Failure.ENDED


@pytest.mark.parametrize("answer", [
    api_error(429, "over_request_rate_limit", "Request rate limit reached"),
    legacy_error(429, "over_request_rate_limit", "Request rate limit reached"),
    httpx.Response(429, json={"message": "API rate limit exceeded"}),  # the gateway's
    httpx.Response(429, html=HTML),
], ids=["json", "legacy-json", "gateway", "html"])
@pytest.mark.parametrize("action", ["get_user", "refresh"])
def test_429_is_rate_limited(answer, action):
    assert classify(call(answer, action)) is Failure.RATE_LIMITED


@pytest.mark.parametrize("answer", [
    api_error(500, "unexpected_failure", "Unexpected failure, please check server logs"),
    legacy_error(500, "unexpected_failure", "Unexpected failure, please check server logs"),
    httpx.Response(500, html=HTML),
    httpx.Response(502, json={"message": "An invalid response was received from the upstream"}),
    httpx.Response(502, html=HTML),
    httpx.Response(503, json={"message": "name resolution failed"}),
    httpx.Response(503, html=HTML),
    httpx.Response(504, json={"message": "The upstream server is timing out"}),
    httpx.Response(504, html=HTML),
    httpx.Response(520, text=""),
    api_error(408, "request_timeout", "Processing this request timed out"),
    api_error(409, "conflict", "Conflict"),
    refused(httpx.ConnectError),
    refused(httpx.ConnectTimeout),
    refused(httpx.ReadTimeout),
    httpx.Response(200, text='{"id": "5b0c5a8e-0000-4000-'),
    httpx.Response(200, json={"id": 42}),
], ids=["500-json", "500-legacy-json", "500-html", "502-json", "502-html", "503-json",
        "503-html", "504-json", "504-html", "520-empty", "408", "409", "connection-refused",
        "connect-timeout", "read-timeout", "200-truncated-json", "200-wrong-shape"])
@pytest.mark.parametrize("action", ["get_user", "refresh"])
def test_no_usable_answer_is_unavailable(answer, action):
    assert classify(call(answer, action)) is Failure.UNAVAILABLE


MISCONFIGURED_ANSWERS = [
    httpx.Response(401, json={"message": "Invalid API key"}),
    httpx.Response(401, json={"message": "No API key found in request"}),
    api_error(400, "validation_failed", "Token audience doesn't match request audience"),
    legacy_error(400, "validation_failed", "Token audience doesn't match request audience"),
    httpx.Response(403, html=HTML),
    httpx.Response(404, text="404 page not found\n"),
    httpx.Response(405, text=""),
    api_error(422, "unexpected_audience", "Unexpected audience"),
    # SUPABASE_URL pointing at a site that redirects elsewhere (e.g. http to https).
    httpx.Response(301, html=HTML, headers={"Location": "https://elsewhere.example/"}),
]
MISCONFIGURED_IDS = ["401-gateway", "401-no-key", "400-validation", "400-legacy-validation",
                     "403-html", "404-text", "405-empty", "422", "301-redirect"]


@pytest.mark.parametrize("answer", MISCONFIGURED_ANSWERS, ids=MISCONFIGURED_IDS)
def test_other_4xx_answers_mean_a_misconfigured_app(answer):
    assert classify(call(answer)) is Failure.MISCONFIGURED


@pytest.mark.parametrize(("answer", "raised"), [
    (api_error(403, "session_not_found"), AuthApiError),
    (httpx.Response(503, html=HTML), AuthRetryableError),
    (refused(httpx.ConnectError), AuthRetryableError),
    (httpx.Response(403, html=HTML), AuthUnknownError),
])
def test_the_answers_above_reach_classify_as_each_kind_of_supabase_auth_error(answer, raised):
    # The cases above would prove less if supabase_auth raised one type for all of them.
    assert type(call(answer)) is raised


@pytest.mark.parametrize(("answer", "expected"), [
    (api_error(403, "user_banned", "User is banned"), "user_banned"),  # also session-ending
    (legacy_error(403, "user_banned", "User is banned"), "user_banned"),
    (api_error(404, "flow_state_not_found", "invalid flow state, no valid flow state found"),
     "flow_state_not_found"),
    (api_error(422, "provider_email_needs_verification", "Unverified email"),
     "provider_email_needs_verification"),
], ids=["user_banned", "legacy-user_banned", "flow_state_not_found",
        "provider_email_needs_verification"])
def test_a_code_the_caller_expects_is_refused(answer, expected):
    error = call(answer, "exchange")
    assert classify(error, expected=frozenset({expected})) is Failure.REFUSED


@pytest.mark.parametrize(("ending", "failure"), [
    (SESSION_ENDING, Failure.MISCONFIGURED),
    (REFRESH_ENDING, Failure.ENDED),
])
@pytest.mark.parametrize("shape", [api_error, legacy_error])
def test_a_refused_refresh_token_ends_the_session_only_when_the_caller_says_so(
        shape, ending, failure):
    error = call(shape(400, "validation_failed", "Refresh token is not valid"), "refresh")
    assert classify(error, ending=ending) is failure


@pytest.mark.parametrize("shape", [api_error, legacy_error])
def test_a_session_ending_code_in_a_5xx_does_not_end_the_session(shape):
    # Only the server's 4xx verdict ends a session; a broken server or proxy never does.
    error = call(shape(500, "session_not_found"))
    assert classify(error) is Failure.UNAVAILABLE


def test_a_refresh_answered_without_a_session_is_unavailable():
    error = call(httpx.Response(200, json=USER), "refresh")
    assert isinstance(error, AuthSessionMissingError)  # raised locally: no HTTP error answer
    assert classify(error) is Failure.UNAVAILABLE


@pytest.mark.parametrize("make", [
    AuthSessionMissingError,
    UserDoesntExist,  # says 404 user_not_found, but no server sent it
    lambda: KeysUnavailable("could not load https://example.supabase.co/jwks.json"),
    lambda: httpx.ConnectError("[Errno 111] Connection refused"),
], ids=["session-missing", "user-doesnt-exist", "keys-unavailable", "httpx-error"])
def test_an_error_raised_without_an_http_answer_is_unavailable(make):
    assert classify(make()) is Failure.UNAVAILABLE


def test_a_locally_rejected_token_is_unavailable():
    with pytest.raises(SUPABASE_ERRORS) as raised:
        decode_jwt("not-a-jwt")
    assert classify(raised.value) is Failure.UNAVAILABLE


@pytest.mark.parametrize("answer", MISCONFIGURED_ANSWERS, ids=MISCONFIGURED_IDS)
def test_a_misconfiguration_is_logged_at_error_naming_the_settings(answer, caplog):
    classify(call(answer))
    [record] = reports(caplog)
    assert record.levelno == logging.ERROR
    assert "SUPABASE_KEY" in record.getMessage()
    assert "SUPABASE_URL" in record.getMessage()
    assert str(answer.status_code) in record.getMessage()


def test_the_same_misconfiguration_is_logged_once_per_process(caplog):
    for _ in range(3):
        classify(call(httpx.Response(401, json={"message": "Invalid API key"})))
    assert len(reports(caplog)) == 1


def test_each_kind_of_misconfiguration_is_logged_once(caplog):
    for answer in [*MISCONFIGURED_ANSWERS, *MISCONFIGURED_ANSWERS]:
        classify(call(answer))
    # 401 without a code, 400 validation_failed, 403, 404, 405, 422 unexpected_audience, 301
    assert len(reports(caplog)) == 7


@pytest.mark.parametrize("answer", [
    api_error(403, "session_not_found"),
    api_error(429, "over_request_rate_limit"),
    httpx.Response(503, html=HTML),
    refused(httpx.ConnectError),
], ids=["ended", "rate-limited", "503", "refused"])
def test_other_failures_are_not_logged_as_misconfiguration(answer, caplog):
    classify(call(answer))
    assert reports(caplog) == []


@pytest.mark.parametrize("answer", MISCONFIGURED_ANSWERS, ids=MISCONFIGURED_IDS)
def test_the_misconfiguration_log_holds_neither_the_key_nor_the_token(answer, caplog):
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []
    classify(call(answer, seen=seen))
    # The secrets did go out with the request; they must not come back in the log.
    assert seen[0].headers["apikey"] == API_KEY
    assert seen[0].headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert reports(caplog)
    assert API_KEY not in caplog.text
    assert ACCESS_TOKEN not in caplog.text
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert ACCESS_TOKEN not in record.getMessage()


# -- out_of_reach(): only what means "nobody can reach Supabase" pauses everyone ---------------

OUT_OF_REACH = [
    (refused(httpx.ConnectError), "refresh"),
    (refused(httpx.ReadTimeout), "get_user"),
    (refused(httpx.ConnectTimeout), "refresh"),
    (httpx.Response(502, text=HTML), "refresh"),
    (httpx.Response(503, text="no healthy upstream"), "refresh"),
    (httpx.Response(504, text=HTML), "get_user"),
    (api_error(500, "unexpected_failure"), "get_user"),  # GET /user: nobody's session decides
]
ONE_SESSIONS_ANSWER = [
    (api_error(429, "over_request_rate_limit"), "refresh"),
    (legacy_error(429, "over_request_rate_limit"), "refresh"),
    (api_error(400, "refresh_token_already_used"), "refresh"),
    (api_error(403, "user_banned"), "get_user"),
    (api_error(500, "unexpected_failure"), "refresh"),  # may be this session's alone
    (httpx.Response(401, json={"message": "Invalid API key"}), "refresh"),
    (httpx.Response(200, text="<html>"), "refresh"),
]


@pytest.mark.parametrize("answer, action", OUT_OF_REACH)
def test_no_answer_a_gateway_failure_or_a_user_5xx_is_out_of_reach(answer, action):
    assert supabase_errors.out_of_reach(call(answer, action), server_errors=action == "get_user")


@pytest.mark.parametrize("answer, action", ONE_SESSIONS_ANSWER)
def test_an_answer_about_one_session_is_not_out_of_reach(answer, action):
    assert not supabase_errors.out_of_reach(call(answer, action),
                                            server_errors=action == "get_user")


def test_a_jwks_fetch_that_never_answered_is_out_of_reach():
    request = httpx.Request("GET", f"{URL}/.well-known/jwks.json")
    assert supabase_errors.out_of_reach(httpx.ConnectError("refused", request=request))
    assert not supabase_errors.out_of_reach(KeysUnavailable("no keys"))


# -- retry_after(): what the 429 page's Retry-After says --------------------------------------

def limited(headers: dict | None = None) -> Exception:
    return call(httpx.Response(429, json={"code": "over_request_rate_limit",
                                          "message": "Request rate limit reached"},
                               headers={**VERSION_HEADER, **(headers or {})}), "refresh")


@pytest.mark.parametrize("headers, seconds", [
    ({}, 2),  # the real server sends nothing: one more call comes every 2 s at hosted defaults
    ({"Retry-After": "9"}, 9),
    ({"Retry-After": "0"}, 1),
    ({"Retry-After": "86400"}, supabase_errors.LONGEST_RETRY_AFTER),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1),  # a date gone by
    ({"Retry-After": "-5"}, 2),
    ({"Retry-After": "later"}, 2),
    ({"RateLimit-Reset": "17"}, 17),
    ({"Retry-After": "4", "RateLimit-Reset": "17"}, 4),
])
def test_retry_after_follows_what_supabase_said_else_the_limiters_pace(headers, seconds):
    assert supabase_errors.retry_after(limited(headers)) == seconds


def test_retry_after_reads_an_http_date():
    when = formatdate(time.time() + 30, usegmt=True)
    assert 28 <= supabase_errors.retry_after(limited({"Retry-After": when})) <= 31


def test_retry_after_of_another_limiter_uses_its_pace():
    assert supabase_errors.retry_after(limited(), refill_seconds=4) == 4
