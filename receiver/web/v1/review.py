"""GET /v1/review (texts flagged for review, oldest first) and POST /v1/review/<id> (the decision on one)."""

import json

from flask import Response, jsonify, request
from marshmallow import RAISE, Schema, fields, validate

from ...access.roles import Permission
from ...compliance.clocks import ClockStatus, review_clock, status, tenant_calendar
from ...errors import BadRequest, NotFound
from ...ledger import queries, review
from ...ledger.models import utcnow
from ...receipts import new_receipt_id
from ...schemas import MAX_TENANT, TEXT_ERRORS, load, text
from ...services import services
from ...sources import review as review_source
from ..answers import Change, Time, counted
from .common import (
    ListQuery,
    allow,
    bp,
    json_body,
    known_tenant,
    page_of,
    principal,
    visible_tenants,
)


class ReviewQuery(ListQuery):
    tenant = text(1, MAX_TENANT)
    status = fields.String(load_default=review.OPEN, error_messages=TEXT_ERRORS, validate=validate.OneOf(
        (review.OPEN, review.DECIDED), error="must be one of {choices}"))


class ReviewClock(Schema):
    started_at = Time(required=True)
    honour_by = Time(required=True)
    decided_at = Time(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in ClockStatus]))


def tcpa_clock(row) -> dict:
    """The item's TCPA clock (``compliance.clocks.review_clock``), from its text's arrival until decided."""
    tenant = services().settings.tenants[row["tenant"]]
    started = row["occurred_at"] or row["received_at"]
    clock = review_clock(started, row["decided_at"], tenant_calendar(tenant.calendar, tenant.timezone))
    return {"started_at": started, "honour_by": clock.honour_by, "decided_at": row["decided_at"],
            "status": status(clock, utcnow()).value}


class ReviewItem(Schema):
    id = fields.Integer(required=True, metadata={"description": "the event's id (as in /v1/events)"})
    tenant = fields.String(required=True)
    source = fields.String(required=True)
    event_id = fields.String(required=True)
    text = fields.Function(lambda row: (row["detail"] or {}).get("text") or row["keyword"], allow_none=True,
                           metadata={"description": "the text, else the words that flagged it"})
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    received_at = Time(required=True)
    occurred_at = Time(allow_none=True)
    evidence_sha256 = fields.String(required=True)
    decision = fields.String(allow_none=True, validate=validate.OneOf((review.HONOUR, review.DISMISS)))
    decision_note = fields.String(allow_none=True)
    operator = fields.String(allow_none=True, metadata={"description": "who decided"})
    decided_at = Time(allow_none=True)
    tcpa_clock = fields.Nested(ReviewClock, required=True, metadata={
        "description": "TCPA's 10 business days from the text's arrival, until a person decides it"})


ReviewPage = page_of(ReviewItem, "ReviewPage")


class DecisionSchema(Schema):
    class Meta:
        unknown = RAISE

    decision = fields.String(required=True, error_messages=TEXT_ERRORS, validate=validate.OneOf(
        (review.HONOUR, review.DISMISS), error="must be one of {choices}"))
    note = text(0, 2000, load_default=None, allow_none=True)


class DecisionAnswer(Schema):
    id = fields.Integer(required=True)
    decision = fields.String(required=True, validate=validate.OneOf((review.HONOUR, review.DISMISS)))
    note = fields.String(allow_none=True)
    operator = fields.String(required=True)
    receipt_id = fields.String(required=True)
    changes = fields.List(fields.Nested(Change), required=True, metadata={"description": "honour: what it set"})


@bp.get("/review")
@allow(Permission.READ)
def review_queue():
    data = load(ReviewQuery(), request.args.to_dict())
    rows, next_id = review.review_page(
        services().engine, status=data["status"], tenant=known_tenant(data.get("tenant")),
        tenants=visible_tenants(), after=queries.decode_cursor(data.get("cursor")), limit=data["limit"])
    return jsonify(ReviewPage().dump({"items": [{**row._mapping, "tcpa_clock": tcpa_clock(row._mapping)} for row in rows],
                                      "next_cursor": queries.encode_cursor(next_id)}))


@bp.post("/review/<int:event_id>")
@allow(Permission.DECIDE_REVIEW)
def decide(event_id: int):
    answer = apply_decision(event_id, json_body(), request.get_data(cache=True))
    body = json.dumps(DecisionAnswer().dump(answer), separators=(",", ":")).encode()
    return Response(body, 200, content_type="application/json",
                    headers=services().signer.headers(body, receipt_id=answer["receipt_id"], hmac_secrets=[]))


def apply_decision(event_id: int, fields: dict, evidence: bytes) -> dict:
    """What /v1 and the console do with a decision; the answer's fields (DecisionAnswer)."""
    data = load(DecisionSchema(), fields)
    who, engine = principal(), services().engine
    original = review.flagged(engine, event_id) if event_id <= queries.MAX_ID else None
    if original is None or not who.can_see(original.tenant):  # another hotel's item is not there
        raise NotFound(f"no event {event_id} to review")
    changes: list = []
    if data["decision"] == review.DISMISS:
        receipt_id = new_receipt_id()
        review.dismiss(engine, event_id, original.tenant, data["note"], who.name, receipt_id)
    else:
        if not original.phone:
            raise BadRequest("decision: this event has no phone to ban", field="decision")
        outcome = review.honour(services().ledger, original, data["note"], who.name, evidence)
        counted(review_source.NAME, review_source.NAME, outcome)
        receipt_id, changes = outcome.receipt_id, outcome.changes
    return {"id": event_id, "decision": data["decision"], "note": data["note"], "operator": who.name,
            "receipt_id": receipt_id, "changes": changes}
