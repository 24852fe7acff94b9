"""SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + body, events mapped onto email signals.

The body is a JSON array of any number of events (SendGrid posts batches of up to 768 KB). One
odd event never refuses the batch: SendGrid retries a refused batch byte for byte for a day and
then drops it, so one odd event would sink every opt-out posted with it. An event without a
usable ``sg_event_id`` (SendGrid's own troubleshooting sample has none) is recorded under
``sha256:`` + the SHA-256 of its canonical JSON; an event that is not an object, names no event,
or is an opt-out without a valid address is recorded as ``ignored``, with the reason in its detail.
Such an opt-out is one a guest asked for and nobody applied, so it is also counted
(``receiver_unusable_opt_outs_total{source}``) and logged as a warning with the address masked,
each time a batch carrying it is received.

SendGrid may re-send an event under a new ``sg_event_id``: that is a new signal in the audit
trail, but the ledger adds a state only once, so an opt-out already in force creates no second
CRM delivery.
"""

import base64
import binascii
import hashlib
import json
import logging

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from marshmallow import ValidationError

from .. import clock, metrics
from ..backfill.options import SendGridBackfill
from ..backfill.options import option as backfill_option
from ..errors import BadRequest, BadSignature
from ..identities import mask_email
from ..schemas import is_identifier
from ..signals import Inbound, Signal
from ..states import MARKETING_DECLINE
from .base import JSON, HttpRequest, Secrets, Source, unix_seconds
from .esp import COMPLAINT, EspOptions, email_signal, mapped_state, unix_time

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TOLERANCE_SECONDS = 5 * 60  # contract: 5 minutes both ways

# `event` → the state it adds; every other event is only recorded (`ignored`).
EVENT_STATES = {
    "unsubscribe": MARKETING_DECLINE,
    "group_unsubscribe": MARKETING_DECLINE,
    "spamreport": COMPLAINT,
}
DETAIL_FIELDS = ("sg_message_id", "asm_group_id", "category")

log = logging.getLogger(__name__)


class PublicKeys(Secrets):
    """SendGrid's Verification Key (base64 DER SubjectPublicKeyInfo, or PEM); a list while rotating."""

    def convert(self, text: str, position: int) -> ec.EllipticCurvePublicKey:
        return load_public_key(text, position)


def load_public_key(text: str, position: int = 1) -> ec.EllipticCurvePublicKey:
    try:
        if "-----BEGIN" in text:
            key = load_pem_public_key(text.strip().encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise ValidationError(f"key #{position} is not a base64 DER public key (SendGrid's Verification Key)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValidationError(f"key #{position} is not an EC P-256 public key")
    return key


class SendGridOptions(EspOptions):
    public_key = PublicKeys(required=True)
    backfill = backfill_option(SendGridBackfill)  # the suppression lists, read by `receiver backfill`


class SendGridSource(Source):
    kind = "sendgrid"
    options_schema = SendGridOptions
    content_types = (JSON,)
    max_body = 2 * 1024 * 1024  # SendGrid posts batches "up to 768 KB"; room to spare

    def verify(self, request: HttpRequest) -> None:
        given, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
        if not given:
            raise BadSignature(f"{SIGNATURE}: missing")
        if not timestamp:
            raise BadSignature(f"{TIMESTAMP}: missing")
        seconds = unix_seconds(timestamp)
        if seconds is None:
            raise BadSignature(f"{TIMESTAMP}: not Unix seconds")
        if abs(clock.now() - seconds) > TOLERANCE_SECONDS:
            raise BadSignature(f"{TIMESTAMP}: stale (more than 5 minutes from our clock)")
        try:
            der = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature(f"{SIGNATURE}: not base64") from None
        signed = timestamp.encode() + request.body  # the header's exact bytes, then the raw body
        for key in self.options["public_key"]:
            try:
                key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
                return
            except (InvalidSignature, ValueError):
                continue
        raise BadSignature(f"{SIGNATURE}: does not match")

    def parse(self, request: HttpRequest) -> Inbound:
        """``request_key`` is the body's SHA-256: a batch carries no id of its own, and SendGrid
        retries a batch with the same bytes, so a retry is answered ``duplicate`` from the first
        answer; events repeated in a different batch are still caught by their event ids."""
        events = request.json
        if not isinstance(events, list):
            raise BadRequest("body: must be a JSON array of events", field="body")
        if not events:
            raise BadRequest("body: must hold at least one event", field="body")
        signals = [self._signal(event, f"[{n}]") for n, event in enumerate(events)]
        return Inbound(request_key=hashlib.sha256(request.body).hexdigest(), signals=signals)

    def _signal(self, event, path: str) -> Signal:
        if not isinstance(event, dict):
            return _unusable(event, f"{path}: not an object")
        name = event.get("event")
        if not is_identifier(name):
            return _unusable(event, f"{path}.event: missing or not a short string")
        state = mapped_state(EVENT_STATES.get(name), self.options)
        detail = {"event": name, **{k: event[k] for k in DETAIL_FIELDS if event.get(k) not in (None, "", [])}}
        event_id = event_id_of(event)
        try:
            return email_signal(event_id, event.get("email"), add={state} if state else (), keyword=name,
                                occurred_at=unix_time(event.get("timestamp")), detail=detail, field=f"{path}.email")
        except BadRequest as refused:  # an opt-out we cannot apply: kept in the trail, never sinks the batch
            # ... and shown to the operator: the guest asked to opt out and nothing was applied.
            metrics.UNUSABLE_OPT_OUTS.labels(self.config.name).inc()
            log.warning("source %s: %s event %s with an unusable address %r recorded as ignored (%s)",
                        self.config.name, name, event_id, masked(event.get("email")), refused.message)
            return email_signal(event_id, None, keyword=name, occurred_at=unix_time(event.get("timestamp")),
                                detail={**detail, "unusable": refused.message})


def event_id_of(event) -> str:
    """The event's ``sg_event_id``, or an id derived from its content when it has no usable one."""
    given = event.get("sg_event_id") if isinstance(event, dict) else None
    if is_identifier(given):
        return given
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def masked(value) -> str:
    """An address that could not be used, as a log line may show it."""
    if value is None or value == "":
        return "missing"
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    return mask_email(value) if "@" in value else value[:1] + "***"


def _unusable(event, reason: str) -> Signal:
    return email_signal(event_id_of(event), None, detail={"unusable": reason})
