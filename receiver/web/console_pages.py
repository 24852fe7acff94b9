"""/console's compliance pages: a guest's printable proof and signed JSON (the code of GET /v1/proof), dead deliveries."""

import json

from flask import Response, g, request
from flask_babel import gettext as _

from ..access.roles import Permission, may
from ..errors import BadRequest, NotFound, ReceiverError
from ..ledger import queries
from ..ledger.actions import replay_delivery
from ..ledger.outbox import DEAD
from ..services import services
from .console import _visible, bp, page
from .v1.proof import signed_proof


def _guest_proof() -> tuple[dict, bytes, dict]:
    """The guest the query names, read as /v1/proof reads them; another tenant's is 404, as on /v1."""
    tenant, email, phone = (request.args.get(key) or None for key in ("tenant", "email", "phone"))
    if not tenant:
        raise BadRequest(_("Unknown hotel."), field="tenant")
    g.principal.require(Permission.READ, tenant)
    if not (email or phone):
        raise BadRequest(_("Name a guest: an email or a phone."), field="email")
    return signed_proof(tenant, email, phone)


@bp.get("/proof")
def proof():
    """Printable: the same document as /v1/proof, with a link to its signed bytes."""
    try:
        document = _guest_proof()[0]
    except ReceiverError as exc:
        return page("console_proof.html", exc.status, proof=None, error=exc.message)
    return page("console_proof.html", proof=document, query={key: value for key in ("tenant", "email", "phone")
                                                             if (value := request.args.get(key))})


@bp.get("/proof.json")
def proof_json():
    """The signed JSON, byte for byte as /v1/proof answers it, with the same webhook-* signature headers."""
    _document, body, headers = _guest_proof()
    name = "proof-{}.json".format(request.args.get("tenant", ""))
    return Response(body, mimetype="application/json",
                    headers={**headers, "Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/proof.signed.json")
def proof_signed_json():
    """One file that keeps its signature: the exact signed text and its webhook-* headers, for offline checks.

    A browser saving /console/proof.json keeps the body but drops the headers the signature is in;
    this file holds both, and ``receiver/check_proof.py`` (standalone) checks it with the published keys.
    """
    _document, body, headers = _guest_proof()
    bundle = json.dumps({**headers, "body": body.decode()}, indent=1, sort_keys=True)
    name = "proof-{}-signed.json".format(request.args.get("tenant", ""))
    return Response(bundle, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


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
    rows, _next = queries.deliveries_page(services().engine, status=DEAD, tenants=_visible(), limit=100)
    return page("console_deliveries.html", status, items=rows, done=done, error=error,
                may_replay=may(g.principal.role, Permission.REPLAY))
