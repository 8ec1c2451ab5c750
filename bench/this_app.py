"""This app, exactly as ``app:create_app()`` builds it, with the settings the benchmark passes.

``config.check`` refuses the emulator's public demo keys outside debug and testing (rightly:
they would be a hole in production), and the emulator accepts no other key. Debug mode would
change what is measured (template reloading, the debugger), so the benchmark passes the same
settings as a test config with ``TESTING`` on, which only changes how unhandled exceptions
propagate. Everything else (pages, auth, cookie, caches) is the production code path.
"""

from __future__ import annotations

import os
import tempfile

from flask import Flask

import app

SETTINGS = ("SUPABASE_URL", "SUPABASE_KEY", "SECRET_KEY", "SITE_URL")


def create_app() -> Flask:
    """``app.create_app`` with the benchmark's environment as its config."""
    settings = {name: os.environ[name] for name in SETTINGS}
    settings["AUTH_REVALIDATE_SECONDS"] = int(os.environ["AUTH_REVALIDATE_SECONDS"])
    # The workers' shared files (the last good JWKS), never in the repository's instance/.
    settings["INSTANCE_PATH"] = (os.environ.get("INSTANCE_PATH")
                                 or os.path.join(tempfile.gettempdir(), "bench-instance"))
    return app.create_app({**settings, "TESTING": True})
