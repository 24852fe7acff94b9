"""Identifiers a sender chooses: over 255 characters or with control characters is a 400 naming the
field, stored nowhere, the same on SQLite and PostgreSQL (run this file with DATABASE_URL too)."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from standardwebhooks import Webhook

from receiver.ledger.models import RequestRecord, SignalRow
from tests.helpers import (
    CRMTEXT_TOKEN,
    config_toml,
    empty_tables,
    make_settings,
    twilio_signature,
    twilio_sms,
)

PARTNER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # inbound-formats.md, Appendix A
MAILGUN_KEY = "test-signing-key"
POSTMARK_AUTH = "hooks:s3cret"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SOURCES_TOML = f"""
[sources.booking-engine]
kind = "standard-webhooks"
tenant = "grand"
secret = "{PARTNER_SECRET}"

[sources.sendgrid]
kind = "sendgrid"
tenant = "grand"
public_key = "{base64.b64encode(SENDGRID_KEY.public_key().public_bytes(
    Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()}"

[sources.mailgun]
kind = "mailgun"
tenant = "grand"
signing_key = "{MAILGUN_KEY}"

[sources.postmark]
kind = "postmark"
tenant = "grand"
basic_auth = "{POSTMARK_AUTH}"
"""

BAD = {
    "256 characters": "x" * 256,
    "NUL": "SM\x00" + "0" * 31,
    "C0 control": "SM\x01" + "0" * 31,
    "DEL": "SM\x7f" + "0" * 31,
    "newline": "SM0\n",
    "C1 control": "SM\x85" + "0" * 31,
}
JSON_ONLY = {"lone surrogate": "evt_\ud800"}  # only JSON can carry one (a form body is UTF-8)
LONGEST = "i" * 255


@pytest.fixture
def settings(tmp_path, database_url):
    empty_tables(database_url)
    return make_settings(tmp_path, database_url, toml=config_toml(extra=SOURCES_TOML))


def post_twilio(client, sid: str):
    # Twilio's inbound SMS fields (inbound-formats.md §1), signed by Twilio's own SDK.
    params = twilio_sms(sid=sid)
    return client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})


def post_crmtext(client, msg_id: str):
    # CRM Text's callback fields, inbound-formats.md Appendix A.
    body = {"custID": "112233", "message": "STOP", "keyword": "GRAND", "mobileNum": "5551234567",
            "optInStatus": "Opt-out", "timeStamp": "2026-11-22 07:15:02", "msgID": msg_id}
    return client.post(f"/hooks/crmtext?token={CRMTEXT_TOKEN}", data=urlencode(body),
                       content_type="application/x-www-form-urlencoded")


def post_partner(client, event_id: str = "evt_01HZX", webhook_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"):
    # The partner event of inbound-formats.md Appendix A, signed by the standardwebhooks library.
    event = {"id": event_id, "type": "consent.opt_out", "occurred_at": "2026-11-22T10:15:00Z",
             "customer": {"email": "guest@example.com"}, "states": ["marketing_decline"]}
    body = json.dumps(event)
    at = datetime.now(UTC)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": Webhook(PARTNER_SECRET).sign(webhook_id, at, body)}
    return client.post("/hooks/booking-engine", data=body.encode("utf-8", "surrogatepass"),
                       content_type="application/json", headers=headers)


def post_sendgrid(client, event_id: str):
    # SendGrid's group_unsubscribe event, inbound-formats.md Appendix A, signed as SendGrid signs.
    body = json.dumps([{"email": "guest@example.com", "timestamp": 1795515300, "event": "group_unsubscribe",
                        "sg_event_id": event_id, "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001",
                        "asm_group_id": 10}]).encode()
    stamp = str(int(time.time()))
    der = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post("/hooks/sendgrid", data=body, content_type="application/json", headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(der).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})


def post_mailgun(client, event_id: str):
    # Mailgun's unsubscribed webhook, inbound-formats.md Appendix A, with a fresh signature.
    stamp, token = str(int(time.time())), hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    body = {"signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": {"event": "unsubscribed", "id": event_id, "timestamp": 1795515299.421473,
                           "recipient": "guest@example.com"}}
    return client.post("/hooks/mailgun", data=json.dumps(body), content_type="application/json")


def post_postmark(client, value: str, field: str = "MessageID"):
    # Postmark's SubscriptionChange webhook, inbound-formats.md Appendix A, with ``field`` set to ``value``.
    body = {"RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 123456, "MessageStream": "broadcast", "ChangedAt": "2026-11-24T10:15:00Z",
            "Recipient": "guest@example.com", "Origin": "Recipient", "SuppressSending": True,
            "SuppressionReason": "ManualSuppression", field: value}
    auth = base64.b64encode(POSTMARK_AUTH.encode()).decode()
    return client.post("/hooks/postmark", data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Basic {auth}"})


# (poster, field the 400 names, whether the id travels in JSON)
CASES = {
    "twilio MessageSid": (post_twilio, "MessageSid", False),
    "crmtext msgID": (post_crmtext, "msgID", False),
    "partner event id": (lambda client, value: post_partner(client, event_id=value), "id", True),
    "mailgun event-data.id": (post_mailgun, "event-data.id", True),
    "postmark MessageID": (post_postmark, "MessageID", True),
    "postmark RecordType": (lambda client, value: post_postmark(client, value, "RecordType"), "RecordType", True),
}


def stored(engine) -> int:
    with engine.connect() as conn:
        return sum(conn.execute(select(func.count()).select_from(model)).scalar() for model in (RequestRecord, SignalRow))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bad", [*BAD, *JSON_ONLY])
def test_bad_identifier_is_400_naming_the_field(client, engine, case, bad):
    post, field, in_json = CASES[case]
    if bad in JSON_ONLY and not in_json:
        pytest.skip("a form body cannot carry it")

    response = post(client, {**BAD, **JSON_ONLY}[bad])

    assert response.status_code == 400, response.get_data()
    assert response.get_json()["field"] == field
    assert response.get_json()["error"].startswith(f"{field}: ")
    assert stored(engine) == 0


@pytest.mark.parametrize("bad", [*BAD, *JSON_ONLY])
def test_unusable_sg_event_id_is_keyed_by_content_not_refused(client, engine, bad):
    """One odd SendGrid event never sinks its batch (contract): its id is derived from its content."""
    response = post_sendgrid(client, {**BAD, **JSON_ONLY}[bad])

    assert response.status_code == 200, response.get_data()
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.event_id)).scalar().startswith("sha256:")


@pytest.mark.parametrize("case", [name for name in CASES if not name.startswith("postmark")] + ["sendgrid sg_event_id"])
def test_identifier_of_255_characters_is_recorded(client, engine, case):
    post = post_sendgrid if case == "sendgrid sg_event_id" else CASES[case][0]

    response = post(client, LONGEST)

    assert response.status_code == 200, response.get_data()
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.event_id)).scalar() == LONGEST


@pytest.mark.parametrize("webhook_id", ["m" * 256, "msg_\x01", "msg_\x7f"])
def test_bad_webhook_id_is_400_naming_the_header(client, engine, webhook_id):
    response = post_partner(client, webhook_id=webhook_id)

    assert response.status_code == 400, response.get_data()
    assert response.get_json()["field"] == "webhook-id"
    assert stored(engine) == 0


def test_webhook_id_of_255_characters_is_recorded(client, engine):
    assert post_partner(client, webhook_id=LONGEST).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(RequestRecord.request_key)).scalar() == LONGEST
