"""Roles the team sets in the Supabase dashboard (app_metadata.role), and an example admin page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from two_factor import aal2_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


def role_required(*roles: str) -> Callable:
    """Allow a view only to signed-in people whose verified token names one of ``roles``.

    The role comes from ``app_metadata``, which only the service role can write, never from
    ``user_metadata``, which people can edit themselves.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
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
