"""The custom access token hook over HTTP, called as the real server calls it.

Settings ``EMULATOR_HOOK_CUSTOM_ACCESS_TOKEN_*`` mean what ``GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN_*``
mean: ``ENABLED``, ``URI`` (https, or http on a loopback name only) and ``SECRETS`` (Standard
Webhooks secrets ``v1,whsec_<base64>``, several separated by ``|``; each request carries one
signature per secret). The hook gets ``{"metadata", "user_id", "claims",
"authentication_method"}`` and answers ``{"claims": {...}}``; those claims are signed once they
pass the real server's minimum schema. Every failure is an API error with the real server's
status, code and message (``internal/hooks/hookshttp``, ``hookserrors``, ``v0hooks``,
``internal/tokens/service.go``).
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from .errors import ApiError

NAME = "customize-access-token"
TIMEOUT = 5.0  # seconds for the whole call, retries included
RETRIES = 3
BACKOFF = 2.0  # seconds between attempts after a connection error
RESPONSE_LIMIT = 200 * 1024
# http:// only for these host names (ValidateExtensibilityPoint).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "host.docker.internal"})
SECRET_FORMAT = re.compile(r"v1,whsec_[A-Za-z0-9+/=]{32,88}")
PREFIX = "HOOK_CUSTOM_ACCESS_TOKEN_"
# MinimumViableTokenSchema: the claims a hook must keep, and the types it must keep them in.
REQUIRED = ("aud", "exp", "iat", "sub", "email", "phone", "role", "aal", "session_id",
            "is_anonymous")
TYPES: dict[str, tuple[str, ...]] = {
    "aud": ("string", "array"), "exp": ("integer",), "jti": ("string",), "iat": ("integer",),
    "iss": ("string",), "nbf": ("integer",), "sub": ("string",), "email": ("string",),
    "phone": ("string",), "app_metadata": ("object",), "user_metadata": ("object",),
    "role": ("string",), "aal": ("string",), "amr": ("array",), "session_id": ("string",),
    "client_id": ("string",),
}
SCHEMA_FAILED = "output claims do not conform to the expected schema: \n"


def check_config(config: dict[str, Any]) -> None:
    """Refuse at start what the real server refuses (and what it would only fail on later)."""
    if not config[PREFIX + "ENABLED"]:
        return
    uri = (config[PREFIX + "URI"] or "").strip()
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{PREFIX}URI must be an https:// URL (or http:// on localhost) when "
                         f"{PREFIX}ENABLED is on; the emulator has no Postgres for pg-functions "
                         f"hooks, not {uri!r}")
    if parts.scheme.lower() == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"{PREFIX}URI: only localhost, 127.0.0.1, and ::1 are supported with "
                         f"http, not {parts.hostname!r}")
    secrets = [part for part in (config[PREFIX + "SECRETS"] or "").split("|") if part]
    if not secrets:
        raise ValueError(f"{PREFIX}SECRETS is required: one or more v1,whsec_<base64> secrets, "
                         "separated by |")
    for secret in secrets:
        if not SECRET_FORMAT.match(secret) or not _decodes(secret):
            raise ValueError(f"{PREFIX}SECRETS: invalid secret format; each must be "
                             "v1,whsec_ followed by 32 to 88 characters of standard base64")
    config[PREFIX + "URI"] = uri


def _decodes(secret: str) -> bool:
    """Go's base64.StdEncoding is strict (padding included) where Python's default is not."""
    try:
        return bool(base64.b64decode(secret.removeprefix("v1,whsec_"), validate=True))
    except ValueError:
        return False


class CustomAccessTokenHook:
    """Calls the configured hook with the claims of each token about to be issued."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.uri: str = config[PREFIX + "URI"]
        self.webhooks = [Webhook(secret.removeprefix("v1,"))
                         for secret in config[PREFIX + "SECRETS"].split("|") if secret]
        self.http = httpx.Client(transport=config.get("HOOK_TRANSPORT"), timeout=TIMEOUT,
                                 follow_redirects=False)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def customize(self, claims: dict[str, Any], method: str, ip_address: str) -> dict[str, Any]:
        """The claims the hook returns for a token, checked; raises ApiError on any failure."""
        payload = {
            "metadata": {"uuid": str(uuid.uuid4()),
                         "time": datetime.datetime.now(datetime.UTC).isoformat()
                         .replace("+00:00", "Z"),
                         "name": NAME, **({"ip_address": ip_address} if ip_address else {})},
            "user_id": claims["sub"],
            "claims": claims,
            "authentication_method": method,
        }
        body = self._call(json.dumps(payload, separators=(",", ":")))
        return check_claims(parse_output(body))

    def _call(self, payload: str) -> bytes | None:
        """POST the payload as hookshttp does: signed, retried, bounded by one deadline."""
        deadline = time.monotonic() + TIMEOUT
        for attempt in range(RETRIES):
            try:
                outcome = self._attempt(payload, deadline)
            except httpx.TimeoutException:
                raise _timed_out() from None
            except httpx.TransportError:
                if attempt == RETRIES - 1:
                    raise ApiError(422, "hook_timeout_after_retry",
                                   "Failed to reach hook after maximum retries") from None
                if time.monotonic() + BACKOFF >= deadline:
                    time.sleep(max(deadline - time.monotonic(), 0))
                    raise _timed_out() from None
                time.sleep(BACKOFF)
                continue
            if outcome is not RETRY:
                return outcome
        raise ApiError(500, "", "Service currently unavailable due to hook")

    def _attempt(self, payload: str, deadline: float) -> bytes | None | object:
        msg_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.UTC)
        signatures = ", ".join(webhook.sign(msg_id, now, payload) for webhook in self.webhooks)
        headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signatures, "Accept-Encoding": "identity"}
        timeout = max(deadline - time.monotonic(), 0.001)
        with self.http.stream("POST", self.uri, content=payload, headers=headers,
                              timeout=timeout) as response:
            return _answer(response)


