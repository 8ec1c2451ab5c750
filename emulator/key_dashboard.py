"""The dashboard's signing-keys page: list the keys, rotate, revoke a previously used key (after
asking, on a page of its own, like the dashboard's other actions that cannot be undone)."""

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, url_for

from . import dashboard, users
from .forms import check_csrf
from .signing_keys import PREVIOUSLY_USED, SigningKeyError, SigningKeys

bp = Blueprint("key_dashboard", __name__, url_prefix="/dashboard/signing-keys")
bp.after_request(dashboard.strict_headers)  # the same policy as every dashboard page
bp.register_error_handler(400, dashboard.error_page)  # a stale form, an unknown key: its page
bp.register_error_handler(404, dashboard.error_page)


def keyring() -> SigningKeys:
    """The app's signing keys."""
    return current_app.extensions["emulator.signing_keys"]


@bp.get("")
def index() -> str:
    """Every key with its state, and the rotate and revoke forms."""
    return render_template("key_dashboard.html", keys=keyring().all(),
                           hs256=current_app.config["JWT_ALG"] == "HS256",
                           revocable=PREVIOUSLY_USED, timestamp=users.timestamp)


@bp.post("/rotate")
def rotate() -> Response:
    """Make the standby key current; the old current key stays trusted until revoked."""
    check_csrf()
    current = keyring().rotate()
    flash(f"Rotated: new access tokens are signed with {current.kid}. Tokens signed with the "
          "previous key still verify until you revoke it.")
    return redirect(url_for("key_dashboard.index"), 303)


@bp.get("/<kid>/revoke")
def confirm_revoke(kid: str) -> str:
    """Ask before revoking: tokens signed with the key stop verifying at once."""
    key = next((key for key in keyring().all() if key.kid == kid), None)
    if key is None:
        abort(404, "No signing key has this id.")
    if key.state != PREVIOUSLY_USED:
        abort(404, "Only a previously used key can be revoked; this one is "
                   f"{key.state.replace('_', ' ')}.")
    return render_template(
        "dashboard_confirm.html", title=f"Revoke the signing key {kid}?", button="Revoke key",
        message="Access tokens signed with it stop verifying at once, and the JWKS drops it; "
                "people holding one get a new token, signed with the current key, at their "
                "next refresh. This cannot be undone.",
        action=url_for("key_dashboard.revoke", kid=kid), back=url_for("key_dashboard.index"),
        section="key_dashboard.index")


@bp.post("/<kid>/revoke")
def revoke(kid: str) -> Response:
    """Revoke a previously used key: its tokens fail and the JWKS drops it."""
    check_csrf()
    try:
        keyring().revoke(kid)
    except SigningKeyError as error:
        flash(f"Not revoked: {error}.")
    else:
        flash(f"Revoked {kid}: access tokens signed with it no longer verify; a refresh "
              "gives a token signed with the current key.")
    return redirect(url_for("key_dashboard.index"), 303)
