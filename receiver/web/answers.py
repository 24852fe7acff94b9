"""What every channel's answer shares: recording and counting its signals, the receipt (its schema and
signed headers), the time format of JSON answers, and the language of HTML pages."""

import json
from datetime import datetime

from flask import request
from flask_babel import get_locale
from marshmallow import Schema, fields, validate

from .. import metrics
from ..ledger.record import Outcome
from ..services import services
from ..signals import Inbound
from ..sources import own_source
from ..states import STATES
from .requestlog import note_outcome

LANGUAGES = {"en": "English", "fr": "Français"}
RECEIPT_STATUSES = ("accepted", "duplicate", "ignored")


def iso(value: datetime | None) -> str | None:
    """A UTC time as every JSON answer writes it: ``2026-11-23T10:15:00Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


class Time(fields.Field):
    """A UTC time in a JSON answer, dumped by ``iso``."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"type": "string", "format": "date-time", **kwargs.pop("metadata", {})}, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


class Change(Schema):
    """What one signal changed for one identity (``email`` or ``phone``): states set, states lifted."""

    email = fields.String()
    phone = fields.String()
    states = fields.List(fields.String(validate=validate.OneOf(STATES)))
    removed = fields.List(fields.String(validate=validate.OneOf(STATES)))


class ReceiptAnswer(Schema):
    receipt_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(RECEIPT_STATUSES))
    received_at = Time(required=True)
    source = fields.String(required=True)
    event_ids = fields.List(fields.String(), required=True)
    changes = fields.List(fields.Nested(Change), required=True)
    original_receipt_id = fields.String()
    duplicate_event_ids = fields.List(fields.String())


def select_locale() -> str:
    """Flask-Babel's selector: ``?lang=`` forces a language; else the browser's Accept-Language; else English."""
    forced = request.args.get("lang")
    if forced in LANGUAGES:
        return forced
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def page_language() -> str:
    """The language this request's HTML page is in (the selector's choice, made once per request)."""
    return str(get_locale() or "en")


def answer_json(source_name: str, outcome: Outcome) -> bytes:
    body = {"receipt_id": outcome.receipt_id, "status": outcome.status, "received_at": outcome.received_at,
            "source": source_name, "event_ids": outcome.event_ids, "changes": outcome.changes}
    if outcome.original_receipt_id:
        body["original_receipt_id"] = outcome.original_receipt_id
    if outcome.duplicate_event_ids:
        body["duplicate_event_ids"] = outcome.duplicate_event_ids
    return json.dumps(ReceiptAnswer().dump(body), separators=(",", ":")).encode()


def receipt_headers(body: bytes, outcome: Outcome, hmac_secrets=()) -> dict[str, str]:
    return services().signer.headers(body, receipt_id=outcome.receipt_id, hmac_secrets=list(hmac_secrets))


def record_own(channel: str, tenant: str, inbound: Inbound, evidence: bytes) -> Outcome:
    """Record and count a request of one of the receiver's own channels (``sources.OWN``)."""
    outcome = services().ledger.record(own_source(channel, tenant), inbound, evidence)
    counted(channel, channel, outcome)
    return outcome


def counted(source_name: str, kind: str, outcome: Outcome) -> None:
    """A recorded request, counted in the metrics and named in its request log line."""
    metrics.SIGNALS_RECEIVED.labels(source_name, kind, outcome.status).inc()
    note_outcome(outcome.status, source_name)
