"""The operator API's read side and replay: consent look-ups, the audit trail, deliveries, the export.

Routes hang on the /v1 blueprint of web/admin.py, so the bearer check there covers them.
"""

import csv
import io
import re
from datetime import UTC, datetime, time

from flask import Response, jsonify, request, stream_with_context
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from ..errors import BadRequest, NotFound
from ..identities import normalize_contact
from ..ledger import queries
from ..ledger.outbox import DEAD, DONE, PENDING, SKIPPED
from ..schemas import TEXT_ERRORS, EmailOrPhone, load, text
from ..services import services
from ..states import may_receive
from .admin import bp, json_body
from .answers import iso

MAX_RECIPIENTS = 1000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+\d{1,15}")
class Since(fields.Field):
    """A date (``2026-11-01``) or an ISO 8601 time with a zone; read as UTC midnight for a date."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"type": "string", "description": "YYYY-MM-DD or an ISO 8601 time with a zone"},
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            moment = fields.AwareDateTime(format="iso", default_timezone=None).deserialize(value)
        except ValidationError:
            try:
                moment = datetime.combine(fields.Date().deserialize(value), time(), UTC)
            except ValidationError:
                raise ValidationError("must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone") from None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("out of range") from None


class ListQuery(Schema):
    class Meta:
        unknown = RAISE

    cursor = text(1, 200)
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000, error="must be 1 to 1000"),
                           error_messages={"invalid": "not a number"})


class ConsentQuery(EmailOrPhone):
    class Meta:
        unknown = RAISE

    identity_error_field = "email"
    tenant = text(1, 64, required=True)
    email = text(3, 254)
    phone = text(3, 64)


class EventsQuery(ListQuery):
    tenant = text(1, 64)
    email = text(3, 254)
    phone = text(3, 64)
    since = Since()


class DeliveriesQuery(ListQuery):
    status = fields.String(validate=validate.OneOf((PENDING, DONE, SKIPPED, DEAD), error="must be one of {choices}"),
                           error_messages=TEXT_ERRORS)
    tenant = text(1, 64)


class ExportQuery(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, 64)
    since = Since()


class RecipientSchema(EmailOrPhone):
    class Meta:
        unknown = EXCLUDE

    identity_error_field = "email"
    email = text(3, 254, allow_none=True)
    phone = text(3, 64, allow_none=True)


class ConsentCheckSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, 64, required=True)
    recipients = fields.List(fields.Nested(RecipientSchema), required=True, validate=validate.Length(
        1, MAX_RECIPIENTS, error=f"must be a list of 1 to {MAX_RECIPIENTS} recipients"),
        error_messages={"required": "missing", "invalid": "must be a list"})


def known_tenant(name: str | None, field: str = "tenant") -> str | None:
    if name is not None and name not in services().settings.tenants:
        raise BadRequest(f"{field}: unknown tenant {name!r}", field=field)
    return name


@bp.get("/consent")
def consent():
    data = load(ConsentQuery(), request.args.to_dict())
    tenant = known_tenant(data["tenant"])
    email, phone = normalize_contact(data.get("email"), data.get("phone"))
    states = queries.guest_states(services().engine, tenant, email, phone)
    return jsonify(tenant=tenant, email=email, phone=phone,
                   states={state: iso(since) for state, since in sorted(states.items())})


@bp.post("/consent/check")
def consent_check():
    data = load(ConsentCheckSchema(), json_body())
    tenant = known_tenant(data["tenant"])
    people = [normalize_contact(r.get("email"), r.get("phone"), path=f"recipients[{n}]")
              for n, r in enumerate(data["recipients"])]
    found = queries.states_by_identity(services().engine, tenant, [i for pair in people for i in pair])
    results = []
    for email, phone in people:
        states = queries.merge_states(found, email, phone)
        results.append({"email": email, "phone": phone, "states": {s: iso(t) for s, t in sorted(states.items())},
                        **may_receive(states)})
    return jsonify(tenant=tenant, recipients=results)


@bp.get("/events")
def events():
    data = load(EventsQuery(), request.args.to_dict())
    email, phone = normalize_contact(data.get("email"), data.get("phone"))
    rows, next_id = queries.events_page(
        services().engine, tenant=known_tenant(data.get("tenant")), email=email, phone=phone,
        since=data.get("since"), after=queries.decode_cursor(data.get("cursor")), limit=data["limit"])
    items = [{
        "id": signal.id, "source": signal.source, "tenant": signal.tenant, "event_id": signal.event_id,
        "kind": signal.kind, "keyword": signal.keyword, "review": signal.review, "email": signal.email,
        "phone": signal.phone, "received_at": iso(signal.received_at), "occurred_at": iso(signal.occurred_at),
        "receipt_id": signal.receipt_id, "status": signal.status, "changes": signal.changes,
        "evidence_sha256": signal.evidence_sha256,
    } for signal in rows]
    return jsonify(items=items, next_cursor=queries.encode_cursor(next_id))


@bp.get("/deliveries")
def deliveries():
    data = load(DeliveriesQuery(), request.args.to_dict())
    rows, next_id = queries.deliveries_page(
        services().engine, status=data.get("status"), tenant=known_tenant(data.get("tenant")),
        after=queries.decode_cursor(data.get("cursor")), limit=data["limit"])
    items = [{
        "id": d.id, "crm": d.crm, "tenant": d.tenant, "identity": d.identity, "status": d.status,
        "reason": d.reason, "attempts": d.attempts, "last_error": d.last_error, "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.status == PENDING else None,
        "attempt_log": [{"started_at": iso(a.started_at), "finished_at": iso(a.finished_at), "outcome": a.outcome,
                         "http_status": a.http_status, "detail": a.detail} for a in attempts],
    } for d, attempts in rows]
    return jsonify(items=items, next_cursor=queries.encode_cursor(next_id))


@bp.post("/deliveries/<int:delivery_id>/replay")
def replay(delivery_id: int):
    previous = queries.replay(services().engine, delivery_id) if delivery_id <= queries.MAX_ID else None
    if previous is None:
        raise NotFound(f"no delivery {delivery_id}")
    return jsonify(id=delivery_id, status=PENDING, previous_status=previous)


def spreadsheet_safe(cell: str | None) -> str | None:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading quote (OWASP).

    Phone numbers (``+`` and digits) stay as they are: there is no formula in them to run.
    """
    if cell and cell[0] in _FORMULA_STARTS and not _E164.fullmatch(cell):
        return "'" + cell
    return cell


@bp.get("/export.csv")
def export_csv():
    data = load(ExportQuery(), request.args.to_dict())
    rows = queries.export_rows(services().engine, tenant=known_tenant(data.get("tenant")), since=data.get("since"))

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("tenant", "identity", "state", "since"))
        for count, (tenant, identity, state, since) in enumerate(rows, start=1):
            writer.writerow([spreadsheet_safe(cell) for cell in (tenant, identity, state, iso(since))])
            if count % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="consent.csv"'})
