"""What every channel's answer shares: recording a request's signals and the signed receipt headers."""

import json
import uuid

from .. import metrics
from ..ledger.record import Outcome
from ..services import services
from ..settings import SourceConfig
from ..signals import Inbound, Signal
from .requestlog import note_outcome

# Channels served by the receiver itself (not configured sources): their name in the audit trail.
EMAIL_LINK, WEB_FORM = "email-link", "web-form"


def answer_json(source_name: str, outcome: Outcome) -> bytes:
    body = {
        "receipt_id": outcome.receipt_id,
        "status": outcome.status,
        "received_at": outcome.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
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


def record_own(channel: str, tenant: str, signal_fields: dict, evidence: bytes) -> Outcome:
    """Record one opt-out of a channel the receiver serves itself; each request is its own event."""
    event_id = uuid.uuid4().hex
    signal = Signal(event_id=event_id, **signal_fields)
    source = SourceConfig(name=channel, kind=channel, tenant=tenant)
    outcome = services().ledger.record(source, Inbound(request_key=event_id, signals=[signal]), evidence)
    metrics.SIGNALS_RECEIVED.labels(channel, channel, outcome.status).inc()
    note_outcome(outcome.status, channel)
    return outcome
