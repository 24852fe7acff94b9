"""Standard Webhooks partners (booking engines, guest apps): ``v1`` signatures, partner consent events.

The body is one partner event or ``{"events": [...]}`` (1 to 1000), accepted or refused as a
whole: the first bad event answers 400 naming its index and field. Fields we do not know are
dropped, not refused, so a partner can add fields before we read them (forward compatibility);
the signature still covers them. ``webhook-id`` is the request's dedup key (the same on every
retry) and each event's ``id`` is deduplicated within the source on top of it. Svix's header
names (``svix-id``, ``svix-timestamp``, ``svix-signature``) are accepted for the same scheme.
"""

import base64
import binascii

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ..errors import BadRequest, BadSignature
from ..identities import normalize_email, normalize_phone
from ..schemas import (
    MAX_EMAIL,
    MAX_PHONE_INPUT,
    TEXT_ERRORS,
    EmailOrPhone,
    identifier,
    identifier_field,
    join,
    load,
    text,
)
from ..signals import OPT_IN, OPT_OUT, Inbound, Signal
from ..states import STATES
from .base import JSON, HttpRequest, OptionsSchema, Secrets, Source, unix_seconds

HEADERS = ("id", "timestamp", "signature")  # after the prefix: webhook- (the spec's), or svix-
MAX_EVENTS = 1000
SECRET_PREFIX = "whsec_"

# An event's `type` → the signal kind; opt-out adds the named states, opt-in removes them.
TYPES = {"consent.opt_out": OPT_OUT, "consent.opt_in": OPT_IN}


def signed_headers(headers) -> tuple[str, dict[str, str]]:
    """(prefix, {"id", "timestamp", "signature"}): the spec's header names, or Svix's (``svix-id`` …)
    that Svix-hosted senders use by default; the id header decides, so the set is never mixed."""
    prefix = "svix-" if "svix-id" in headers and "webhook-id" not in headers else "webhook-"
    return prefix, {name: headers.get(prefix + name, "") for name in HEADERS}


def _v1_entry(entry: str) -> bool:
    """``v1,<base64 of a 32-byte HMAC-SHA256>``."""
    version, _, encoded = entry.partition(",")
    try:
        return version == "v1" and len(base64.b64decode(encoded, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


class WebhookSecrets(Secrets):
    """``whsec_<base64>`` secrets (a list while rotating), decoded once to their raw key bytes."""

    def convert(self, text: str, position: int) -> bytes:
        return _raw_key(text, position)


def _raw_key(text: str, position: int) -> bytes:
    """The message names the secret's position, never its value."""
    encoded = text.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValidationError(f"secret #{position} must be whsec_ followed by base64")
    return key


class StandardWebhooksOptions(OptionsSchema):
    secret = WebhookSecrets(required=True)


class CustomerSchema(EmailOrPhone):
    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "must be an object"}
    email = text(0, MAX_EMAIL, allow_none=True)  # "" or null: absent
    phone = text(0, MAX_PHONE_INPUT, allow_none=True)


class EventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = identifier_field(required=True)
    type = fields.String(required=True, validate=validate.OneOf(
        TYPES, error="unknown type {input!r}; expected consent.opt_out or consent.opt_in"),
        error_messages=TEXT_ERRORS)
    occurred_at = fields.AwareDateTime(format="iso", allow_none=True, error_messages={
        "invalid": "not an ISO 8601 date-time", "invalid_awareness": "must include a time zone"})
    customer = fields.Nested(CustomerSchema, required=True, error_messages={"required": "missing", "null": "missing"})
    states = fields.List(
        fields.String(validate=validate.OneOf(STATES, error="unknown state {input!r}"),
                      error_messages={"invalid": "not a string"}),
        required=True, validate=validate.Length(min=1, error="must name at least one state"),
        error_messages={"required": "missing", "null": "missing", "invalid": "must be a list"})
    reason = text(0, 1000, allow_none=True)


class StandardWebhooksSource(Source):
    kind = "standard-webhooks"
    options_schema = StandardWebhooksOptions
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        prefix, given = signed_headers(request.headers)
        for name, value in given.items():
            if not value:
                raise BadSignature(f"{prefix}{name}: missing")
        # The library reads the timestamp with float() and signs its floor: without this check
        # 1795515300.9 (or " 1795515300", "1_795_515_300") would pass with 1795515300's signature.
        if unix_seconds(given["timestamp"]) is None:
            raise BadSignature(f"{prefix}timestamp: not Unix seconds")
        # The library gives up at the first entry it cannot split or decode, even when a valid one
        # follows: hand it only the well-formed v1 entries (the others could never match anyway).
        signatures = " ".join(entry for entry in given["signature"].split() if _v1_entry(entry))
        if not signatures:
            raise BadSignature(f"{prefix}signature: no well-formed v1 signature")
        headers = {"webhook-id": given["id"], "webhook-timestamp": given["timestamp"],
                   "webhook-signature": signatures}
        reason = "no matching signature found"
        for secret in self.options["secret"]:
            try:
                # The library checks the ±5-minute window and compares in constant time.
                Webhook(secret).verify(request.body, headers, json_parse=False)
                return
            except WebhookVerificationError as exc:
                reason = str(exc)
            except ValueError:  # raised by the library's decode of the body
                reason = "body is not UTF-8"
        reason = reason.lower()
        header = "timestamp" if "too old" in reason or "too new" in reason else "signature"
        raise BadSignature(f"{prefix}{header}: {reason}")

    def parse(self, request: HttpRequest) -> Inbound:
        prefix, given = signed_headers(request.headers)
        webhook_id = identifier(given["id"], f"{prefix}id")
        body = request.json
        if isinstance(body, dict) and "events" in body:
            events = body["events"]
            if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
                raise BadRequest(f"events: must be a list of 1 to {MAX_EVENTS} events", field="events")
            paths = [f"events[{n}]" for n in range(len(events))]
        elif isinstance(body, dict):
            events, paths = [body], [""]
        else:
            raise BadRequest("body: must be an event object or {\"events\": [...]}", field="body")
        signals, first_index = [], {}
        for event, path in zip(events, paths, strict=True):
            signal = self._signal(event, path)
            if signal.event_id in first_index:
                where = join(path, "id")
                raise BadRequest(f"{where}: repeats {first_index[signal.event_id]}.id", field=where)
            first_index[signal.event_id] = path
            signals.append(signal)
        return Inbound(request_key=webhook_id, signals=signals)

    def _signal(self, event, path: str) -> Signal:
        data = load(EventSchema(), event, path)
        customer = data["customer"]
        email, phone = customer.get("email"), customer.get("phone")
        kind, states = TYPES[data["type"]], frozenset(data["states"])
        return Signal(
            event_id=data["id"],
            kind=kind,
            email=normalize_email(email, field=join(path, "customer.email")) if email else None,
            phone=normalize_phone(phone, field=join(path, "customer.phone")) if phone else None,
            add=states if kind == OPT_OUT else frozenset(),
            remove=states if kind == OPT_IN else frozenset(),
            keyword=data["type"],
            occurred_at=data.get("occurred_at"),
            detail={"reason": data["reason"]} if data.get("reason") else {},
        )

    def hmac_secrets(self) -> list[bytes]:
        """Every configured secret signs the receipt, so the partner checks it with the one it holds."""
        return list(self.options["secret"])

