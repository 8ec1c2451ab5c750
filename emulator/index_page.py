"""The emulator's home page at ``/`` (what this is, where things are, which key to use) and a
page per provider stand-in (its addresses and the accounts its consent page offers)."""

from typing import Any

from flask import Blueprint, abort, current_app, render_template

from . import dashboard, stand_in, users
from .db import get_db

bp = Blueprint("index_page", __name__)
bp.after_request(dashboard.strict_headers)  # the same policy as every dashboard page


def stand_in_base(provider: str) -> str:
    """Where a stand-in is served: GitHub's may be configured, the others sit under /<name>."""
    config = current_app.config
    return config["GITHUB_URL"] if provider == "github" else f"{config['PUBLIC_URL']}/{provider}"


def stand_in_endpoints(provider: str) -> list[tuple[str, str]]:
    """(what, URL) for the addresses an OAuth client uses, in the provider's own shape."""
    base = stand_in_base(provider)
    if provider == "github":
        return [("Authorize (consent page)", f"{base}/login/oauth/authorize"),
                ("Token", f"{base}/login/oauth/access_token"), ("User API", f"{base}/api/v3/user")]
    return [("Authorize (consent page)", f"{base}/oauth/authorize"),
            ("Token", f"{base}/oauth/token"), ("User info", f"{base}/userinfo")]


@bp.get("/")
def index() -> str:
    """Links to the dashboard, the stand-ins, the API and the JWKS, and the publishable key."""
    config = current_app.config
    stand_ins = [(name, stand_in.spec(name).title, stand_in_base(name))
                 for name in stand_in.served_providers(config)]
    return render_template("index.html", public_url=config["PUBLIC_URL"], stand_ins=stand_ins,
                           publishable_key=config["PUBLISHABLE_API_KEY"],
                           jwt_alg=config["JWT_ALG"])


@bp.get("/stand-ins/<provider>")
def stand_in_page(provider: str) -> str:
    """One stand-in: its addresses and every account its consent page lists."""
    if provider not in stand_in.served_providers(current_app.config):
        abort(404)
    accounts: list[Any] = get_db().all(
        "SELECT * FROM stand_in_accounts WHERE provider = ? ORDER BY created_at, id", (provider,))
    return render_template("stand_in.html", provider=provider,
                           title=stand_in.spec(provider).title, base=stand_in_base(provider),
                           endpoints=stand_in_endpoints(provider), accounts=accounts,
                           timestamp=users.timestamp)
