"""Postmark webhooks: Basic credentials (Postmark does not sign), ``RecordType`` mapped onto email signals.

Dedup key. Postmark sends no event id; the contract's key is RecordType + MessageID + ChangedAt
(BouncedAt for bounces). MessageID is null for manual suppressions and reactivations, so the key
also carries the bounce ``ID`` and a short digest of the address, MessageStream and
SuppressSending: two guests suppressed in the same instant stay apart, and the address itself
stays out of the key (keys are echoed in answers and may be logged).

Re-consent. A reactivation (``SuppressSending: false``) is ignored unless the source sets
``honour_resubscribe = true``; then it lifts ``marketing_decline`` only, never ``mail_ban``: a ban
comes from a complaint or the guest's own "no email at all", which a suppression list cannot undo.

A ``Bounce`` of Type ``Unsubscribe`` (TypeCode 16, "Unsubscribe request") that carries an ``Email``
is the recipient's unsubscribe: a marketing decline.

Events that change nothing (hard-bounce suppressions, other bounces, deliveries, opens, clicks, any
RecordType added later) are recorded as ``ignored``, with their address when it is a valid one;
they are never refused for a missing address, since a refusal only makes Postmark retry.
"""

import base64
import binascii
import hashlib
import json
from datetime import datetime

from marshmallow import ValidationError, fields

from ..backfill.options import PostmarkBackfill
from ..backfill.options import option as backfill_option
from ..errors import BadRequest, BadSignature
from ..schemas import identifier
from ..signals import Inbound
from ..states import MARKETING_DECLINE
from .base import JSON, HttpRequest, Secrets, Source, secret_matches
from .esp import COMPLAINT, EspOptions, email_signal, mapped_state

# The dedup key's visible parts are bounded so that the whole key always fits the ledger's 255:
# RecordType (Postmark's longest is SubscriptionChange, 18) + MessageID, time and ID + the
# 16-character digest + 4 colons = 32 + 3 × 64 + 16 + 4 = 244.
MAX_RECORD_TYPE = 32
MAX_PART = 64

# SubscriptionChange with SuppressSending true: SuppressionReason → the state it adds. A null or
# unknown reason is still a suppression by the ESP, so a marketing decline (contract, ESP mapping).
SUPPRESSION_REASONS = {
    "ManualSuppression": MARKETING_DECLINE,  # a recipient's unsubscribe, or the operator's
    "SpamComplaint": COMPLAINT,
    "HardBounce": None,  # a bounce is not an opt-out
}
# Bounce: Type → the state it adds (the bounce hook carries spam complaints too, and "Unsubscribe",
# TypeCode 16, a recipient's unsubscribe request); others add none.
BOUNCE_TYPES = {"SpamComplaint": COMPLAINT, "Unsubscribe": MARKETING_DECLINE}
UNSUBSCRIBE_TYPE_CODE = 16
# RecordType → where its address and its time are (Delivery, Open, Click and others: the defaults).
ADDRESS_FIELDS = {"Bounce": "Email", "SpamComplaint": "Email"}
TIME_FIELDS = {"SubscriptionChange": "ChangedAt", "Bounce": "BouncedAt", "SpamComplaint": "BouncedAt",
               "Delivery": "DeliveredAt"}


def _user_password(values: list[str]) -> None:
    for entry in values:
        user, colon, password = entry.partition(":")
        if not (colon and user and password):  # ":" alone would let "Basic Og==" in
            raise ValidationError('must be "user:password", neither empty (or a list of them)')


class PostmarkOptions(EspOptions):
    basic_auth = Secrets(required=True, validate=_user_password)  # the credentials in the webhook URL
    honour_resubscribe = fields.Boolean(load_default=False)
    backfill = backfill_option(PostmarkBackfill)  # the suppressions dump, read by `receiver backfill`


def _part(record: dict, name: str, limit: int = MAX_PART) -> str:
    """One visible part of the dedup key: a string or number of at most ``limit`` characters that
    passes the identifier rule, or "" when absent."""
    value = record.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > limit:
        raise BadRequest(f"{name}: not a string or number of at most {limit} characters", field=name)
    return identifier(str(value), name)


