"""Emulator-only endpoints for test suites, under /emulator/v1 (no real server has them).

``POST /emulator/v1/reset`` (optional JSON body: a data file to import afterwards),
``GET /emulator/v1/export`` and ``POST /emulator/v1/import``. Each needs the service key:
``Authorization: Bearer <service_role key>`` or ``apikey: <service_role or secret key>``.
"""

import hmac
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request

from . import datafile
from .auth_api import BEARER, bad_json
from .errors import ApiError, json_response
from .tokens import api_key

bp = Blueprint("control_api", __name__, url_prefix="/emulator/v1")


def service_keys() -> list[str]:
    """The keys that may drive the emulator: the service_role JWT and the secret API key."""
    config = current_app.config
    keys = [api_key("service_role", config["JWT_SECRET"])]
    if config.get("SECRET_API_KEY"):
        keys.append(config["SECRET_API_KEY"])
    return keys


@bp.before_request
def require_service_key() -> None:
    """401 without a key, 403 with any key that is not a service key (the anon key too)."""
    match = BEARER.match(request.headers.get("Authorization", ""))
    sent = [key for key in (request.headers.get("apikey"), match and match.group(1)) if key]
    if not sent:
        raise ApiError(401, "no_authorization",
                       "This emulator-only endpoint requires the service_role or secret key")
    if not any(hmac.compare_digest(key.encode(), known.encode())
               for key in sent for known in service_keys()):
        raise ApiError(403, "not_admin", "User not allowed")


def body_data() -> Any:
    """The JSON body (None when empty); 400 bad_json when it is not JSON."""
    if not request.get_data(cache=True).strip():
        return None
    data = request.get_json(silent=True)
    if data is None:
        raise bad_json("the body is not JSON")
    return data


def imported(action: Callable[[Any], dict[str, int]], data: Any) -> Response:
    """Run an import-like action; a file that cannot be imported is 400 validation_failed."""
    try:
        counts = action(data)
    except datafile.DataFileError as error:
        raise ApiError(400, "validation_failed", str(error)) from error
    return json_response({"imported": counts})


@bp.post("/reset")
def reset() -> Response:
    """Forget everything, keep the default stand-in accounts, re-import the seed and the body."""
    return imported(datafile.reset, body_data())


@bp.post("/import")
def import_file() -> Response:
    """Add or replace the users and stand-in accounts of the JSON body (a data file)."""
    data = body_data()
    if data is None:
        raise bad_json("EOF")
    return imported(datafile.import_data, data)


@bp.get("/export")
def export() -> Response:
    """Every user (with identities) and stand-in account as a data file."""
    return json_response(datafile.export_data(current_app.config["CLOCK"]()))
