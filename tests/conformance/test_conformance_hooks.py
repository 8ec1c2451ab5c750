"""The custom access token hook over HTTP: what the server sends, what it signs, how it fails.

Every test here runs against ``hooked_target`` (a server configured to call ``hook_receiver``
on every token it issues); see README.md for running them against a real server.
"""

import time
import uuid

import pyotp
import pytest

from tests.conformance.hook_receiver import Answer, HookReceiver, echo, json_answer
from tests.conformance.support import jwt_parts, query_of, single

REQUIRED = ["aud", "exp", "iat", "sub", "email", "phone", "role", "aal", "session_id",
            "is_anonymous"]
SCHEMA_FAILED = "output claims do not conform to the expected schema: \n"
TIMEOUT_SECONDS = 5  # the real server's hook timeout, retries included


@pytest.fixture(scope="module")
def target(hooked_target):
    """Every fixture of the suite (sign_in, refresh, http, …) talks to the hooked server."""
    return hooked_target


@pytest.fixture(autouse=True)
def hook(hook_receiver: HookReceiver):
    """The receiver, answering unchanged claims and with no calls recorded, for each test."""
    hook_receiver.respond = echo
    hook_receiver.calls.clear()
    yield hook_receiver
    hook_receiver.respond = echo


def with_claims(change):
    """A hook that returns the claims after ``change(claims)`` (which edits them in place)."""

    def respond(payload: dict) -> Answer:
        claims = dict(payload["claims"])
        change(claims)
        return json_answer({"claims": claims})

    return respond


def error_of(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


def test_sign_in_calls_the_hook_with_a_signed_payload(hook, sign_in):
    session = sign_in()
    assert len(hook.calls) == 1
    call = hook.calls[0]
    assert call.signed_by == [True] * len(hook.secrets)  # one signature per secret
    assert uuid.UUID(call.headers["webhook-id"])
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
    assert call.headers["content-type"] == "application/json"
    payload = call.payload
    assert sorted(payload) == ["authentication_method", "claims", "metadata", "user_id"]
    assert payload["authentication_method"] == "oauth"
    assert payload["user_id"] == session["user"]["id"] == payload["claims"]["sub"]
    assert payload["metadata"]["name"] == "customize-access-token"
    assert uuid.UUID(payload["metadata"]["uuid"])
    claims = payload["claims"]
    assert set(REQUIRED) <= set(claims)
    assert claims["aud"] in ("authenticated", ["authenticated"])
    assert claims["session_id"] == jwt_parts(session["access_token"])[1]["session_id"]
    assert claims["app_metadata"] == session["user"]["app_metadata"]


def test_claims_the_hook_adds_or_rewrites_are_signed(hook, sign_in):
    def change(claims):
        claims["user_role"] = "editor"
        claims["app_metadata"] = {**claims["app_metadata"], "role": "editor"}

    hook.respond = with_claims(change)
    session = sign_in()
    claims = jwt_parts(session["access_token"])[1]
    assert claims["user_role"] == "editor"
    assert claims["app_metadata"]["role"] == "editor"
    assert "role" not in session["user"]["app_metadata"]  # the user is unchanged
    assert session["expires_at"] == claims["exp"]


def test_the_claims_are_signed_with_sorted_keys(sign_in):
    """The hook's claims are a Go map when signed, and Go writes a map's keys in order."""
    claims = jwt_parts(sign_in()["access_token"])[1]
    assert list(claims) == sorted(claims)


def test_a_verified_second_factor_runs_the_hook_with_totp(hook, client_sign_in, gotrue):
    client_sign_in()
    factor = gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "Phone"})
    hook.calls.clear()
    gotrue.mfa.challenge_and_verify({"factor_id": factor.id,
                                     "code": pyotp.TOTP(factor.totp.secret).now()})
    assert [call.payload["authentication_method"] for call in hook.calls] == ["totp"]
    assert hook.calls[0].payload["claims"]["aal"] == "aal2"


