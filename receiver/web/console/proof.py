"""/console/proof: a guest's printable proof and its signed JSON (the code of GET /v1/proof)."""

import json

from flask import Response, g, request
from flask_babel import gettext as _

from ...access.roles import Permission
from ...errors import BadRequest, ReceiverError
from ..v1.proof import signed_proof
from .common import bp, page


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
