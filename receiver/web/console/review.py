"""/console/review: the texts flagged for review; an agent or admin decides one (the code of POST /v1/review/<id>)."""

from flask import g, request
from flask_babel import gettext as _

from ...access.roles import Permission, may
from ...errors import Forbidden, ReceiverError
from ...ledger import review
from ...services import services
from ..v1.review import apply_decision, tcpa_clock
from .common import bp, page, visible


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
    rows, _next = review.review_page(services().engine, status=review.OPEN, tenants=visible(), limit=100)
    # Each item's TCPA clock as GET /v1/review gives it: ten business days from the text, until decided.
    return page("console_review.html", status, items=rows, done=done, error=error,
                clocks={row.id: tcpa_clock(row._mapping) for row in rows},
                may_decide=may(g.principal.role, Permission.DECIDE_REVIEW))
