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
    app.context_processor(lambda: {"current_user": PERSON})
    app.url_build_error_handlers.append(link_elsewhere)
    return app


def link_elsewhere(error: Exception, endpoint: str, values: dict) -> str:
    """A URL for the app's pages this one lacks, so the template renders as it evolves."""
    return "/" + endpoint.replace(".", "/")


@pages.get("/")
def index():
    """The signed-in home page, always."""
    return render_template("index.html")


@pages.get("/healthz")
def healthz():
    """Readiness for the benchmark."""
    return {"status": "ok"}
