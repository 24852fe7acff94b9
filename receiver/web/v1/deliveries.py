"""GET /v1/deliveries (the CRM deliveries with their attempts) and POST /v1/deliveries/<id>/replay."""

from flask import jsonify, request
from marshmallow import Schema, fields, validate

from ...access.roles import Permission
from ...errors import NotFound
from ...ledger import queries
from ...ledger.actions import replay_delivery
from ...ledger.outbox import DEAD, DONE, PENDING, SKIPPED
from ...schemas import MAX_TENANT, TEXT_ERRORS, load, text
from ...services import services
from ...states import CRMS
from ..answers import Time
from .common import ListQuery, allow, bp, known_tenant, page_of, principal, visible_tenants

STATUSES = (PENDING, DONE, SKIPPED, DEAD)


class DeliveriesQuery(ListQuery):
    status = fields.String(validate=validate.OneOf(STATUSES, error="must be one of {choices}"),
                           error_messages=TEXT_ERRORS)
    tenant = text(1, MAX_TENANT)


class AttemptItem(Schema):
    started_at = Time(required=True)
    finished_at = Time(allow_none=True)
    outcome = fields.String(required=True)
    http_status = fields.Integer(allow_none=True)
    detail = fields.String(allow_none=True)


class DeliveryItem(Schema):
    id = fields.Integer(required=True)
    crm = fields.String(required=True, validate=validate.OneOf(CRMS))
    tenant = fields.String(required=True)
    identity = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    created_at = Time(required=True)
    next_attempt_at = Time(allow_none=True, metadata={"description": "when it is next tried; null unless pending"})
    replayed_by = fields.String(allow_none=True, metadata={"description": "the operator who last replayed it"})
    attempt_log = fields.List(fields.Nested(AttemptItem), required=True)


DeliveriesPage = page_of(DeliveryItem, "DeliveriesPage")


class ReplayAnswer(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    previous_status = fields.String(required=True)


@bp.get("/deliveries")
@allow(Permission.READ)
def deliveries():
    data = load(DeliveriesQuery(), request.args.to_dict())
    rows, next_id = queries.deliveries_page(
        services().engine, status=data.get("status"), tenant=known_tenant(data.get("tenant")), tenants=visible_tenants(),
        after=queries.decode_cursor(data.get("cursor")), limit=data["limit"])
    items = [{**d._mapping, "next_attempt_at": d.next_attempt_at if d.status == PENDING else None,
              "attempt_log": [a._mapping for a in attempts]} for d, attempts in rows]
    return jsonify(DeliveriesPage().dump({"items": items, "next_cursor": queries.encode_cursor(next_id)}))


@bp.post("/deliveries/<int:delivery_id>/replay")
@allow(Permission.REPLAY)
def replay(delivery_id: int):
    previous = None
    if delivery_id <= queries.MAX_ID:
        previous = replay_delivery(services().engine, delivery_id, principal().name)
    if previous is None:
        raise NotFound(f"no delivery {delivery_id}")
    return jsonify(ReplayAnswer().dump({"id": delivery_id, "status": PENDING, "previous_status": previous}))
