"""Roles the team gives people, read from a verified token claim, and an example admin page.

The claim is the one AUTH_ROLE_CLAIM names: by default ``app_metadata.role``, which the team sets
in the Supabase dashboard; with a custom access token hook, a claim the hook adds (for example
``user_role``, from the project's own table of roles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps

from flask import Blueprint, abort, current_app, render_template
from flask_login import current_user, login_required

from two_factor import aal2_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


def claimed_role(claims: Mapping) -> str | None:
    """The role in the claim AUTH_ROLE_CLAIM names (a dotted path), or None if it is no string."""
    value = claims
    for name in current_app.config["AUTH_ROLE_CLAIM"].split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else None


def role_required(*roles: str) -> Callable:
    """Allow a view only to signed-in people whose verified token names one of ``roles``.

    The role comes from the claim AUTH_ROLE_CLAIM names: ``app_metadata`` or a hook's claim,
    which only the project can write, never ``user_metadata``, which people can edit
    themselves (config.check refuses it).
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if claimed_role(current_user.claims) not in roles:
                abort(403, description="This page is for the site's team. If you should have "
                                       "access, ask them to give your account the role.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


@bp.get("")
@role_required("admin")
@aal2_required
def index():
    """The example page only admins see, after a code from their authenticator app."""
    return render_template("admin.html")
