"""/console/deliveries: the deliveries the worker gave up on; an admin replays one (as POST /v1/deliveries/<id>/replay)."""

from flask import g, request

from ...access.roles import Permission, may
from ...errors import NotFound, ReceiverError
from ...ledger import queries
from ...ledger.actions import replay_delivery
from ...ledger.outbox import DEAD
from ...services import services
from .common import bp, page, visible


@bp.route("/deliveries", methods=["GET", "POST"])
def dead_deliveries():
    """The deliveries the worker gave up on; an admin replays one (a POST with the CSRF field, as /v1 replays)."""
    done, error, status = None, None, 200
    if request.method == "POST":
        try:
            g.principal.require(Permission.REPLAY)
            delivery_id = int(request.form.get("id", ""))
            if delivery_id > queries.MAX_ID or replay_delivery(services().engine, delivery_id, g.principal.name) is None:
                raise NotFound(f"no delivery {delivery_id}")
            done = delivery_id
        except ValueError:
            error, status = "id: not a number", 400
        except ReceiverError as exc:
            error, status = exc.message, exc.status
    rows, _next = queries.deliveries_page(services().engine, status=DEAD, tenants=visible(), limit=100)
    return page("console_deliveries.html", status, items=rows, done=done, error=error,
                may_replay=may(g.principal.role, Permission.REPLAY))
