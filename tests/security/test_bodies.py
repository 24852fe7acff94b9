"""Hostile bodies: over the cap (with Content-Length or chunked), per-kind caps, JSON nested to blow the stack."""

import hashlib
import io
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from receiver import create_app
from receiver.ledger.models import RequestRecord, SignalRow
from receiver.sources.base import MAX_BODY, parse_json
from tests.helpers import config_toml, make_settings, twilio_signature, twilio_sms
from tests.unit.sources.test_sendgrid import PRIVATE, public_key_b64, sign, source_toml

MAILGUN_TOML = """
[sources.mailgun]
kind = "mailgun"
tenant = "grand"
signing_key = "env:MAILGUN_SIGNING_KEY"
"""
NESTED = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's recursion limit


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, toml=config_toml(extra=source_toml() + MAILGUN_TOML),
                                   SENDGRID_WEBHOOK_PUBLIC_KEY=public_key_b64(PRIVATE),
                                   MAILGUN_SIGNING_KEY="test-signing-key"))
    yield app
    app.extensions["receiver"].engine.dispose()


def twilio_body(padding: int) -> tuple[bytes, dict]:
    """An inbound SMS as Twilio posts it (tests/helpers.twilio_sms), padded with an extra field, and its signature."""
    params = twilio_sms(body="STOP", Padding="x" * padding)
    body = urlencode(params).encode()
    return body, {"X-Twilio-Signature": twilio_signature("/hooks/twilio", params),
                  "Content-Type": "application/x-www-form-urlencoded"}


def post_chunked(client, path: str, body: bytes, headers: dict):
    """What a chunked request looks like to the app under gunicorn: no Content-Length, a terminated input."""
    return client.post(path, input_stream=io.BytesIO(body), headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def stored(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(RequestRecord.evidence_sha256)).scalars().all()


# --- per-kind caps (10.1) ----------------------------------------------------------------------

def test_a_sendgrid_batch_of_one_and_a_half_mib_is_accepted(client, engine):
    # Open events as SendGrid's Event Webhook reference shows them (email, timestamp, event, sg_event_id,
    # sg_message_id, useragent, ip); a long user agent makes the batch 1.5 MiB in under 1000 events.
    events = [{"email": f"guest{n}@example.com", "timestamp": 1795515300, "event": "open",
               "sg_event_id": f"sg-open-{n:04d}", "sg_message_id": f"msg-{n}", "ip": "255.255.255.255",
               "useragent": "Mozilla/5.0 " + "x" * 1700} for n in range(900)]
    events.append({"email": "guest@example.com", "timestamp": 1795515300, "event": "unsubscribe",
                   "sg_event_id": "sg-unsub-0001", "sg_message_id": "msg-unsub"})
    body = json.dumps(events).encode()
    assert 1.5 * 1024 * 1024 <= len(body) < 2 * 1024 * 1024

    response = client.post("/hooks/sendgrid", data=body, headers={**sign(body), "Content-Type": "application/json"})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert stored(engine) == [hashlib.sha256(body).hexdigest()]


def test_a_twilio_body_of_300_kib_is_413(client, engine):
    body, headers = twilio_body(300 * 1024)

    response = client.post("/hooks/twilio", data=body, headers=headers)

    assert response.status_code == 413
    assert "256 KiB" in response.get_json()["error"]
    assert stored(engine) == []


def test_a_sendgrid_body_over_2_mib_is_413(client, engine):
    body = json.dumps([{"email": "guest@example.com", "event": "open", "pad": "x" * (2 * 1024 * 1024)}]).encode()

    response = client.post("/hooks/sendgrid", data=body, headers={**sign(body), "Content-Type": "application/json"})

    assert response.status_code == 413
    assert "2 MiB" in response.get_json()["error"]


# --- chunked bodies (11.7) ---------------------------------------------------------------------

def test_a_chunked_body_over_the_cap_is_413_like_with_content_length(client, engine):
    body, headers = twilio_body(MAX_BODY)

    assert client.post("/hooks/twilio", data=body, headers=headers).status_code == 413
    response = post_chunked(client, "/hooks/twilio", body, headers)

    assert response.status_code == 413
    assert "webhook-signature" not in response.headers
    assert stored(engine) == []


def test_a_chunked_body_under_the_cap_is_read_whole(client, engine):
    body, headers = twilio_body(MAX_BODY - 1024)

    response = post_chunked(client, "/hooks/twilio", body, headers)

    assert response.status_code == 200
    assert stored(engine) == [hashlib.sha256(body).hexdigest()]


@pytest.mark.parametrize("size, status", [(MAX_BODY, 200), (MAX_BODY + 1, 413)])
def test_the_cap_is_exact_for_chunked_bodies_of_the_open_form(client, engine, size, status):
    prefix = b"tenant=grand&email=guest%40example.com&pad="
    body = prefix + b"x" * (size - len(prefix))

    response = post_chunked(client, "/forms/unsubscribe", body, {"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == status
    assert stored(engine) == ([hashlib.sha256(body).hexdigest()] if status == 200 else [])


# --- deeply nested JSON (11.8) -----------------------------------------------------------------

@pytest.mark.parametrize("path, signed", [
    ("/hooks/mailgun", False),  # parsed before its signature check: no credentials needed
    ("/forms/unsubscribe", False),
    ("/hooks/sendgrid", True),  # a sender's own bug, signed (now: the signature's timestamp must be fresh)
])
def test_deeply_nested_json_is_400_without_a_traceback(client, engine, receiver_log, path, signed):
    response = client.post(path, data=NESTED, content_type="application/json", headers=sign(NESTED) if signed else {})

    assert response.status_code == 400
    assert response.get_json() == {"error": "body: not valid JSON", "field": "body"}
    assert "Traceback" not in receiver_log() and "RecursionError" not in receiver_log()
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.id)).first() is None


def test_json_within_the_depth_limit_still_parses():
    assert parse_json(b'{"a": [[{"b": 1}]]}') == {"a": [[{"b": 1}]]}
    assert parse_json(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(ValueError):
        parse_json(b"[" * 33 + b"]" * 33)
