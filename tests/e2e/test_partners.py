"""Partner and email-provider webhooks end to end: signed by each provider's own scheme, through
gunicorn, recorded once, delivered to the sandbox CRMs once, receipts verified by the partner's library."""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks import Webhook

from tests.e2e.shared import MAILGUN_KEY, PARTNER_SECRET, POSTMARK_AUTH, SENDGRID_KEY
from tests.e2e.test_sms import new_phone


def new_email() -> str:
    return f"guest-{secrets.token_hex(5)}@example.com"


def partner_event(email=None, phone=None, states=("marketing_decline",), type_="consent.opt_out") -> dict:
    customer = {k: v for k, v in (("email", email), ("phone", phone)) if v}
    return {"id": "evt_" + secrets.token_hex(8), "type": type_, "occurred_at": "2026-11-22T10:15:00Z",
            "customer": customer, "states": list(states), "reason": "guest asked at check-out"}


def post_partner(stack, body: dict | list, *, msg_id=None, when=None, secret=PARTNER_SECRET, tamper=False):
    data = json.dumps(body)
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    when = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, data)
    if tamper:
        data = data.replace("marketing_decline", "mail_ban")
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
               "webhook-signature": signature, "Content-Type": "application/json"}
    return stack.http.post(stack.web_url + "/hooks/booking-engine", data=data.encode(), headers=headers, timeout=60)


def verify_as_partner(answer) -> dict:
    """The partner checks our receipt with the library it signs with, and the secret it shares with us."""
    return Webhook(PARTNER_SECRET).verify(answer.content, dict(answer.headers))


def states_of(stack, identity: str) -> set[str]:
    return {r.state for r in stack.query("SELECT state FROM consent WHERE identity = :i", i=identity)}


def test_a_batch_of_500_events_is_one_transaction_with_a_verifiable_receipt(stack):
    events = [partner_event(email=new_email()) for _ in range(500)]
    answer = post_partner(stack, {"events": events})
    assert answer.status_code == 200, answer.text
    body = verify_as_partner(answer)
    assert body["status"] == "accepted"
    assert body["event_ids"] == [e["id"] for e in events]
    assert len(body["changes"]) == 500
    receipt = answer.headers["webhook-id"]
    assert stack.query("SELECT count(*) FROM signals WHERE receipt_id = :r", r=receipt)[0][0] == 500
    last = events[-1]["customer"]["email"]
    assert [r.status for r in stack.settled(last, timeout=60)] == ["done"]


def test_replay_of_the_same_webhook_id_is_a_duplicate(stack):
    email, msg_id = new_email(), "msg_" + secrets.token_hex(8)
    event = partner_event(email=email)
    first = post_partner(stack, event, msg_id=msg_id)
    again = post_partner(stack, event, msg_id=msg_id)
    assert verify_as_partner(first)["status"] == "accepted"
    replay = verify_as_partner(again)
    assert replay["status"] == "duplicate"
    assert replay["event_ids"] == [event["id"]]
    assert replay["original_receipt_id"] == first.headers["webhook-id"]
    assert len(stack.settled(email)) == 1
    assert len([r for r in stack.calls("experience") for rec in r.get("records") or []
                if rec.get("email") == email]) == 1


def test_a_new_delivery_repeating_an_old_event_lists_it_as_duplicate(stack):
    old, new = partner_event(email=new_email()), partner_event(email=new_email())
    post_partner(stack, old)
    answer = verify_as_partner(post_partner(stack, {"events": [old, new]}))
    assert answer["event_ids"] == [old["id"], new["id"]]  # every event of the request, seen or new
    assert answer["duplicate_event_ids"] == [old["id"]]


