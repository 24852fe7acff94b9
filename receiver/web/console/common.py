"""What every console page shares: the blueprint, the session cookie, the CSRF check and the signed-in operator."""

import hmac
import secrets

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from ...access.credentials import Passwords
from ...errors import BadRequest
from ...ledger.operators import principal_for_id
from ...services import services
from ..answers import page_language

bp = Blueprint("console", __name__, url_prefix="/console")


@bp.record_once
def _session_cookie(state):
    settings = state.app.extensions["receiver"].settings
    state.app.secret_key = settings.secret_keys[0]
    state.app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                            SESSION_COOKIE_SECURE=settings.env != "development", SESSION_COOKIE_PATH="/console")


def passwords() -> Passwords:
    """The app's one hasher (made on first use: making one computes a dummy Argon2id hash)."""
    if "receiver.passwords" not in current_app.extensions:
        current_app.extensions["receiver.passwords"] = Passwords()
    return current_app.extensions["receiver.passwords"]


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.before_request
def signed_in():
    """The session's operator as ``g.principal`` (the /v1 code reads it there); POSTs need the CSRF field."""
    if request.method == "POST":
        given, expected = request.form.get("csrf", ""), session.get("csrf", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise BadRequest("csrf: the form has expired; reload the page", field="csrf")
    if request.endpoint == "console.login":
        return None
    operator_id = session.get("operator")
    g.principal = principal_for_id(services().engine, operator_id) if isinstance(operator_id, int) else None
    if g.principal is None:
        session.clear()
        return redirect(url_for("console.login"))
    return None


def page(template: str, status: int = 200, **context):
    return render_template(template, lang=page_language(), csrf=_csrf(), who=g.get("principal"),
                           **context), status


def tenants() -> list[str]:
    """The hotels the signed-in operator may see, by name."""
    return g.principal.visible(sorted(services().settings.tenants))


def visible() -> list[str] | None:
    """The signed-in operator's tenants for a list query (None: every tenant)."""
    return None if g.principal.tenants is None else sorted(g.principal.tenants)
