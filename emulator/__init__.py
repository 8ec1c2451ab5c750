"""Local Supabase Auth (GoTrue) emulator with provider stand-ins; see README.md."""

import secrets
from typing import Any

from flask import Flask

from . import (
    admin_api,
    auth_api,
    control_api,
    dashboard,
    datafile,
    db,
    errors,
    forms,
    gateway,
    github,
    index_page,
    key_dashboard,
    mfa,
    oauth_stand_in,
    passkeys,
    provider,
    ratelimit,
    signing_keys,
    signing_keys_api,
    stand_in,
)
from .config import load as load_config
from .tokens import TokenService

MAX_BODY = 1024 * 1024  # the real server's 1 MiB request limit


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the emulator app: config, storage, keys, limits, gateway, blueprints, errors."""
    app = Flask(__name__)
    app.config.update(load_config(config))
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    # Signs the emulator's own session cookie (forms.py): CSRF tokens and dashboard messages.
    app.secret_key = secrets.token_bytes(32)
    db.init_app(app)
    app.extensions["emulator.tokens"] = TokenService(app.config, signing_keys.init_app(app))
    ratelimit.init_app(app)
    mfa.init_app(app)
    passkeys.init_app(app)
    stand_in.init_app(app)
    datafile.init_app(app)
    provider.init_app(app)
    forms.init_app(app)
    gateway.init_app(app)
    for blueprint in (auth_api.bp, admin_api.bp, signing_keys_api.bp, github.bp, dashboard.bp,
                      key_dashboard.bp, index_page.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(control_api.bp)
    app.register_blueprint(mfa.bp)
    app.register_blueprint(mfa.admin_bp)
    app.register_blueprint(passkeys.bp)
    app.register_blueprint(passkeys.admin_bp)
    oauth_stand_in.init_app(app)
    errors.init_app(app)
    return app


def close_app(app: Flask) -> None:
    """Release what create_app opened (database connection, HTTP pool)."""
    provider.close(app)
    app.extensions["emulator.tokens"].close()
    app.extensions["emulator.db"].close()