@pytest.mark.parametrize("case", ["stale", "future", "forged", "tampered", "unsigned"])
def test_bad_partner_requests_are_refused_and_nothing_is_stored(stack, case):
    email = new_email()
    event = partner_event(email=email)
    if case == "stale":
        answer = post_partner(stack, event, when=datetime.now(UTC) - timedelta(minutes=6))
    elif case == "future":
        answer = post_partner(stack, event, when=datetime.now(UTC) + timedelta(minutes=6))
    elif case == "forged":
        answer = post_partner(stack, event, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    elif case == "tampered":
        answer = post_partner(stack, event, tamper=True)
    else:
        answer = stack.http.post(stack.web_url + "/hooks/booking-engine", json=event, timeout=10)
    assert answer.status_code == 401
    assert "error" in answer.json()
    assert stack.query("SELECT id FROM signals WHERE email = :e", e=email) == []


def test_bad_partner_input_names_the_field(stack):
    bad = partner_event(email=new_email(), states=("marketing_decline", "spam_everyone"))
    answer = post_partner(stack, {"events": [partner_event(email=new_email()), bad]})
    assert answer.status_code == 400
    assert "events[1]" in answer.json()["error"] and "states" in answer.json()["error"]


def test_opt_in_after_opt_out_lifts_the_state(stack):
    email = new_email()
    post_partner(stack, partner_event(email=email, states=("marketing_decline", "mail_ban")))
    assert states_of(stack, email) == {"marketing_decline", "mail_ban"}
    answer = verify_as_partner(post_partner(stack, partner_event(email=email, states=("mail_ban",),
                                                                 type_="consent.opt_in")))
    assert answer["changes"] == [{"email": email, "removed": ["mail_ban"]}]
    assert states_of(stack, email) == {"marketing_decline"}


def test_an_event_with_email_and_phone_reaches_both_crms_once(stack):
    email, phone = new_email(), new_phone()
    answer = post_partner(stack, partner_event(email=email, phone=phone,
                                               states=("marketing_decline", "sms_ban")))
    assert verify_as_partner(answer)["status"] == "accepted"
    stack.settled(email)
    stack.settled(phone)
    assert len(stack.opt_out_calls(phone[2:])) == 1
    records = [rec for c in stack.calls("experience") for rec in c.get("records") or []
               if rec.get("email") == email or rec.get("phone") == phone]
    assert {k for rec in records for k in rec} >= {"email", "phone", "marketing_decline", "sms_ban"}
    assert all(rec.get("email") == email for rec in records)  # the phone's record carries the linked email


def sendgrid_post(stack, events: list, *, timestamp=None):
    body = json.dumps(events).encode() + b"\r\n"
    timestamp = str(timestamp or int(time.time()))
    signature = SENDGRID_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return stack.http.post(stack.web_url + "/hooks/sendgrid", data=body, timeout=10, headers={
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


def test_sendgrid_unsubscribe_reaches_experience_once(stack):
    email = new_email()
    events = [{"email": email, "timestamp": int(time.time()), "event": "group_unsubscribe",
               "sg_event_id": secrets.token_urlsafe(16), "sg_message_id": "m.1", "asm_group_id": 10},
              {"email": email, "timestamp": int(time.time()), "event": "open", "sg_event_id": secrets.token_urlsafe(16)}]
    answer = sendgrid_post(stack, events)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    assert states_of(stack, email) == {"marketing_decline"}
    assert [r.status for r in stack.settled(email)] == ["done"]
    assert sendgrid_post(stack, events).json()["status"] == "duplicate"
    assert sendgrid_post(stack, events[1:], timestamp=int(time.time()) - 600).status_code == 401


def mailgun_body(email: str, event: str, *, token=None, event_id=None, timestamp=None) -> dict:
    timestamp = str(timestamp or int(time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": event, "id": event_id or secrets.token_urlsafe(12), "timestamp": time.time(),
                           "recipient": email, "log-level": "warn"}}


def test_mailgun_complaint_bans_mail_and_a_reused_token_is_refused(stack):
    email = new_email()
    body = mailgun_body(email, "complained")
    first = stack.http.post(stack.web_url + "/hooks/mailgun", json=body, timeout=10)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert states_of(stack, email) == {"mail_ban"}  # this source's complaint option
    assert stack.http.post(stack.web_url + "/hooks/mailgun", json=body, timeout=10).json()["status"] == "duplicate"
    other = {**body, "event-data": {**body["event-data"], "id": secrets.token_urlsafe(12), "recipient": new_email()}}
    replay = stack.http.post(stack.web_url + "/hooks/mailgun", json=other, timeout=10)
    assert replay.status_code == 401
    assert stack.query("SELECT id FROM signals WHERE email = :e", e=other["event-data"]["recipient"]) == []


def test_postmark_subscription_change_and_bad_credentials(stack):
    email = new_email()
    change = {"RecordType": "SubscriptionChange", "MessageID": secrets.token_hex(8), "ServerID": 1,
              "MessageStream": "broadcast", "ChangedAt": datetime.now(UTC).isoformat(), "Recipient": email,
              "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression",
              "Tag": None, "Metadata": {}}
    answer = stack.http.post(stack.web_url + "/hooks/postmark", json=change, auth=POSTMARK_AUTH, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    assert states_of(stack, email) == {"marketing_decline"}
    assert stack.http.post(stack.web_url + "/hooks/postmark", json=change, auth=POSTMARK_AUTH,
                           timeout=10).json()["status"] == "duplicate"
    bounce = {"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "TypeCode": 1, "MessageID": secrets.token_hex(8),
              "Email": new_email(), "BouncedAt": datetime.now(UTC).isoformat(), "ServerID": 1}
    assert stack.http.post(stack.web_url + "/hooks/postmark", json=bounce, auth=POSTMARK_AUTH,
                           timeout=10).json()["status"] == "ignored"
    wrong = stack.http.post(stack.web_url + "/hooks/postmark", json=change, auth=("hooks", "guess"), timeout=10)
    assert wrong.status_code == 401
