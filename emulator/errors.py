"""Error shapes of the real server (both API versions), the gateway and chi."""

import datetime
import json
import uuid

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

VERSION_2024 = "2024-01-01"
VERSION_HEADER = "X-Supabase-Api-Version"
UNEXPECTED = "Unexpected failure, please check server logs for more information"


class ApiError(Exception):
    """An HTTP error of the Auth API: status, error code and message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class OAuthError(Exception):
    """An OAuth-style error (``error`` / ``error_description``), e.g. sent by the provider."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    """Serialise a body to compact JSON without going through templates."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def api_version() -> str | None:
    """Return the API version the request selects (§8), or None for the initial one."""
    value = request.headers.get(VERSION_HEADER, "")
    try:
        date = datetime.date.fromisoformat(value)
    except ValueError:
        return None
    return VERSION_2024 if date >= datetime.date(2024, 1, 1) else None


def error_response(error: ApiError) -> Response:
    """Render an ApiError in the shape the request's API version asks for."""
    code = error.error_code or ("unexpected_failure" if error.status >= 500 else "unknown")
    headers = {"x-sb-error-code": code}
    if api_version() == VERSION_2024:
        headers[VERSION_HEADER] = VERSION_2024
        body: dict = {"code": code, "message": error.message}
    else:
        body = {"code": error.status, "error_code": code, "msg": error.message}
        if error.status >= 500:
            body["error_id"] = str(uuid.uuid4())
    return json_response(body, error.status, headers)


def gateway_error(message: str) -> Response:
    """The API gateway's own 401 answer (Kong key-auth)."""
    return json_response({"message": message}, 401)


def chi_not_found(_error: NotFound) -> Response:
    """Unknown route: Go's plain-text 404."""
    return Response("404 page not found\n", 404, mimetype="text/plain")


def chi_method_not_allowed(error: MethodNotAllowed) -> Response:
    """Known route, wrong method: chi's empty 405 with an Allow header."""
    allow = ", ".join(error.valid_methods or [])
    return Response("", 405, headers={"Allow": allow}, mimetype="text/plain")


def too_large(_error: RequestEntityTooLarge) -> Response:
    """Body over the 1 MiB limit."""
    return error_response(ApiError(413, "request_entity_too_large", "Request body too large"))


def unexpected(error: Exception) -> Response:
    """Anything unhandled becomes the real server's 500 JSON, never a traceback."""
    if isinstance(error, HTTPException):
        return error
    current_app.logger.exception("unexpected failure")
    return error_response(ApiError(500, "unexpected_failure", UNEXPECTED))


def init_app(app: Flask) -> None:
    """Register the error handlers on the app."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(NotFound, chi_not_found)
    app.register_error_handler(MethodNotAllowed, chi_method_not_allowed)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(Exception, unexpected)
