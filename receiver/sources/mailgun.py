"""Mailgun webhooks: an HMAC over timestamp + token, ``event-data`` mapped onto email signals.

Mailgun's signature covers only ``signature.timestamp + signature.token``, never ``event-data``:
whoever sees one signed request could staple its signature onto another event. So the token is
handed to the ledger as a single-use nonce bound to this request's ``event-data.id``; the same
token with another event id is refused (401), while Mailgun's own retries (the same body with the
original signature) are answered ``duplicate``. The token is remembered for as long as its
timestamp is accepted (12 hours: Mailgun retries for about 8 with the original signature), plus
a few minutes so that a request verified just before the limit still finds it when recorded.

Legacy webhooks (still configured on older accounts) post form fields, URL-encoded or multipart:
top-level ``timestamp``, ``token``, ``signature``, ``event``, ``recipient`` and ``Message-Id``, with
the message's user-variables merged in (Mailgun's own signature fields come last, its event fields
first). They are signed and checked the same way. Having no event id, a legacy post is keyed by
``legacy:`` + the SHA-256 of its timestamp, token, event, recipient and Message-Id: Mailgun's
retries (the same fields, the original signature) are duplicates, two posts are two events even for
one message (a guest may unsubscribe again after re-consenting), and the same token with another
event is a new key, so the token rule refuses it (401) as for JSON hooks.
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from werkzeug.datastructures import MultiDict

from .. import clock
from ..backfill.options import MailgunBackfill
from ..backfill.options import option as backfill_option
from ..errors import BadRequest, BadSignature
from ..schemas import identifier, is_identifier
from ..signals import Inbound, Signal
from ..states import MARKETING_DECLINE
from .base import FORM, JSON, MULTIPART, HttpRequest, Secrets, Source, secret_matches, unix_seconds
from .esp import COMPLAINT, EspOptions, email_signal, mapped_state, unix_time

MAX_AGE = timedelta(hours=12)
MAX_AHEAD = timedelta(minutes=5)

# event-data.event → the state it adds; every other event is only recorded (`ignored`).
EVENT_STATES = {
    "unsubscribed": MARKETING_DECLINE,
    "complained": COMPLAINT,
}


class MailgunOptions(EspOptions):
    signing_key = Secrets(required=True)  # the HTTP webhook signing key; a list while rotating
    backfill = backfill_option(MailgunBackfill)  # the suppression lists, read by `receiver backfill`


def signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's scheme: hex HMAC-SHA256 of the plain concatenation timestamp + token."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def _object(request: HttpRequest) -> dict:
    body = request.json
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object", field="body")
    return body


def _form(request: HttpRequest) -> MultiDict:
    """A legacy post's fields, URL-encoded or multipart (files, such as a complaint's copy, are dropped)."""
    return request.multipart if request.mimetype == MULTIPART else request.form


def _last(fields: MultiDict, name: str) -> str | None:
    """Mailgun's own value of a signature field: user-variables of the same name come before it."""
    values = fields.getlist(name)
    return values[-1] if values else None


class SignedFields(NamedTuple):
    where: str  # how error messages name the fields: "signature." in JSON hooks, "" in legacy posts
    timestamp: str
    token: str
    given: list[str]  # the signatures to check


def _signed_fields(request: HttpRequest) -> SignedFields:
    """The signed fields; anything missing or malformed is a bad signature."""
    if request.mimetype == JSON:
        block, where = _object(request).get("signature"), "signature."
        if not isinstance(block, dict):
            raise BadSignature("signature: missing")
        # A subaccount domain's hook also carries `parent-signature`, made with the parent account's key.
        names = ("signature", "parent-signature")
    else:
        fields, where = _form(request), ""
        block = {name: _last(fields, name) for name in ("timestamp", "token", "signature")}
        names = ("signature",)
    timestamp, token = block.get("timestamp"), block.get("token")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if unix_seconds(timestamp) is None:
        raise BadSignature(f"{where}timestamp: missing or not Unix seconds")
    if not is_identifier(token):  # the token is stored as the replay nonce
        raise BadSignature(f"{where}token: missing or malformed")
    given = [block[name] for name in names if isinstance(block.get(name), str)]
    if not given:
        raise BadSignature(f"{where}signature: missing")
    return SignedFields(where, timestamp, token, given)


def _text(data: dict, name: str) -> str:
    field = f"event-data.{name}"
    if data.get(name) in (None, ""):
        raise BadRequest(f"{field}: missing", field=field)
    return identifier(data[name], field)


class MailgunSource(Source):
    kind = "mailgun"
    options_schema = MailgunOptions
    content_types = (JSON, FORM, MULTIPART)

    def verify(self, request: HttpRequest) -> None:
        signed = _signed_fields(request)
        expected = [signature(key, signed.timestamp, signed.token) for key in self.options["signing_key"]]
        if not any(secret_matches(candidate, expected) for candidate in signed.given):
            raise BadSignature(f"{signed.where}signature: does not match")
        age = clock.now() - int(signed.timestamp)
        if age > MAX_AGE.total_seconds() or -age > MAX_AHEAD.total_seconds():
            raise BadSignature(f"{signed.where}timestamp: stale (over 12 hours old or ahead of our clock)")

    def parse(self, request: HttpRequest) -> Inbound:
        """The body was parsed once, by ``verify``: HttpRequest keeps what it parsed."""
        signed = _signed_fields(request)
        timestamp, token = signed.timestamp, signed.token
        if request.mimetype != JSON:
            return self._legacy(_form(request), timestamp, token)
        body = _object(request)
        data = body.get("event-data")
        if not isinstance(data, dict):
            raise BadRequest("event-data: missing or not an object", field="event-data")
        event, event_id = _text(data, "event"), _text(data, "id")
        state = mapped_state(EVENT_STATES.get(event), self.options)
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
        detail = {"event": event, "severity": data.get("severity"), "reason": data.get("reason"),
                  "message_id": headers.get("message-id"), "tags": data.get("tags")}
        detail = {k: v for k, v in detail.items() if v}
        signal = email_signal(event_id, data.get("recipient"), add={state} if state else (), keyword=event,
                              occurred_at=unix_time(data.get("timestamp")), detail=detail,
                              field="event-data.recipient")
        return _inbound(event_id, signal, timestamp, token)

    def _legacy(self, fields: MultiDict, timestamp: str, token: str) -> Inbound:
        event, recipient = fields.get("event"), fields.get("recipient")  # first values: Mailgun's own
        if not event:
            raise BadRequest("event: missing", field="event")
        identifier(event, "event")
        message_id = fields.get("Message-Id") or fields.get("message-id")
        identity = json.dumps([timestamp, token, event, recipient, message_id])
        key = "legacy:" + hashlib.sha256(identity.encode()).hexdigest()
        detail = {"event": event, "format": "legacy", "message_id": message_id, "reason": fields.get("reason"),
                  "code": fields.get("code"), "tags": fields.getlist("tag") or fields.getlist("X-Mailgun-Tag")}
        detail = {k: v for k, v in detail.items() if v}
        state = mapped_state(EVENT_STATES.get(event), self.options)
        signal = email_signal(key, recipient, add={state} if state else (), keyword=event,
                              occurred_at=unix_time(int(timestamp)), detail=detail, field="recipient")
        return _inbound(key, signal, timestamp, token)


def _inbound(key: str, signal: Signal, timestamp: str, token: str) -> Inbound:
    return Inbound(request_key=key, signals=[signal], nonce=token,
                   nonce_expires_at=datetime.fromtimestamp(int(timestamp), UTC) + MAX_AGE + MAX_AHEAD)
