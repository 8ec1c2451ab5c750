"""Emulator-only admin endpoints for signing keys, under /auth/v1/admin/signing-keys.

The real Auth server has no such routes: a hosted project rotates and revokes in the dashboard
or through the Management API (``/v1/projects/{ref}/config/auth/signing-keys``), whose key
objects these answers copy (``id``, ``algorithm``, ``status``, ``public_jwk``, timestamps).
They need service-role credentials, like the rest of the admin API.
"""

from typing import Any

from flask import Blueprint, Response, current_app

from . import users
from .admin_api import require_admin
from .errors import ApiError, json_response
from .signing_keys import SigningKey, SigningKeyError, SigningKeys, UnknownSigningKey

bp = Blueprint("signing_keys_api", __name__, url_prefix="/auth/v1/admin/signing-keys")
bp.before_request(require_admin)


def keyring() -> SigningKeys:
    """The app's signing keys."""
    return current_app.extensions["emulator.signing_keys"]


def key_json(key: SigningKey) -> dict[str, Any]:
    """A key as the Management API shows it (kid as ``id``, no private material)."""
    return {"id": key.kid, "algorithm": key.alg, "status": key.state,
            "public_jwk": key.public_jwk(), "created_at": users.timestamp(key.created_at),
            "updated_at": users.timestamp(key.updated_at)}


def listing() -> Response:
    """Every key, current first."""
    return json_response({"keys": [key_json(key) for key in keyring().all()]})


@bp.get("")
def list_keys() -> Response:
    """Every signing key with its state."""
    return listing()


@bp.post("/rotate")
def rotate() -> Response:
    """Standby → current, current → previously used, a new standby; answer the new list."""
    keyring().rotate()
    return listing()


@bp.post("/<kid>/revoke")
def revoke(kid: str) -> Response:
    """Previously used → revoked (404 for an unknown kid, 422 from any other state)."""
    try:
        key = keyring().revoke(kid)
    except UnknownSigningKey as error:
        raise ApiError(404, "not_found", str(error)) from error
    except SigningKeyError as error:
        raise ApiError(422, "validation_failed", str(error)) from error
    return json_response(key_json(key))
