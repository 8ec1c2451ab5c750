"""The emulator's home page at ``/``: what this is, where things are, which key to use."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("index_page", __name__)


@bp.get("/")
def index() -> str:
    """Links to the dashboard, the stand-ins, the API and the JWKS, and the publishable key."""
    config = current_app.config
    stand_ins = [(name, config["GITHUB_URL"] if name == "github"
                  else f"{config['PUBLIC_URL']}/{name}") for name in config["PROVIDERS"]]
    return render_template("index.html", public_url=config["PUBLIC_URL"], stand_ins=stand_ins,
                           publishable_key=config["PUBLISHABLE_API_KEY"],
                           jwt_alg=config["JWT_ALG"])
