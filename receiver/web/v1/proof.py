"""GET /v1/proof: one guest's signed record (states, signals, deliveries and CRM answers, clocks, chain hashes)."""

import json
from datetime import UTC, datetime

from flask import Response, request
from marshmallow import Schema, fields, validate

from ... import clock
from ...access.roles import Permission
from ...identities import normalize_contact
from ...ledger.proof import gather
from ...schemas import load
from ...services import services
from ...states import STATES
from ..answers import Change, Time
from .clocks import ClockItem
from .common import allow, bp, known_tenant
from .consent import ConsentQuery
from .deliveries import DeliveryItem


class ProofQuery(ConsentQuery):
    """The guest a proof is for: named as for a consent look-up."""


class ProofSignal(Schema):
    id = fields.Integer(required=True)
    source = fields.String(required=True)
    event_id = fields.String(required=True)
    kind = fields.String(required=True)
    keyword = fields.String(allow_none=True, metadata={"description": "the words (SMS) or how it came (link:…)"})
    event_type = fields.String(allow_none=True, metadata={"description": "the sender's event type, when it has one"})
    operator = fields.String(allow_none=True)
    receipt_id = fields.String(required=True)
    receipt_status = fields.String(required=True)
    evidence_sha256 = fields.String(required=True)
    received_at = Time(required=True)
    occurred_at = Time(allow_none=True)
    add_states = fields.List(fields.String(), allow_none=True)
    remove_states = fields.List(fields.String(), allow_none=True)
    changes = fields.List(fields.Nested(Change), required=True)
    email_hash = fields.String(allow_none=True)
    phone_hash = fields.String(allow_none=True)
    chain_sha256 = fields.String(allow_none=True, metadata={"description": "null: not chained (HELP, other)"})
    chain_seq = fields.Integer(allow_none=True, metadata={
        "description": "its place in the tenant's chain (chain order, not id order); null: not chained"})


class ProofDelivery(DeliveryItem):
    next_attempt_at = None
    updated_at = Time(required=True)
    signal_id = fields.Integer(required=True)


class ChainRef(Schema):
    signal_id = fields.Integer(required=True, allow_none=True)
    chain_sha256 = fields.String(required=True, allow_none=True)


class ProofAnswer(Schema):
    tenant = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    generated_at = Time(required=True)
    states = fields.Dict(keys=fields.String(validate=validate.OneOf(STATES)), values=Time(), required=True)
    signals = fields.List(fields.Nested(ProofSignal), required=True)
    deliveries = fields.List(fields.Nested(ProofDelivery), required=True)
    clocks = fields.List(fields.Nested(ClockItem), required=True)
    chain_head = fields.Nested(ChainRef, required=True, metadata={"description": "the tenant's head when generated"})


@bp.get("/proof")
@allow(Permission.READ)
def proof():
    """Signed like a receipt (v1a headers over the exact bytes): an auditor checks it with the published keys."""
    data = load(ProofQuery(), request.args.to_dict())
    _document, body, headers = signed_proof(data["tenant"], data.get("email"), data.get("phone"))
    return Response(body, mimetype="application/json", headers=headers)


def signed_proof(tenant: str, email: str | None, phone: str | None) -> tuple[dict, bytes, dict]:
    """The proof as dumped, its exact bytes and their signature headers (the console shows the same document)."""
    tenant = known_tenant(tenant)
    email, phone = normalize_contact(email, phone)
    document = ProofAnswer().dump({"tenant": tenant, "email": email, "phone": phone,
                                   "generated_at": datetime.fromtimestamp(clock.now(), UTC),
                                   **gather(services().engine, services().settings.identity_key, tenant, email, phone)})
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return document, body, services().signer.headers(body)
