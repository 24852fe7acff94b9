"""/console/opt-outs: record an opt-out staff took (the code of POST /v1/opt-outs)."""

from flask import g, request
from flask_babel import gettext as _

from ...access.roles import Permission, may
from ...errors import ReceiverError
from ...sources.staff import CHANNELS
from ...states import STATES
from ..v1.opt_outs import record_staff_opt_out
from .common import bp, page, tenants


@bp.route("/opt-outs", methods=["GET", "POST"])
def opt_out():
    if not may(g.principal.role, Permission.RECORD_OPT_OUT):
        return page("console_home.html", 403, tenants=tenants(), error=_("Your role may not record opt-outs."))
    done, error, status = None, None, 200
    if request.method == "POST":
        form = {key: request.form.get(key) or None for key in ("tenant", "email", "phone", "channel", "note")}
        form["states"] = request.form.getlist("states")
        try:
            done = record_staff_opt_out(form, request.get_data(cache=True))
        except ReceiverError as exc:
            error, status = exc.message, exc.status
    return page("console_opt_out.html", status, tenants=tenants(), states=STATES,
                channels=CHANNELS, done=done, error=error)
