"""The ceiling: bare Flask rendering the signed-in page with fixed data and no auth at all.

Same templates and static files as the app, so the page is byte-for-byte the same shape
(avatar, name, email, sign-out button); the sign-out form's CSRF token is a constant here.
"""

from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, Flask, render_template

from bench.servers import ROOT

PERSON = SimpleNamespace(
    is_authenticated=True,
    name="Bench User",
    email="bench-user-1@example.com",
    avatar_url="https://avatars.githubusercontent.com/u/1000001?v=4",
)
pages = Blueprint("pages", __name__)
auth = Blueprint("auth", __name__)


def create_app() -> Flask:
    """The page and the endpoints its template links to; nothing else."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.register_blueprint(pages)
    app.register_blueprint(auth)
    app.add_template_global(lambda: "bench-constant-csrf-token", "csrf_token")
    app.context_processor(lambda: {"current_user": PERSON})
    return app


@pages.get("/")
def index():
    """The signed-in home page, always."""
    return render_template("index.html")


@pages.get("/account")
def account():
    """Linked from the page; not measured."""
    return "", 204


@pages.get("/healthz")
def healthz():
    """Readiness for the benchmark."""
    return {"status": "ok"}


@auth.get("/signin")
def signin_page():
    """Linked from the page; not measured."""
    return "", 204


@auth.post("/signout")
def signout():
    """Linked from the page; not measured."""
    return "", 204