RETRY = object()  # a 429 or 503 with Retry-After: try again at once


def _answer(response: httpx.Response) -> bytes | None | object:
    status = response.status_code
    if status == 204:
        return None
    if status in (200, 202):
        _check_content_type(response.headers.get("Content-Type", ""))
        return _read_limited(response)
    if status in (429, 503):
        if response.headers.get("retry-after"):
            return RETRY
        raise ApiError(500, "", "Service currently unavailable due to hook")
    messages = {400: "Invalid payload sent to hook", 401: "Hook requires authorization token"}
    raise ApiError(500, "", messages.get(
        status, f"Unexpected status code returned from hook: {status}"))


def _check_content_type(value: str) -> None:
    if not value:
        raise ApiError(400, "hook_payload_invalid_content_type",
                       "Invalid Content-Type: Missing Content-Type header")
    media_type = value.split(";", 1)[0].strip().lower()
    if not media_type:
        raise ApiError(400, "hook_payload_invalid_content_type",
                       "Invalid Content-Type header: mime: no media type")
    if media_type != "application/json":
        raise ApiError(400, "hook_payload_invalid_content_type",
                       f"Invalid JSON response. Received content-type: {value}")


def _read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > RESPONSE_LIMIT:
            raise ApiError(422, "hook_payload_over_size_limit",
                           f"Payload size exceeded size limit of {RESPONSE_LIMIT} bytes")
    return bytes(body)


def _timed_out() -> ApiError:
    return ApiError(422, "hook_timeout",
                    f"Failed to reach hook within maximum time of {TIMEOUT:f} seconds")


def parse_output(body: bytes | None) -> Any:
    """The claims of the hook's answer (None for no answer); a hook error becomes an ApiError."""
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(500, "", "Error unmarshaling JSON output.") from None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and _is_hook_error(error):
            status = error.get("http_code") or 500
            raise ApiError(status if 100 <= status <= 599 else 500, "", error["message"])
    if not isinstance(data, dict):
        raise ApiError(500, "", "Error unmarshaling JSON output.")
    if "claims" not in data:
        raise ApiError(500, "", "output claims field is missing")
    claims = data["claims"]
    if claims is not None and not isinstance(claims, dict):
        raise ApiError(500, "", "Error unmarshaling JSON output.")
    return claims


def _is_hook_error(error: dict) -> bool:
    """hookserrors.Check: an error object with a message (and a whole-number http_code)."""
    message, code = error.get("message"), error.get("http_code", 0)
    return (isinstance(message, str) and bool(message) and isinstance(code, int)
            and not isinstance(code, bool))


def check_claims(claims: Any) -> dict[str, Any]:
    """validateTokenClaims: the minimum schema, with gojsonschema's wording for what fails."""
    if not isinstance(claims, dict):
        problems = [f"(root): Invalid type. Expected: object, given: {_type_name(claims)}"]
    else:
        problems = [f"(root): {name} is required" for name in REQUIRED if name not in claims]
        for name, allowed in TYPES.items():
            if name in claims and not any(_is(claims[name], kind) for kind in allowed):
                expected = allowed[0] if len(allowed) == 1 else "[" + ",".join(allowed) + "]"
                problems.append(f"{name}: Invalid type. Expected: {expected}, "
                                f"given: {_type_name(claims[name])}")
        amr = claims.get("amr")
        if isinstance(amr, list):
            problems += [f"amr.{index}: Must validate at least one schema (anyOf)"
                         for index, item in enumerate(amr) if not isinstance(item, str | dict)]
    if problems:
        raise ApiError(500, "", SCHEMA_FAILED + "".join(f"- {line}\n" for line in problems))
    return claims


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and float(value).is_integer())
    return _type_name(value) == kind or (kind == "number" and _type_name(value) == "integer")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
