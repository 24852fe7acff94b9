"""Mailgun webhooks: an HMAC over timestamp + token, ``event-data`` mapped onto email signals.

Mailgun's signature covers only ``signature.timestamp + signature.token``, never ``event-data``:
whoever sees one signed request could staple its signature onto another event. So the token is
handed to the ledger as a single-use nonce bound to this request's ``event-data.id``; the same
token with another event id is refused (401), while Mailgun's own retries (the same body with the
original signature) are answered ``duplicate``. The token is remembered for as long as its
timestamp is accepted (12 hours: Mailgun retries for about 8 with the original signature), plus
a few minutes so that a request verified just before the limit still finds it when recorded.
"""

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime, timedelta

from ..errors import BadRequest, BadSignature
from ..schemas import identifier
from ..signals import Inbound
from ..states import MARKETING_DECLINE
from .base import JSON, HttpRequest, Secrets, Source, secret_matches
from .esp import EspOptions, email_signal, unix_time

MAX_AGE = timedelta(hours=12)
MAX_AHEAD = timedelta(minutes=5)
MAX_TEXT = 255  # the ledger's key columns

COMPLAINT = "complaint"  # stands for the source's `complaint` option
# event-data.event → the state it adds; every other event is only recorded (`ignored`).
EVENT_STATES = {
    "unsubscribed": MARKETING_DECLINE,
    "complained": COMPLAINT,
}


class MailgunOptions(EspOptions):
    signing_key = Secrets(required=True)  # the HTTP webhook signing key; a list while rotating


def signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's scheme: hex HMAC-SHA256 of the plain concatenation timestamp + token."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def _object(request: HttpRequest) -> dict:
    body = request.json()
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object", field="body")
    return body


def _signed_fields(body: dict) -> tuple[str, str, list[str]]:
    """(timestamp, token, given signatures); anything missing or malformed is a bad signature."""
    block = body.get("signature")
    if not isinstance(block, dict):
        raise BadSignature("signature: missing")
    timestamp, token = block.get("timestamp"), block.get("token")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not isinstance(timestamp, str) or not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise BadSignature("signature.timestamp: missing or not Unix seconds")
    if not isinstance(token, str) or not token or len(token) > MAX_TEXT:
        raise BadSignature("signature.token: missing or malformed")
    # A subaccount domain's hook also carries `parent-signature`, made with the parent account's key.
    given = [block[name] for name in ("signature", "parent-signature") if isinstance(block.get(name), str)]
    if not given:
        raise BadSignature("signature.signature: missing")
    return timestamp, token, given


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise BadRequest(f"event-data.{name}: missing or not a string", field=f"event-data.{name}")
    return identifier(value, f"event-data.{name}")


class MailgunSource(Source):
    kind = "mailgun"
    options_schema = MailgunOptions
    content_types = (JSON,)

    def _signing_keys(self) -> list[str]:
        key = self.options["signing_key"]
        return [key] if isinstance(key, str) else list(key)

    def verify(self, request: HttpRequest) -> None:
        timestamp, token, given = _signed_fields(_object(request))
        expected = [signature(key, timestamp, token) for key in self._signing_keys()]
        if not any(secret_matches(candidate, expected) for candidate in given):
            raise BadSignature("signature: does not match")
        age = time.time() - int(timestamp)
        if age > MAX_AGE.total_seconds() or -age > MAX_AHEAD.total_seconds():
            raise BadSignature("signature.timestamp: stale (over 12 hours old or ahead of our clock)")

    def parse(self, request: HttpRequest) -> Inbound:
        body = _object(request)
        timestamp, token, _ = _signed_fields(body)
        data = body.get("event-data")
        if not isinstance(data, dict):
            raise BadRequest("event-data: missing or not an object", field="event-data")
        event, event_id = _text(data, "event"), _text(data, "id")
        rule = EVENT_STATES.get(event)
        state = self.options["complaint"] if rule == COMPLAINT else rule
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
        detail = {"event": event, "severity": data.get("severity"), "reason": data.get("reason"),
                  "message_id": headers.get("message-id"), "tags": data.get("tags")}
        detail = {k: v for k, v in detail.items() if v}
        signal = email_signal(event_id, data.get("recipient"), add={state} if state else (), keyword=event,
                              occurred_at=unix_time(data.get("timestamp")), detail=detail,
                              field="event-data.recipient")
        return Inbound(request_key=event_id, signals=[signal], nonce=token,
                       nonce_expires_at=datetime.fromtimestamp(int(timestamp), UTC) + MAX_AGE + MAX_AHEAD)
