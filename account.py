"""The account page: profile, linked identities, GitHub data, linking and unlinking."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    session,
    url_for,
)
from flask_login import current_user, login_required
from supabase_auth.types import User as SupabaseUser

import auth
import github_api
from flask_storage import MFA_FACTORS, forget_provider_token, provider_token, stored_tokens
from sessions import SessionEnded, SupabaseUnavailable, fresh_user, supabase_call
from supabase_client import extension, get_supabase
from supabase_errors import SUPABASE_ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__, url_prefix="/account")

# Refusals these views explain themselves; any other 4xx is the app's configuration.
LINK_REFUSALS = frozenset({
    "manual_linking_disabled", "identity_already_exists", "validation_failed",
    "identity_not_found", "single_identity_not_deletable", "email_conflict_identity_not_deletable",
})
MANUAL_LINKING_OFF = (
    "Linking another sign-in method is turned off for this site's Supabase project. A project "
    "admin can turn on Manual Linking under Authentication > Sign In / Providers "
    "(GOTRUE_SECURITY_MANUAL_LINKING_ENABLED=true when self-hosting)."
)
@bp.get("")
@login_required
def index():
    """Profile, provider, identities, last sign-in, GitHub data and authenticator apps, fresh
    from Supabase (one GET /user, which lists the factors too); while Supabase cannot be
    reached, what the token says, and which details are missing."""
    user = _user_if_reachable()
    if user is None:
        return _from_token()
    linked = {identity.provider for identity in user.identities or []}
    linkable = [p for p in auth.enabled_providers() if p["id"] not in linked]
    factors = [f for f in user.factors or () if f.factor_type == "totp" and f.status == "verified"]
    return render_template("account.html", user=user, linkable=linkable,
                           github=_github_section(linked), factors=factors)


def _user_if_reachable() -> SupabaseUser | None:
    """The user as Supabase has it now, or None while it cannot be reached (no call at all
    while calls are paused: see supabase_client.Backoff)."""
    try:
        return _fresh_user()
    except SupabaseUnavailable:
        return None


def _from_token():
    """The account page from the verified token and the cookie alone (Supabase unreachable):
    name, email, providers and level; actions that need Supabase say they are unavailable."""
    providers = _token_providers()
    tokens = stored_tokens() or {}
    factors = tokens.get(MFA_FACTORS)
    return render_template(
        "account.html", user=None, providers=providers,
        member_since=_timestamp(tokens.get("user_created_at")),
        level=current_user.claims.get("aal"),
        factor_count=factors if isinstance(factors, int) else 0,
        github=_github_section(set(providers)))


def _token_providers() -> list[str]:
    """The providers the token's app_metadata lists (a tuple: verified claims are frozen)."""
    app_metadata = current_user.app_metadata
    value = app_metadata.get("providers")
    listed = [p for p in value if isinstance(p, str)] if isinstance(value, list | tuple) else []
    provider = app_metadata.get("provider")
    return listed or ([provider] if isinstance(provider, str) else [])


def _timestamp(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@bp.post("/link/<provider>")
@login_required
def link(provider: str):
    """Start linking another provider to this account (PKCE, like a sign-in).

    A POST with the CSRF token, so no other site can start it (a provider that approves
    silently would otherwise attach the visitor's account without a click). It answers with a
    page that moves on to Supabase, not a redirect: Chrome applies the CSP's form-action to
    every redirect after a POST, the provider's site included.
    """
    auth.require_provider(provider)
    if not auth.signed_in_recently():
        return auth.ask_to_sign_in_again(url_for("account.index"),
                                         f"link {auth.provider_name(provider)}")
    flow_id = auth.new_flow_id()
    try:
        with auth.verifier_dropped_on_failure(), supabase_call(
                "starting to link an account", LINK_REFUSALS):
            response = get_supabase().auth.link_identity(
                {"provider": provider, "options": auth.oauth_options(provider, flow_id)})
    except SUPABASE_ERRORS as error:
        log.info("link_identity refused: %s", error.code)
        flash(MANUAL_LINKING_OFF if error.code == "manual_linking_disabled" else
              "That account could not be linked right now. Please try again.", "warning")
        return redirect(url_for("account.index"))
    auth.remember_flow(flow_id, provider, url_for("account.index"), intent="link")
    return render_template("leaving.html", url=response.url,
                           provider=auth.provider_name(provider))


@bp.get("/unlink/<identity_id>")
@login_required
def confirm_unlink(identity_id: str):
    """Ask before unlinking: the person may lose a way to sign in."""
    user = _fresh_user()
    identity = _identity(user, identity_id)
    return render_template("unlink.html", identity=identity,
                           last_one=len(user.identities or []) <= 1)


@bp.post("/unlink/<identity_id>")
@login_required
def unlink(identity_id: str):
    """Unlink an identity; the last one stays, so the person can still sign in."""
    user = _fresh_user()
    identity = _identity(user, identity_id)
    if len(user.identities or []) <= 1:
        flash("This is your only way to sign in, so it cannot be unlinked.", "warning")
        return redirect(url_for("account.index"))
    if not auth.signed_in_recently():
        return auth.ask_to_sign_in_again(
            url_for("account.confirm_unlink", identity_id=identity_id),
            f"unlink {auth.provider_name(identity.provider)}")
    try:
        with supabase_call("unlinking the account", LINK_REFUSALS):
            get_supabase().auth.unlink_identity(identity)
    except SUPABASE_ERRORS as error:
        log.info("unlink_identity refused: %s", error.code)
        flash("That account could not be unlinked. Please reload the page and try again.",
              "warning")
        return redirect(url_for("account.index"))
    if identity.provider == "github":
        forget_provider_token()
    flash(f"{auth.provider_name(identity.provider)} is no longer linked.", "success")
    return redirect(url_for("account.index"))


@bp.get("/sign-out-everywhere")
@login_required
def confirm_sign_out_everywhere():
    """Ask before ending every session of this account, on every device."""
    return render_template("sign_out_everywhere.html")


def _fresh_user() -> SupabaseUser:
    """The user as Supabase has it now; off to sign in again when it refuses this session."""
    try:
        return fresh_user("loading your account")
    except SessionEnded as ended:
        session.clear()
        flash(str(ended), "warning")
        abort(redirect(url_for("auth.signin_page", next=url_for("account.index"))))


def _identity(user: SupabaseUser, identity_id: str):
    for identity in user.identities or []:
        if identity.identity_id == identity_id:
            return identity
    abort(404, description="That linked account was not found; it may be unlinked already.")


def _github_section(linked: set[str]) -> dict:
    """What the page says about GitHub: the profile, or why there is none and what to do."""
    if "github" not in linked:
        return {"state": "not-linked"}
    token = provider_token()
    if token is None:
        return {"state": "reconnect"}
    try:
        profile = github_api.fetch_profile(extension().http,
                                           current_app.config["GITHUB_API_URL"], token)
    except github_api.GitHubTokenRejected:
        forget_provider_token()
        return {"state": "reconnect"}
    except github_api.GitHubUnavailable as error:
        log.warning("GitHub API unavailable: %s", error)
        return {"state": "unavailable"}
    return {"state": "ok", "profile": profile}
