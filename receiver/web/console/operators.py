"""/console/operators: an admin lists, adds and disables operators and issues API tokens (the CLI's rules).

Each change names the admin who made it (their email, in ``created_by``, ``issued_by``, ``disabled_by``).
"""

from flask import g, request
from flask_babel import gettext as _

from ...access.credentials import check_new_password
from ...access.roles import Permission, Role, may
from ...errors import BadRequest, NotFound, ReceiverError
from ...identities import normalize_email
from ...ledger.operators import add_operator, disable_operator, issue_token, list_operators
from ...services import services
from .common import bp, page, passwords


def _operators_page(status: int = 200, **context):
    html, status = page("console_operators.html", status, operators=list_operators(services().engine),
                        roles=[str(role) for role in Role], tenants=sorted(services().settings.tenants),
                        **context)
    # The answer may hold a token shown this once: no cache, no history copy of it.
    return html, status, {"Cache-Control": "no-store"}


def _act(action) -> tuple:
    """Run ``action`` as an admin; its refusal (naming the field) comes back as the page with the message."""
    if not may(g.principal.role, Permission.MANAGE_OPERATORS):
        return page("console_operators.html", 403, operators=None, error=_("Only an admin may manage operators."))
    try:
        done = action() if action else None
    except ReceiverError as exc:
        return _operators_page(exc.status, error=exc.message, form=request.form)
    return _operators_page(**(done or {}))


@bp.get("/operators")
def operators():
    return _act(None)


@bp.post("/operators")
def operator_add():
    return _act(_add)


@bp.post("/operators/token")
def operator_token():
    return _act(lambda: {"token": issue_token(services().engine, _email(), by=_admin()), "token_for": _email()})


@bp.post("/operators/disable")
def operator_disable():
    def disable():
        if not disable_operator(services().engine, _email(), by=_admin()):
            raise NotFound(_("email: no such operator"), field="email")
        return {"disabled": _email()}
    return _act(disable)


def _admin() -> str:
    """Who acts, for the audit trail: the signed-in admin (``_act`` has checked the role)."""
    return g.principal.name


def _email() -> str:
    return normalize_email(request.form.get("email", ""))


def _add() -> dict:
    """Checked as ``receiver operator add`` checks: all of it before anything is stored."""
    email = _email()
    try:
        role = Role(request.form.get("role", ""))
    except ValueError:
        raise BadRequest("role: " + _("choose viewer, agent or admin"), field="role") from None
    tenants = sorted(set(request.form.getlist("tenants")))
    unknown = [tenant for tenant in tenants if tenant not in services().settings.tenants]
    if unknown:
        raise BadRequest("tenants: " + _("unknown hotel %(tenant)s", tenant=unknown[0]), field="tenants")
    if (role is Role.ADMIN) == bool(tenants):
        raise BadRequest("tenants: " + _("an admin is for every hotel (none ticked); a viewer or agent needs one"),
                         field="tenants")
    password = request.form.get("password", "")
    check_new_password(password)
    add_operator(services().engine, email, role, tenants or None, passwords().hash(password), by=_admin())
    return {"added": email}
