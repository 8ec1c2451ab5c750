"""The ceiling: bare Flask rendering the signed-in page with fixed data and no auth at all.

Same templates and static files as the app, so the page is byte-for-byte the same shape
(avatar, name, email, sign-out button); the sign-out form's CSRF token is a constant here.
"""

from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, Flask, render_template

from bench.servers import ROOT, without_passkeys

PERSON = SimpleNamespace(
    is_authenticated=True,
    role=None,
    name="Bench User",
    email="bench-user-1@example.com",
    avatar_url="https://avatars.githubusercontent.com/u/1000001?v=4",
)
pages = Blueprint("pages", __name__)


def create_app() -> Flask:
    """The page and the endpoints its template links to; nothing else."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.register_blueprint(pages)
    app.add_template_global(lambda: "bench-constant-csrf-token", "csrf_token")
    without_passkeys(app)
    app.context_processor(lambda: {"current_user": PERSON})
    for blueprint in stub_blueprints():
        app.register_blueprint(blueprint)
    return app


def stub_blueprints() -> list[Blueprint]:
    """The endpoints the template links to, as empty pages: url_for builds them as cheaply as
    in the app (a build error handler instead would make every link raise and catch)."""
    endpoints = {"auth": [("/signin", "signin_page"), ("/signout", "signout"),
                          ("/signin/<provider>", "signin")],
                 "account": [("/account", "index")], "admin": [("/admin", "index")]}
    blueprints = []
    for name, routes in endpoints.items():
        blueprint = Blueprint(name, __name__)
        for rule, endpoint in routes:
            blueprint.add_url_rule(rule, endpoint, lambda **_: "")
        blueprints.append(blueprint)
    return blueprints


@pages.get("/")
def index():
    """The signed-in home page, always."""
    return render_template("index.html")


@pages.get("/healthz")
def healthz():
    """Readiness for the benchmark."""
    return {"status": "ok"}