def dedup_key(record_type: str, record: dict, address: str) -> str:
    """RecordType:MessageID:<time>:ID:<digest of address, MessageStream, SuppressSending>."""
    hidden = [address, record.get("MessageStream"), record.get("SuppressSending")]
    digest = hashlib.sha256(json.dumps(hidden).encode()).hexdigest()[:16]
    when = _part(record, TIME_FIELDS.get(record_type, "ReceivedAt"))
    return ":".join([record_type, _part(record, "MessageID"), when, _part(record, "ID"), digest])


def _occurred_at(value) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _detail(record: dict) -> dict:
    """What the audit trail keeps besides the address (the evidence hash covers the whole body)."""
    detail = {"message_id": record.get("MessageID"), "message_stream": record.get("MessageStream"),
              "origin": record.get("Origin"), "suppress_sending": record.get("SuppressSending"),
              "suppression_reason": record.get("SuppressionReason"), "type": record.get("Type"),
              "tag": record.get("Tag")}
    return {name: value for name, value in detail.items() if value is not None and value != ""}


def _text(record: dict, name: str) -> str | None:
    value = record.get(name)
    return value if isinstance(value, str) else None


class PostmarkSource(Source):
    kind = "postmark"
    options_schema = PostmarkOptions
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        scheme, _, encoded = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise BadSignature("Authorization: missing Basic credentials")
        try:
            given = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadSignature("Authorization: malformed Basic credentials") from None
        if not secret_matches(given, self.options["basic_auth"]):
            raise BadSignature("Authorization: wrong credentials")

    def parse(self, request: HttpRequest) -> Inbound:
        record = request.json
        if not isinstance(record, dict):
            raise BadRequest("body: must be one JSON object", field="body")
        if not isinstance(record.get("RecordType"), str) or not record["RecordType"]:
            raise BadRequest("RecordType: missing or not a string", field="RecordType")
        record_type = _part(record, "RecordType", MAX_RECORD_TYPE)  # it starts the key and the event id
        rule = self.RECORD_TYPES.get(record_type)
        add, remove = rule(self, record) if rule else (set(), set())
        address_field = ADDRESS_FIELDS.get(record_type, "Recipient")
        address = record.get(address_field) if isinstance(record.get(address_field), str) else ""
        key = dedup_key(record_type, record, address)
        occurred_at = _occurred_at(record.get(TIME_FIELDS.get(record_type, "ReceivedAt")))
        signal = email_signal(key, address, add=add, remove=remove, keyword=record_type,
                              occurred_at=occurred_at, detail=_detail(record), field=address_field)
        return Inbound(request_key=key, signals=[signal])

    def _states(self, rule: str | None) -> set[str]:
        state = mapped_state(rule, self.options)
        return {state} if state else set()

    def _subscription_change(self, record: dict) -> tuple[set[str], set[str]]:
        suppress = record.get("SuppressSending")
        if not isinstance(suppress, bool):
            raise BadRequest("SuppressSending: must be true or false", field="SuppressSending")
        if suppress:
            reason = _text(record, "SuppressionReason")
            return self._states(SUPPRESSION_REASONS.get(reason, MARKETING_DECLINE)), set()
        return set(), {MARKETING_DECLINE} if self.options["honour_resubscribe"] else set()

    def _bounce(self, record: dict) -> tuple[set[str], set[str]]:
        bounce_type = _text(record, "Type")
        if bounce_type is None and record.get("TypeCode") == UNSUBSCRIBE_TYPE_CODE:
            bounce_type = "Unsubscribe"
        if bounce_type == "Unsubscribe" and not _text(record, "Email"):
            return set(), set()  # an unsubscribe request without an address names nobody to opt out
        return self._states(BOUNCE_TYPES.get(bounce_type)), set()

    def _spam_complaint(self, record: dict) -> tuple[set[str], set[str]]:
        return self._states(COMPLAINT), set()

    # RecordType → the rule giving (states added, states removed); any other type changes nothing.
    RECORD_TYPES = {
        "SubscriptionChange": _subscription_change,
        "Bounce": _bounce,
        "SpamComplaint": _spam_complaint,
    }