def test_the_hook_runs_on_every_refresh(hook, sign_in, refresh):
    session = sign_in()
    hook.calls.clear()
    hook.respond = with_claims(lambda claims: claims.update(user_role="viewer"))
    refreshed = refresh(session["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert [call.payload["authentication_method"] for call in hook.calls] == ["token_refresh"]
    assert jwt_parts(refreshed.json()["access_token"])[1]["user_role"] == "viewer"


def test_a_required_claim_removed_fails_the_refresh_and_keeps_the_token(hook, sign_in, refresh):
    session = sign_in()
    hook.respond = with_claims(lambda claims: claims.pop("aal"))
    failed = refresh(session["refresh_token"])
    assert error_of(failed) == (500, "unexpected_failure",
                                SCHEMA_FAILED + "- (root): aal is required\n")
    hook.respond = echo
    assert refresh(session["refresh_token"]).status_code == 200  # nothing was used up


def test_a_claim_of_the_wrong_type_fails(hook, sign_in, refresh):
    session = sign_in()
    hook.respond = with_claims(lambda claims: claims.update(exp="tomorrow"))
    failed = refresh(session["refresh_token"])
    assert error_of(failed) == (500, "unexpected_failure", SCHEMA_FAILED +
                                "- exp: Invalid type. Expected: integer, given: string\n")


def test_a_failed_hook_leaves_the_pkce_code_usable(hook, oauth, oauth_code):
    flow = oauth_code()
    hook.respond = lambda payload: Answer(500)
    assert oauth.exchange(flow.code, flow.verifier).status_code == 500
    hook.respond = echo
    assert oauth.exchange(flow.code, flow.verifier).status_code == 200


LARGE = b'{"claims": {}, "padding": "' + b"x" * (200 * 1024) + b'"}'


@pytest.mark.parametrize(("answer", "expected"), [
    (Answer(500), (500, "unexpected_failure", "Unexpected status code returned from hook: 500")),
    (Answer(404), (500, "unexpected_failure", "Unexpected status code returned from hook: 404")),
    (Answer(400), (500, "unexpected_failure", "Invalid payload sent to hook")),
    (Answer(401), (500, "unexpected_failure", "Hook requires authorization token")),
    (Answer(503), (500, "unexpected_failure", "Service currently unavailable due to hook")),
    (Answer(200, b'{"claims": {}}'),
     (400, "hook_payload_invalid_content_type",
      "Invalid Content-Type: Missing Content-Type header")),
    (Answer(200, b"ok", {"Content-Type": "text/plain"}),
     (400, "hook_payload_invalid_content_type",
      "Invalid JSON response. Received content-type: text/plain")),
    (json_answer({"error": {"http_code": 403, "message": "Not on the list"}}),
     (403, "unknown", "Not on the list")),
    (json_answer({"error": {"message": "Broken"}}), (500, "unexpected_failure", "Broken")),
    (json_answer({}), (500, "unexpected_failure", "output claims field is missing")),
    (Answer(200, b"not json", {"Content-Type": "application/json"}),
     (500, "unexpected_failure", "Error unmarshaling JSON output.")),
    (Answer(204), (500, "unexpected_failure",
                   SCHEMA_FAILED + "- (root): Invalid type. Expected: object, given: null\n")),
    (Answer(200, LARGE, {"Content-Type": "application/json"}),
     (422, "hook_payload_over_size_limit", "Payload size exceeded size limit of 204800 bytes")),
], ids=["500", "404", "400", "401", "503", "no-content-type", "text-plain", "hook-error-403",
        "hook-error-default", "no-claims", "not-json", "204", "too-large"])
def test_a_bad_answer_fails_the_token_request(hook, sign_in, refresh, answer, expected):
    session = sign_in()
    hook.respond = lambda payload: answer
    assert error_of(refresh(session["refresh_token"])) == expected


def test_retry_after_is_retried_three_times_in_all(hook, sign_in, refresh):
    session = sign_in()
    hook.calls.clear()
    hook.respond = lambda payload: Answer(429, headers={"Retry-After": "1"})
    assert error_of(refresh(session["refresh_token"])) == (
        500, "unexpected_failure", "Service currently unavailable due to hook")
    assert len(hook.calls) == 3


def test_a_slow_hook_times_out(hook, sign_in, refresh):
    session = sign_in()

    def slow(payload: dict) -> Answer:
        answer = echo(payload)
        answer.delay = TIMEOUT_SECONDS + 2
        return answer

    hook.respond = slow
    started = time.monotonic()
    assert error_of(refresh(session["refresh_token"])) == (
        422, "hook_timeout", "Failed to reach hook within maximum time of 5.000000 seconds")
    assert time.monotonic() - started < TIMEOUT_SECONDS + 2


def test_an_unreachable_hook_fails_after_retries(hook, sign_in, refresh):
    session = sign_in()
    hook.stop()
    try:
        failed = refresh(session["refresh_token"])
    finally:
        hook.start()
    assert error_of(failed) == (422, "hook_timeout_after_retry",
                                "Failed to reach hook after maximum retries")


def test_a_failed_hook_at_an_implicit_callback_redirects_with_the_error(hook, oauth):
    hook.respond = lambda payload: Answer(500)
    flow = oauth.run(method=None)  # no PKCE: the callback itself issues the tokens
    assert flow.callback.status_code == 302
    params = single(query_of(flow.location))
    assert params["error"] == "server_error"
    # The real server's text of its wrapped error: "<status>: <message>".
    assert params["error_description"] == "500: Unexpected status code returned from hook: 500"
    assert params.get("error_code", "") == ""  # the hook's error has no code
    assert "access_token" not in flow.location
