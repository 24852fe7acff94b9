"""Hostile field values at every door that takes JSON: never a 5xx (a sender retries one for days),
a 400 naming the field, nothing stored; the same on SQLite and PostgreSQL (run with DATABASE_URL too).

The classes a probe of every inbound route found (each a 500 or a 503 before its fix):
- a lone surrogate (``"\\ud800"`` in a JSON string) in an address, a link's campaign or a note
  could not be encoded to be stored: a 500 on both databases;
- ``NaN`` / ``Infinity`` literals (and ``1e400``, read as infinity) in a field kept in the signal's
  detail (SendGrid ``category``, Mailgun ``tags``, Postmark ``Tag``): PostgreSQL's JSON column
  refused them, a 503 the sender retries forever;
- a link token signed for an address no rule accepts (a NUL): PostgreSQL's 503 on the page.
Each base request is a real sender's payload, named where it is built.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from standardwebhooks import Webhook

from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow
from receiver.links import Link
from receiver.sources.base import InvalidJson, parse_json
from tests.helpers import config_toml, empty_tables, make_settings
from tests.security.test_identifiers import (
    MAILGUN_KEY,
    PARTNER_SECRET,
    POSTMARK_AUTH,
    SENDGRID_KEY,
    SOURCES_TOML,
)

ADMIN = {"Authorization": "Bearer admin-token"}
SURROGATES = {"lone high": "\ud800", "lone low": "\udc80", "reversed pair": "\udfff\ud800"}
# Not JSON numbers (RFC 8259), though Python's json writes and reads them.
NOT_NUMBERS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e400": "1e400"}


@pytest.fixture
def settings(tmp_path, database_url):
    empty_tables(database_url)
    return make_settings(tmp_path, database_url, toml=config_toml(extra=SOURCES_TOML),
                         RECEIVER_ADMIN_TOKEN="admin-token")


def stored(engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(model)).scalar()
                     for model in (RequestRecord, SignalRow, Consent, Delivery))


def dumps(data) -> bytes:
    """JSON as a hostile sender writes it: lone surrogates escaped (``\\ud800``), NaN kept."""
    return json.dumps(data).encode()


# --- signed posts of each sender's own payload ---------------------------------------------------


def partner(client, body: bytes):
    # Signed by the standardwebhooks library itself.
    webhook_id, at = "msg_" + secrets.token_hex(8), datetime.now(UTC)
    return client.post("/hooks/booking-engine", data=body, content_type="application/json", headers={
        "webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(PARTNER_SECRET).sign(webhook_id, at, body.decode())})


def sendgrid(client, body: bytes):
    # Signed as SendGrid signs: ECDSA P-256 over the timestamp then the body.
    stamp = str(int(time.time()))
    der = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post("/hooks/sendgrid", data=body, content_type="application/json", headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(der).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})


def mailgun(client, body: bytes):
    """``body`` holds ``"signature": null``: a fresh signature block (Mailgun's recipe) is written in."""
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    block = {"timestamp": stamp, "token": token,
             "signature": hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()}
    body = body.replace(b'"signature": null', b'"signature": ' + json.dumps(block).encode(), 1)
    return client.post("/hooks/mailgun", data=body, content_type="application/json")


def postmark(client, body: bytes):
    auth = base64.b64encode(POSTMARK_AUTH.encode()).decode()
    return client.post("/hooks/postmark", data=body, content_type="application/json",
                       headers={"Authorization": f"Basic {auth}"})


def form(client, body: bytes):
    return client.post("/forms/unsubscribe", data=body, content_type="application/json",
                       headers={"Accept": "application/json"})


def v1(path: str):
    return lambda client, body: client.post(path, data=body, content_type="application/json", headers=ADMIN)


def flagged_text(client) -> int:
    """A Twilio text that only mentions an opt-out word waits for review; its event id."""
    from tests.helpers import twilio_signature, twilio_sms

    params = twilio_sms(body="stop by the pool at 5")
    client.post("/hooks/twilio", data=params, headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    [item] = client.get("/v1/review", headers=ADMIN).get_json()["items"]
    return item["id"]


# The partner event of inbound-formats.md Appendix A.
PARTNER_EVENT = {"id": "evt_01HZX", "type": "consent.opt_out", "occurred_at": "2026-11-22T10:15:00Z",
                 "customer": {"email": "guest@example.com", "phone": "+15551234567"},
                 "states": ["marketing_decline"], "reason": "guest asked at check-out"}
# SendGrid's group_unsubscribe, inbound-formats.md Appendix A.
SENDGRID_EVENT = {"email": "guest@example.com", "timestamp": 1795515300, "event": "group_unsubscribe",
                  "category": "newsletter", "sg_event_id": "ahSCB7xYcXFb-hEaawsPRw==",
                  "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "asm_group_id": 10}
# Mailgun's unsubscribed webhook, inbound-formats.md Appendix A (its signature block written in by ``mailgun``).
MAILGUN_BODY = {"signature": None, "event-data": {
    "event": "unsubscribed", "id": "W3X4JOhFT-OZidZGKKr9iA", "timestamp": 1795515299.421473, "log-level": "info",
    "recipient": "guest@example.com", "tags": ["newsletter"], "user-variables": {},
    "message": {"headers": {"message-id": "20261124101500.1.ABCDEF@mg.example.com"}}}}
# Postmark's SubscriptionChange, inbound-formats.md Appendix A.
POSTMARK_BODY = {"RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                 "ServerID": 123456, "MessageStream": "broadcast", "ChangedAt": "2026-11-24T10:15:00Z",
                 "Recipient": "guest@example.com", "Origin": "Recipient", "SuppressSending": True,
                 "SuppressionReason": "ManualSuppression", "Tag": "nov-newsletter"}
# The contract's examples of each /v1 body and of the plain form.
FORM_BODY = {"tenant": "grand", "email": "guest@example.com", "email_marketing": "on"}
LINK_BODY = {"tenant": "grand", "email": "guest@example.com", "scope": "marketing", "phone": "+15551234567",
             "campaign": "nov-newsletter"}
CHECK_BODY = {"tenant": "grand", "recipients": [{"email": "guest@example.com"}]}
STAFF_BODY = {"tenant": "grand", "phone": "+15551234567", "email": "guest@example.com", "states": ["sms_ban"],
              "channel": "phone-call", "note": "guest called reception"}
ERASURE_BODY = {"tenant": "grand", "email": "guest@example.com"}

# door → (post, base body, [(path into the body, the field the 400 names)]): every field that was a 5xx.
DOORS = {
    "partner": (partner, PARTNER_EVENT, [(("customer", "email"), "customer.email")]),
    "partner batch": (partner, {"events": [PARTNER_EVENT]}, [(("events", 0, "customer", "email"),
                                                              "events[0].customer.email")]),
    "mailgun": (mailgun, MAILGUN_BODY, [(("event-data", "recipient"), "event-data.recipient")]),
    "postmark": (postmark, POSTMARK_BODY, [(("Recipient",), "Recipient")]),
    "forms": (form, FORM_BODY, [(("email",), "email")]),
    "/v1/links": (v1("/v1/links"), LINK_BODY, [(("email",), "email"), (("campaign",), "campaign")]),
    "/v1/links batch": (v1("/v1/links"), {"links": [LINK_BODY]}, [(("links", 0, "campaign"), "links[0].campaign")]),
    "/v1/consent/check": (v1("/v1/consent/check"), CHECK_BODY, [(("recipients", 0, "email"),
                                                                 "recipients[0].email")]),
    "/v1/opt-outs": (v1("/v1/opt-outs"), STAFF_BODY, [(("email",), "email"), (("note",), "note")]),
    "/v1/erasure": (v1("/v1/erasure"), ERASURE_BODY, [(("email",), "email")]),
}
FIELDS = [(door, path, field) for door, (_, _, fields) in DOORS.items() for path, field in fields]


def with_value(data, path: tuple, value):
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize("door, path, field", FIELDS)
@pytest.mark.parametrize("where", ["alone", "after", "before"])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_a_lone_surrogate_is_400_naming_the_field(client, engine, door, path, field, where, surrogate):
    post, base, _ = DOORS[door]
    original, bad = str(_at(base, path)), SURROGATES[surrogate]
    value = {"alone": bad, "after": original + bad, "before": bad + original}[where]

    response = post(client, dumps(with_value(base, path, value)))

    assert response.status_code == 400, response.get_data()
    assert response.get_json()["field"] == field
    assert response.get_json()["error"].startswith(f"{field}: ")
    assert stored(engine) == (0, 0, 0, 0)


# A sender's free text may hold one: a subject or tag cut in the middle of an emoji by a UTF-16
# system (Postmark runs on .NET). Refusing the body would lose the opt-out it carries (a sender never
# fixes a 400), so only the fields the receiver uses (addresses, ids) refuse it; the rest is kept, escaped.
@pytest.mark.parametrize("door, path", [
    ("partner", ("reason",)), ("mailgun", ("event-data", "tags", 0)), ("mailgun", ("event-data", "message", "headers",
                                                                                 "subject")),
    ("postmark", ("Tag",)), ("postmark", ("Subject",)),
])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_a_lone_surrogate_in_a_senders_free_text_keeps_the_opt_out(client, engine, door, path, surrogate):
    post, base, _ = DOORS[door]
    body = json.loads(json.dumps(base))
    target = body
    for key in path[:-1]:  # the subject's headers are not in the base payload
        target = target.setdefault(key, {})
    target[path[-1]] = "Sale " + SURROGATES[surrogate]

    response = post(client, dumps(body))

    assert response.status_code == 200, response.get_data()
    assert response.get_json()["status"] == "accepted"
    _records, signals, consent, _deliveries = stored(engine)
    assert signals == 1 and consent > 0


def test_a_lone_surrogate_in_a_review_note_is_400(client, engine):
    event_id = flagged_text(client)
    before = stored(engine)

    response = v1(f"/v1/review/{event_id}")(client, dumps({"decision": "dismiss", "note": "not an opt-out\ud800"}))

    assert response.status_code == 400 and response.get_json()["field"] == "note"
    assert stored(engine) == before


@pytest.mark.parametrize("door, path, field", [
    ("partner", ("reason",), "reason"), ("mailgun", ("event-data", "tags", 0), "event-data.tags[0]"),
    ("mailgun", ("event-data", "severity"), "event-data.severity"), ("postmark", ("Tag",), "Tag"),
    ("postmark", ("Origin",), "Origin"), ("/v1/opt-outs", ("note",), "note"),
])
@pytest.mark.parametrize("literal", NOT_NUMBERS)
def test_nan_and_infinity_are_not_json(client, engine, door, path, field, literal):
    post, base, _ = DOORS[door]
    body = dumps(with_value(base, path, "@NUMBER@")).replace(b'"@NUMBER@"', NOT_NUMBERS[literal].encode())

    response = post(client, body)

    assert response.status_code == 400, response.get_data()
    assert response.get_json()["field"] == "body" and response.get_json()["error"].startswith("body: not valid JSON")
    assert stored(engine) == (0, 0, 0, 0)


@pytest.mark.parametrize("name", ["category", "sg_message_id", "asm_group_id"])
def test_nan_in_a_sendgrid_detail_field_is_400_not_503(client, engine, name):
    body = dumps([with_value(SENDGRID_EVENT, (name,), "@NaN@")]).replace(b'"@NaN@"', b"NaN")

    response = sendgrid(client, body)

    assert response.status_code == 400 and response.get_json()["field"] == "body"
    assert stored(engine) == (0, 0, 0, 0)


def test_a_sendgrid_event_with_a_surrogate_address_does_not_sink_its_batch(client, engine):
    """One odd event never sinks a batch (contract): it is recorded as ignored, the others applied."""
    odd = {**SENDGRID_EVENT, "email": "\ud800guest@example.com", "sg_event_id": "odd-one"}
    good = {**SENDGRID_EVENT, "email": "other@example.com", "category": "news\udc80"}

    response = sendgrid(client, dumps([odd, good]))

    assert response.status_code == 200, response.get_data()
    assert response.get_json()["status"] == "accepted"
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.event_id, SignalRow.kind, SignalRow.email)
                            .order_by(SignalRow.id)).all() == [("odd-one", "other", None),
                                                               (SENDGRID_EVENT["sg_event_id"], "opt_out",
                                                                "other@example.com")]
        assert conn.execute(select(Consent.identity)).scalars().all() == ["other@example.com"]


@pytest.mark.parametrize("email", ["g\x00@example.com", "gu\u200best@example.com", "not-an-address"])
def test_a_link_token_for_an_unusable_address_is_a_404_page(app, client, engine, email):
    """Only the receiver signs tokens, but one signed before today's rules (or by a buggy script with
    the key) must not reach the database: a 503 there is retried by mailbox providers."""
    token = app.extensions["receiver"].links.token(Link(tenant="grand", email=email))

    assert client.get(f"/u/{token}").status_code == 404
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 404 and response.mimetype == "text/html"
    assert stored(engine) == (0, 0, 0, 0)


def test_a_link_tokens_phone_is_read_by_todays_rules(app, client, engine):
    links = app.extensions["receiver"].links
    typed = links.token(Link(tenant="grand", email="guest@example.com", phone="(555) 123-4567"))
    unusable = links.token(Link(tenant="grand", email="other@example.com", phone="555-1234"))

    assert links.load(typed).phone == "+15551234567"
    assert links.load(unusable).phone is None
    assert client.post(f"/u/{unusable}", data={"List-Unsubscribe": "One-Click"}).status_code == 200


@pytest.mark.parametrize("body, field", [
    (b'"\\ud800"', "body"), (b'{"a\\udc80": 1}', "body"), (b'{"a": [1, {"b": "\\ud800"}]}', "a[1].b"),
    ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), "a"),  # raw CESU bytes: json reads them as one
    (b'[{"email": "x\\ud800"}]', "[0].email"), (b"NaN", "body"), (b"[1e400]", "body"), (b"-Infinity", "body"),
])
def test_parse_json_refuses_what_cannot_be_stored(body, field):
    with pytest.raises(InvalidJson) as refused:
        parse_json(body)
    assert refused.value.field == field


def test_parse_json_keeps_real_unicode_and_large_numbers():
    assert parse_json(b'{"e": "\\ud83d\\ude00", "n": 1e308, "i": 10000000000000000000000000000000000000000}') == {
        "e": "\U0001f600", "n": 1e308, "i": 10**40}
    assert parse_json(b'["\\ud800"]', lone_surrogates=True) == ["\ud800"]


def _at(data, path: tuple):
    for key in path:
        data = data[key]
    return data
