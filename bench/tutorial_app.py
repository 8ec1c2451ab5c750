"""The tutorial design, kept as the baseline (see STYLE.md's anti-patterns; do not copy this).

What the usual Flask + Supabase tutorial does, on the same templates as the app so only auth
differs:

- a new ``supabase.Client`` for every request, from ``create_client`` with default options
  except the session storage (``auto_refresh_token=True``, its own httpx pool with HTTP/2 and
  TLS settings, a realtime client), storing supabase_auth's whole session in the Flask cookie;
- ``auth.get_user()`` on every page, i.e. a round trip to Supabase Auth's ``/user``.

Sign-in is the same PKCE flow as the app: ``sign_in_with_oauth`` then
``exchange_code_for_session`` on the callback.
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session
from flask_wtf.csrf import CSRFProtect
from supabase import Client, create_client
from supabase.lib.client_options import SyncClientOptions
from supabase_auth import SyncSupportedStorage
from supabase_auth.errors import AuthApiError

from bench.servers import ROOT, without_passkeys

pages = Blueprint("pages", __name__)
auth = Blueprint("auth", __name__)


class FlaskSessionStorage(SyncSupportedStorage):
    """supabase_auth's storage in ``flask.session``, as the tutorial writes it."""

    def get_item(self, key: str) -> str | None:
        return session.get(key)

    def set_item(self, key: str, value: str) -> None:
        session[key] = value

    def remove_item(self, key: str) -> None:
        session.pop(key, None)


class Person:
    """What the page shows, read from the ``/user`` answer."""

    is_authenticated = True

    def __init__(self, user) -> None:
        meta = user.user_metadata or {}
        self.email = user.email or meta.get("email") or ""
        self.name = meta.get("full_name") or meta.get("name") or meta.get("user_name") or self.email
        self.avatar_url = meta.get("avatar_url")
        self.role = (user.app_metadata or {}).get("role")


class Anonymous:
    is_authenticated = False


def create_app() -> Flask:
    """Settings from the environment, CSRF for the sign-out form, the pages."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    app.config.update(
        SECRET_KEY=os.environ["SECRET_KEY"],
        SUPABASE_URL=os.environ["SUPABASE_URL"],
        SUPABASE_KEY=os.environ["SUPABASE_KEY"],
        SITE_URL=os.environ["SITE_URL"].rstrip("/"),
    )
    CSRFProtect(app)
    without_passkeys(app)
    app.register_blueprint(pages)
    app.register_blueprint(auth)
    app.context_processor(lambda: {"current_user": g.get("person") or Anonymous()})
    app.url_build_error_handlers.append(link_elsewhere)
    return app


def link_elsewhere(error: Exception, endpoint: str, values: dict) -> str:
    """A URL for the app's pages the tutorial lacks, so the shared template renders."""
    return "/" + endpoint.replace(".", "/")


def get_supabase() -> Client:
    """A new client for this request (the tutorial's ``g.supabase``)."""
    if "supabase" not in g:
        config = current_app.config
        g.supabase = create_client(
            config["SUPABASE_URL"], config["SUPABASE_KEY"],
            options=SyncClientOptions(storage=FlaskSessionStorage(), flow_type="pkce"))
    return g.supabase


@pages.get("/")
def index():
    """Ask Supabase who is signed in, then render the page."""
    try:
        response = get_supabase().auth.get_user()
    except AuthApiError:
        response = None
    if response is not None and response.user is not None:
        g.person = Person(response.user)
    return render_template("index.html", providers=[{"id": "github", "name": "GitHub"}])


@pages.get("/healthz")
def healthz():
    """Readiness for the benchmark."""
    return {"status": "ok"}


@auth.get("/signin/<provider>")
def signin(provider: str):
    """Start the PKCE flow at Supabase."""
    response = get_supabase().auth.sign_in_with_oauth({
        "provider": provider,
        "options": {"redirect_to": current_app.config["SITE_URL"] + "/callback"}})
    return redirect(response.url, code=303)


@auth.get("/callback")
def callback():
    """Exchange the code; supabase_auth stores the whole session in the cookie."""
    get_supabase().auth.exchange_code_for_session({"auth_code": request.args["code"]})
    return redirect("/")


@auth.post("/signout")
def signout():
    """Sign out at Supabase and here."""
    get_supabase().auth.sign_out()
    return redirect("/")
