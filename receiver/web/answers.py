"""What every channel's answer shares: recording and counting its signals, the signed receipt headers,
the time format of JSON answers, and the language of HTML pages."""

import json
from datetime import datetime

from flask import request
from flask_babel import get_locale

from .. import metrics
from ..ledger.record import Outcome
from ..services import services
from ..signals import Inbound
from ..sources import own_source
from .requestlog import note_outcome

LANGUAGES = {"en": "English", "fr": "Français"}


def iso(value: datetime | None) -> str | None:
    """A UTC time as every JSON answer writes it: ``2026-11-23T10:15:00Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


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
    body = {
        "receipt_id": outcome.receipt_id,
        "status": outcome.status,
        "received_at": iso(outcome.received_at),
        "source": source_name,
        "event_ids": outcome.event_ids,
        "changes": outcome.changes,
    }
    if outcome.original_receipt_id:
        body["original_receipt_id"] = outcome.original_receipt_id
    if outcome.duplicate_event_ids:
        body["duplicate_event_ids"] = outcome.duplicate_event_ids
    return json.dumps(body, separators=(",", ":")).encode()


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
