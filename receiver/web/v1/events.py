"""GET /v1/events: the audit trail, every signal oldest first, cursor-paginated."""

from flask import jsonify, request
from marshmallow import Schema, fields, validate

from ...access.roles import Permission
from ...identities import normalize_contact
from ...ledger import clocks, queries
from ...schemas import MAX_EMAIL, MAX_PHONE_INPUT, MAX_TENANT, load, text
from ...services import services
from ..answers import RECEIPT_STATUSES, Change, Time
from .clocks import ClockItem
from .common import ListQuery, Since, allow, bp, known_tenant, page_of, visible_tenants


class EventsQuery(ListQuery):
    tenant = text(1, MAX_TENANT)
    email = text(3, MAX_EMAIL)
    phone = text(3, MAX_PHONE_INPUT)
    since = Since()


class EventItem(Schema):
    id = fields.Integer(required=True)
    source = fields.String(required=True)
    tenant = fields.String(required=True)
    event_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("opt_out", "opt_in", "help", "other", "erasure")))
    keyword = fields.String(allow_none=True)
    review = fields.Boolean(required=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    received_at = Time(required=True)
    occurred_at = Time(allow_none=True)
    receipt_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(RECEIPT_STATUSES))
    changes = fields.List(fields.Nested(Change), required=True)
    evidence_sha256 = fields.String(required=True)
    operator = fields.Function(lambda row: (row["detail"] or {}).get("operator"), allow_none=True,
                               metadata={"description": "the operator who made this write (staff, review)"})
    clocks = fields.List(fields.Nested(ClockItem), required=True,
                         metadata={"description": "the compliance clocks the signal started"})


EventsPage = page_of(EventItem, "EventsPage")


@bp.get("/events")
@allow(Permission.READ)
def events():
    data = load(EventsQuery(), request.args.to_dict())
    email, phone = normalize_contact(data.get("email"), data.get("phone"))
    rows, next_id = queries.events_page(
        services().engine, tenant=known_tenant(data.get("tenant")), tenants=visible_tenants(), email=email, phone=phone,
        since=data.get("since"), after=queries.decode_cursor(data.get("cursor")), limit=data["limit"])
    started = clocks.of_signals(services().engine, [row.id for row in rows])
    items = [{**row._mapping, "clocks": [c._mapping for c in started.get(row.id, [])]} for row in rows]
    return jsonify(EventsPage().dump({"items": items,
                                      "next_cursor": queries.encode_cursor(next_id)}))
