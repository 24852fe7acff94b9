"""/console: the operators' pages (sign in, find a guest, record a staff opt-out, the review queue).

Server-rendered, usable without JavaScript, English and French. The session is Flask's signed
cookie (HttpOnly, SameSite=Lax, Secure outside development) holding the operator's id, read
against the operators table on every request, so disabling an operator ends their session at
once; sign-in replaces the whole session (no fixation) and is rate-limited per address and per
email in the database. Every form carries the session's CSRF token (missing or wrong: 400,
nothing stored). Every action calls the same functions as /v1, as the session's Principal.
"""

import hmac
import secrets

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..access.credentials import Passwords
from ..access.roles import Permission, may
from ..errors import BadRequest, Forbidden, ReceiverError, TooManyRequests
from ..identities import normalize_contact, normalize_email
from ..ledger import queries, review
from ..ledger.operators import principal_for_id, sign_in_record
from ..ledger.proof import gather
from ..ledger.ratelimit import client_key, rate_limited
from ..services import services
from ..sources.staff import CHANNELS
from ..states import STATES
from .answers import page_language
from .v1.opt_outs import record_staff_opt_out
from .v1.review import apply_decision, tcpa_clock

bp = Blueprint("console", __name__, url_prefix="/console")
SIGN_INS_PER_ADDRESS, SIGN_INS_PER_EMAIL = 10, 5  # a minute


@bp.record_once
def _session_cookie(state):
    settings = state.app.extensions["receiver"].settings
    state.app.secret_key = settings.secret_keys[0]
    state.app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                            SESSION_COOKIE_SECURE=settings.env != "development", SESSION_COOKIE_PATH="/console")


def _passwords() -> Passwords:
    return current_app.extensions.setdefault("receiver.passwords", Passwords())


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


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return page("console_login.html")
    engine, raw = services().engine, request.form.get("email", "")
    try:
        email = normalize_email(raw)
    except ReceiverError:
        email = raw.strip().lower()
    # Every attempt counts, known email or not, before the password is checked.
    waits = [rate_limited(engine, "login-ip", client_key(request.remote_addr), SIGN_INS_PER_ADDRESS),
             rate_limited(engine, "login-email", email, SIGN_INS_PER_EMAIL)]
    if any(wait is not None for wait in waits):
        raise TooManyRequests("too many sign-in attempts; retry in a minute",
                              retry_after=max(w for w in waits if w is not None))
    found = sign_in_record(engine, email)
    if not _passwords().verify(found[1] if found else None, request.form.get("password", "")):
        return page("console_login.html", 401, error=_("Wrong email or password."))
    session.clear()  # a new session: nothing set before sign-in survives it
    session.update(operator=found[0], csrf=secrets.token_urlsafe(32))
    return redirect(url_for("console.home"))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))


@bp.get("")
def home():
    """Find a guest: their states and timeline."""
    who, tenants = g.principal, _tenants()
    tenant, email, phone = request.args.get("tenant"), request.args.get("email") or None, request.args.get(
        "phone") or None
    found, error = None, None
    if tenant and (email or phone):
        try:
            if tenant not in tenants:
                raise BadRequest(_("Unknown hotel."), field="tenant")
            who.require(Permission.READ, tenant)
            email, phone = normalize_contact(email, phone)
            engine = services().engine
            events = {}
            for by in ({"email": email}, {"phone": phone}):  # the guest's signals under either identity
                if any(by.values()):
                    rows, _next = queries.events_page(engine, tenant=tenant, limit=200, **by)
                    events.update({row.id: row for row in rows})
            # The clocks and deliveries (with the CRMs' answers) as GET /v1/proof reads them.
            proof = gather(engine, services().settings.identity_key, tenant, email, phone)
            found = {"states": queries.guest_states(engine, tenant, email, phone),
                     "events": [events[key] for key in sorted(events)],
                     "clocks": proof["clocks"], "deliveries": proof["deliveries"]}
        except ReceiverError as exc:
            error = exc.message
    return page("console_home.html", tenants=tenants, tenant=tenant, email=email, phone=phone, found=found,
                error=error)


@bp.route("/opt-outs", methods=["GET", "POST"])
def opt_out():
    if not may(g.principal.role, Permission.RECORD_OPT_OUT):
        return page("console_home.html", 403, tenants=_tenants(), error=_("Your role may not record opt-outs."))
    done, error, status = None, None, 200
    if request.method == "POST":
        form = {key: request.form.get(key) or None for key in ("tenant", "email", "phone", "channel", "note")}
        form["states"] = request.form.getlist("states")
        try:
            done = record_staff_opt_out(form, request.get_data(cache=True))
        except ReceiverError as exc:
            error, status = exc.message, exc.status
    return page("console_opt_out.html", status, tenants=_tenants(), states=STATES,
                channels=CHANNELS, done=done, error=error)


@bp.route("/review", methods=["GET", "POST"])
def review_queue():
    done, error, status = None, None, 200
    if request.method == "POST":
        try:
            event_id = int(request.form.get("id", ""))
            if not may(g.principal.role, Permission.DECIDE_REVIEW):
                raise Forbidden(_("Your role may not decide review items."))
            done = apply_decision(event_id, {"decision": request.form.get("decision"),
                                             "note": request.form.get("note") or None}, request.get_data(cache=True))
        except ValueError:
            error, status = "id: not a number", 400
        except ReceiverError as exc:
            error, status = exc.message, exc.status
    rows, _next = review.review_page(services().engine, status=review.OPEN, tenants=_visible(), limit=100)
    # Each item's TCPA clock as GET /v1/review gives it: ten business days from the text, until decided.
    return page("console_review.html", status, items=rows, done=done, error=error,
                clocks={row.id: tcpa_clock(row._mapping) for row in rows},
                may_decide=may(g.principal.role, Permission.DECIDE_REVIEW))


def _tenants() -> list[str]:
    return g.principal.visible(sorted(services().settings.tenants))


def _visible() -> list[str] | None:
    return None if g.principal.tenants is None else sorted(g.principal.tenants)


from . import console_operators, console_pages  # noqa: E402,F401  (their routes join this blueprint)
