"""Mailgun source: HMAC over timestamp + token signed here as Mailgun does, replay refused, events mapped."""

import dataclasses
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.formparser import MultiPartParser

from receiver.errors import BadRequest, BadSignature, UnsupportedMediaType
from receiver.ledger.models import Consent, Delivery, ReplayNonce, RequestRecord, SignalRow
from receiver.signals import OPT_OUT, OTHER
from receiver.sources import base, validate_source_options
from receiver.sources.base import HttpRequest
from receiver.sources.mailgun import MailgunSource
from receiver.states import MAIL_BAN, MARKETING_DECLINE
from tests.helpers import config_toml, empty_tables, make_settings, pin_clock

SIGNING_KEY = "test-signing-key"
ROTATED_KEY = "rotated-signing-key"
TOKEN = "f3c2a9d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5"
EVENT_ID = "W3X4JOhFT-OZidZGKKr9iA"
MAILGUN_TOML = f"""
[sources.mailgun]
kind = "mailgun"
tenant = "grand"
signing_key = "env:MAILGUN_SIGNING_KEY"

[sources.mailgun-strict]
kind = "mailgun"
tenant = "grand"
signing_key = ["{ROTATED_KEY}", "env:MAILGUN_SIGNING_KEY"]
complaint = "mail_ban"
"""

# inbound-formats.md, Appendix A: the exact body and its verified signature.
APPENDIX_A_TIMESTAMP = 1795515300
APPENDIX_A_SIGNATURE = "5deb48e0a1545c3b29131007f11e04365557ce7f85e67a9f6d440860a60a1380"
APPENDIX_A_BODY = (
    b'{"signature":{"timestamp":"1795515300","token":"f3c2a9d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5",'
    b'"signature":"5deb48e0a1545c3b29131007f11e04365557ce7f85e67a9f6d440860a60a1380"},'
    b'"event-data":{"event":"unsubscribed","id":"W3X4JOhFT-OZidZGKKr9iA","timestamp":1795515299.421473,'
    b'"log-level":"info","recipient":"guest@example.com","tags":["newsletter"],"user-variables":{},'
    b'"message":{"headers":{"message-id":"20261124101500.1.ABCDEF@mg.example.com"}}}}'
)

# event-data as Mailgun posts it (shapes from Mailgun's docs and django-anymail's sanitised samples).
EVENTS = {
    "unsubscribed": {
        "event": "unsubscribed", "id": EVENT_ID, "timestamp": 1795515299.421473, "log-level": "info",
        "recipient": "guest@example.com", "tags": ["newsletter"], "user-variables": {},
        "geolocation": {"country": "US", "region": "NY", "city": "New York"},
        "message": {"headers": {"message-id": "20261124101500.1.ABCDEF@mg.example.com"}},
    },
    "complained": {
        "event": "complained", "id": "ncV2XwymRUKbPek_MIM-Gw", "timestamp": 1795515299.0,
        "log-level": "warn", "recipient": "Guest@Example.COM", "tags": [], "campaigns": [],
        "user-variables": {}, "flags": {"is-test-mode": False},
        "message": {"headers": {"to": "guest@example.com", "message-id": "20261124.1.X@mg.example.com",
                                "from": "hotel@mg.example.com", "subject": "November news"},
                    "attachments": [], "size": 1180},
    },
    "delivered": {
        "event": "delivered", "id": "hTWCTD81RtiDN-6WqRLjlQ", "timestamp": 1795515290.153125,
        "log-level": "info", "recipient": "guest@example.com", "recipient-domain": "example.com",
        "envelope": {"sending-ip": "198.51.100.20", "sender": "hotel@mg.example.com", "transport": "smtp",
                     "targets": "guest@example.com"},
        "delivery-status": {"tls": True, "mx-host": "mx.example.com", "attempt-no": 1, "code": 250,
                            "message": "OK", "description": ""},
        "message": {"headers": {"message-id": "20261124.2.Y@mg.example.com"}, "size": 809},
    },
    "failed": {
        "event": "failed", "id": "Fs7-5t81S2ungy6hvQjJ9w", "timestamp": 1795515291.0, "log-level": "error",
        "severity": "permanent", "reason": "bounce", "recipient": "gone@example.com",
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist.",
                            "attempt-no": 1, "description": ""},
        "message": {"headers": {"message-id": "20261124.3.Z@mg.example.com"}},
    },
    "opened": {
        "event": "opened", "id": "6GrGkSRxQZK-4-nNnFvIpA", "timestamp": 1795515295.5, "log-level": "info",
        "recipient": "guest@example.com", "ip": "203.0.113.7",
        "client-info": {"client-type": "browser", "client-os": "OS X", "device-type": "desktop"},
        "message": {"headers": {"message-id": "20261124.4.W@mg.example.com"}},
    },
    "clicked": {
        "event": "clicked", "id": "Ase7i2zsRYeDXztHGENqRA", "timestamp": 1795515296.5, "log-level": "info",
        "recipient": "guest@example.com", "url": "https://grand.example.com/offers",
        "message": {"headers": {"message-id": "20261124.5.V@mg.example.com"}},
    },
}


def mailgun_signature(key: str, timestamp: str, token: str) -> str:
    """What Mailgun puts in signature.signature (its docs' recipe, stdlib only)."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def body(sample: str = "unsubscribed", /, *, key: str = SIGNING_KEY, token: str = TOKEN, age: float = 60,
         **changes) -> bytes:
    """A signed webhook body for one of EVENTS (fields replaced by ``changes``), ``age`` seconds old."""
    timestamp = str(int(time.time() - age))
    data = {**EVENTS[sample], **changes}
    return json.dumps({
        "signature": {"timestamp": timestamp, "token": token,
                      "signature": mailgun_signature(key, timestamp, token)},
        "event-data": data,
    }).encode()


def http(content: bytes, mimetype: str = "application/json") -> HttpRequest:
    return HttpRequest(method="POST", path="/hooks/mailgun", query_string="", headers=Headers(),
                       body=content, mimetype=mimetype, args=MultiDict())


def settings_for(tmp_path, database_url):
    return make_settings(tmp_path, database_url, toml=config_toml(extra=MAILGUN_TOML),
                         MAILGUN_SIGNING_KEY=SIGNING_KEY)


@pytest.fixture
def source_settings(tmp_path):
    return settings_for(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


@pytest.fixture
def settings(tmp_path, database_url):
    """The conftest ``settings`` (fresh tables) with the Mailgun sources added, for ``client``."""
    empty_tables(database_url)
    return settings_for(tmp_path, database_url)


def mailgun(settings, name: str = "mailgun", **options) -> MailgunSource:
    config = settings.sources[name]
    return MailgunSource(dataclasses.replace(config, options={**config.options, **options}), settings)


def resigned(content: bytes, *, key: str = SIGNING_KEY) -> bytes:
    """The same body with its signature block replaced by a fresh signature over a new token."""
    data = json.loads(content)
    timestamp, token = str(int(time.time())), "b" * 50
    data["signature"] = {"timestamp": timestamp, "token": token,
                         "signature": mailgun_signature(key, timestamp, token)}
    return json.dumps(data).encode()


# --- the source on its own ---------------------------------------------------------------------


def test_appendix_a_vector_is_mailguns_recipe():
    assert mailgun_signature(SIGNING_KEY, str(APPENDIX_A_TIMESTAMP), TOKEN) == APPENDIX_A_SIGNATURE


def test_appendix_a_request_is_a_marketing_decline(source_settings, monkeypatch):
    pin_clock(monkeypatch, APPENDIX_A_TIMESTAMP + 30)

    inbound = mailgun(source_settings).handle(http(APPENDIX_A_BODY))

    assert inbound.request_key == EVENT_ID
    assert inbound.nonce == TOKEN
    assert inbound.nonce_expires_at >= datetime.fromtimestamp(APPENDIX_A_TIMESTAMP, UTC) + timedelta(hours=12)
    assert inbound.nonce_expires_at <= datetime.fromtimestamp(APPENDIX_A_TIMESTAMP, UTC) + timedelta(hours=13)
    [signal] = inbound.signals
    assert signal.event_id == EVENT_ID
    assert signal.kind == OPT_OUT
    assert signal.email == "guest@example.com"
    assert signal.add == {MARKETING_DECLINE}
    assert signal.remove == frozenset()
    assert signal.occurred_at == datetime.fromtimestamp(1795515299.421473, UTC)
    assert signal.detail["message_id"] == "20261124101500.1.ABCDEF@mg.example.com"


def test_complaint_is_a_marketing_decline_by_default(source_settings):
    [signal] = mailgun(source_settings).handle(http(body("complained"))).signals

    assert (signal.kind, signal.add) == (OPT_OUT, {MARKETING_DECLINE})
    assert signal.email == "guest@example.com"  # identities compare case-insensitively
    assert signal.event_id == EVENTS["complained"]["id"]


def test_complaint_option_mail_ban(source_settings):
    [signal] = mailgun(source_settings, complaint=MAIL_BAN).handle(http(body("complained"))).signals

    assert signal.add == {MAIL_BAN}


def test_complaint_option_does_not_change_unsubscribes(source_settings):
    [signal] = mailgun(source_settings, complaint=MAIL_BAN).handle(http(body("unsubscribed"))).signals

    assert signal.add == {MARKETING_DECLINE}


@pytest.mark.parametrize("event", ["delivered", "failed", "opened", "clicked"])
def test_other_events_are_only_recorded(source_settings, event):
    inbound = mailgun(source_settings).handle(http(body(event)))

    [signal] = inbound.signals
    assert inbound.request_key == signal.event_id == EVENTS[event]["id"]
    assert (signal.kind, signal.add, signal.remove) == (OTHER, frozenset(), frozenset())
    assert signal.email == EVENTS[event]["recipient"]
    assert signal.keyword == event


def test_an_event_mailgun_adds_later_is_only_recorded(source_settings):
    [signal] = mailgun(source_settings).handle(http(body("delivered", event="accepted-v2"))).signals

    assert signal.kind == OTHER


def test_recorded_event_without_a_valid_address_is_not_refused(source_settings):
    [signal] = mailgun(source_settings).handle(http(body("delivered", recipient="not an address"))).signals

    assert (signal.kind, signal.email) == (OTHER, None)


@pytest.mark.parametrize("recipient", [None, "", "not an address", 42])
def test_opt_out_without_a_valid_address_is_a_bad_request(source_settings, recipient):
    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(http(body("unsubscribed", recipient=recipient)))

    assert caught.value.field == "event-data.recipient"


@pytest.mark.parametrize("name", ["id", "event"])
@pytest.mark.parametrize("value", [None, "", 12, "x" * 256])
def test_missing_event_fields_are_bad_requests_naming_them(source_settings, name, value):
    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(http(body("unsubscribed", **{name: value})))

    assert caught.value.field == f"event-data.{name}"


@pytest.mark.parametrize("event_data", [None, [], "unsubscribed"])
def test_missing_event_data_is_a_bad_request(source_settings, event_data):
    data = json.loads(body())
    data["event-data"] = event_data

    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(http(json.dumps(data).encode()))

    assert caught.value.field == "event-data"


def test_timestamp_as_a_json_number_is_signed_as_its_digits(source_settings):
    data = json.loads(body())
    data["signature"]["timestamp"] = int(data["signature"]["timestamp"])

    assert mailgun(source_settings).handle(http(json.dumps(data).encode())).request_key == EVENT_ID


@pytest.mark.parametrize("age", [11.9 * 3600, 0, -4 * 60])
def test_timestamps_within_the_window_are_accepted(source_settings, age):
    assert mailgun(source_settings).handle(http(body(age=age))).request_key == EVENT_ID


@pytest.mark.parametrize("age", [13 * 3600, 12 * 3600 + 60, -6 * 60, -24 * 3600])
def test_stale_or_future_timestamps_are_refused(source_settings, age):
    with pytest.raises(BadSignature, match="stale"):
        mailgun(source_settings).handle(http(body(age=age)))


def test_stale_json_hook_names_the_signature_blocks_timestamp(source_settings):
    with pytest.raises(BadSignature, match=r"^signature\.timestamp: stale"):
        mailgun(source_settings).handle(http(body(age=13 * 3600)))


@pytest.mark.parametrize("token", ["tok\x00en" * 5, "tok\x85en" * 5, "t" * 256])
def test_token_that_cannot_be_a_nonce_is_a_bad_signature(source_settings, token):
    """The token is stored as the replay nonce: the identifier rule, else a 503 on PostgreSQL."""
    with pytest.raises(BadSignature, match=r"^signature\.token: "):
        mailgun(source_settings).handle(http(body(token=token)))


@pytest.mark.parametrize("key", ["someone-else", SIGNING_KEY + " ", ""])
def test_signature_with_another_key(source_settings, key):
    with pytest.raises(BadSignature, match="does not match"):
        mailgun(source_settings).handle(http(body(key=key)))


@pytest.mark.parametrize("field, value", [
    ("signature", "0" * 64),
    ("signature", "forged"),
    ("signature", ""),
    ("token", TOKEN[:-1] + "6"),  # tampered token, original signature
    ("timestamp", "1795515301"),  # tampered timestamp, original signature
])
def test_forged_or_tampered_signature_block(source_settings, field, value):
    data = json.loads(body())
    data["signature"][field] = value

    with pytest.raises(BadSignature):
        mailgun(source_settings).handle(http(json.dumps(data).encode()))


def test_uppercase_hex_is_not_mailguns_signature(source_settings):
    data = json.loads(body())
    data["signature"]["signature"] = data["signature"]["signature"].upper()

    with pytest.raises(BadSignature):
        mailgun(source_settings).handle(http(json.dumps(data).encode()))


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
def test_missing_signature_fields(source_settings, missing):
    data = json.loads(body())
    del data["signature"][missing]

    with pytest.raises(BadSignature, match=missing):
        mailgun(source_settings).handle(http(json.dumps(data).encode()))


@pytest.mark.parametrize("block", [None, "sig", [], {}])
def test_missing_signature_block(source_settings, block):
    data = json.loads(body())
    data["signature"] = block

    with pytest.raises(BadSignature):
        mailgun(source_settings).handle(http(json.dumps(data).encode()))


@pytest.mark.parametrize("timestamp", ["", "now", "1795515300.5", "-1795515300", "١٢٣", True, None])
def test_malformed_timestamp_is_a_bad_signature(source_settings, timestamp):
    data = json.loads(body())
    data["signature"]["timestamp"] = timestamp

    with pytest.raises(BadSignature, match="timestamp"):
        mailgun(source_settings).handle(http(json.dumps(data).encode()))


def test_the_signature_does_not_cover_event_data(source_settings):
    """Why the token is a nonce: another event under the same signature still verifies."""
    original = json.loads(body())
    forged = {**original, "event-data": {**EVENTS["unsubscribed"], "id": "another-event"}}

    first = mailgun(source_settings).handle(http(json.dumps(original).encode()))
    second = mailgun(source_settings).handle(http(json.dumps(forged).encode()))

    assert first.nonce == second.nonce == TOKEN
    assert first.request_key != second.request_key


def test_rotation_accepts_every_listed_key(source_settings):
    source = mailgun(source_settings, "mailgun-strict")

    for key in (ROTATED_KEY, SIGNING_KEY):
        assert source.handle(http(body(key=key))).request_key == EVENT_ID
    with pytest.raises(BadSignature):
        source.handle(http(body(key="retired-key")))


def test_parent_signature_of_a_subaccount_domain(source_settings):
    data = json.loads(body(key="subaccount-key"))
    block = data["signature"]
    block["parent-signature"] = mailgun_signature(SIGNING_KEY, block["timestamp"], block["token"])

    assert mailgun(source_settings).handle(http(json.dumps(data).encode())).request_key == EVENT_ID


@pytest.mark.parametrize("content", [b"", b"{", b"signature=x", b"\xff\xfe"])
def test_malformed_json_is_a_bad_request(source_settings, content):
    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(http(content))

    assert (caught.value.status, caught.value.field) == (400, "body")


@pytest.mark.parametrize("content", [b"[]", b"null", b'"text"'])
def test_json_that_is_not_an_object_is_a_bad_request(source_settings, content):
    with pytest.raises(BadRequest, match="object"):
        mailgun(source_settings).handle(http(content))


@pytest.mark.parametrize("mimetype", ["text/plain", "application/xml", ""])
def test_wrong_content_type_is_415(source_settings, mimetype):
    with pytest.raises(UnsupportedMediaType) as caught:
        mailgun(source_settings).handle(http(body(), mimetype=mimetype))

    assert caught.value.status == 415


@pytest.mark.parametrize("options, problem", [
    ({}, "signing_key"),
    ({"signing_key": ""}, "signing_key"),
    ({"signing_key": []}, "signing_key"),
    ({"signing_key": "k", "complaint": "sms_ban"}, "complaint"),
    ({"signing_key": "k", "api_key": "k"}, "api_key"),
])
def test_bad_options_fail_at_start_up(options, problem):
    with pytest.raises(ValidationError) as caught:
        validate_source_options("mailgun", options)

    assert problem in caught.value.messages


def test_complaint_option_defaults_to_marketing_decline():
    assert validate_source_options("mailgun", {"signing_key": "k"})["complaint"] == MARKETING_DECLINE


# --- through POST /hooks/<source> and the ledger -----------------------------------------------


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def post(client, content: bytes, source: str = "mailgun", content_type: str = "application/json"):
    return client.post(f"/hooks/{source}", data=content, content_type=content_type)


def test_unsubscribe_is_accepted_with_a_signed_receipt(client, engine):
    response = post(client, body())

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["source"] == "mailgun"
    assert answer["event_ids"] == [EVENT_ID]
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]
    assert answer["receipt_id"] == response.headers["webhook-id"]
    assert response.headers["webhook-signature"].startswith("v1a,")
    with engine.connect() as conn:
        assert conn.execute(select(Consent.identity, Consent.state)).all() == [("guest@example.com", MARKETING_DECLINE)]
        assert conn.execute(select(ReplayNonce.nonce, ReplayNonce.request_key)).all() == [(TOKEN, EVENT_ID)]
    assert count(engine, Delivery) == 1


def test_mailgun_retry_of_the_same_body_is_a_duplicate(client, engine):
    content = body()
    first = post(client, content).get_json()

    response = post(client, content)

    again = response.get_json()
    assert response.status_code == 200
    assert again["status"] == "duplicate"
    assert again["original_receipt_id"] == first["receipt_id"]
    assert again["receipt_id"] != first["receipt_id"]
    assert (again["event_ids"], again["changes"]) == ([EVENT_ID], [])
    assert (count(engine, RequestRecord), count(engine, SignalRow), count(engine, Delivery)) == (1, 1, 1)


def test_same_signature_with_another_event_id_is_401_and_stores_nothing(client, engine):
    content = body()
    assert post(client, content).status_code == 200
    data = json.loads(content)
    data["event-data"] = {**data["event-data"], "id": "another-event", "recipient": "victim@example.com"}

    response = post(client, json.dumps(data).encode())

    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    assert "webhook-signature" not in response.headers
    assert (count(engine, RequestRecord), count(engine, SignalRow), count(engine, Consent)) == (1, 1, 1)
    assert count(engine, ReplayNonce) == 1


def test_replayed_token_is_refused_even_when_the_first_event_was_ignored(client, engine):
    content = body("delivered")
    assert post(client, content).get_json()["status"] == "ignored"
    data = json.loads(content)
    data["event-data"] = {**EVENTS["unsubscribed"], "id": "forged-unsubscribe"}

    assert post(client, json.dumps(data).encode()).status_code == 401
    assert count(engine, Consent) == 0


def test_a_fresh_token_for_another_event_is_accepted(client, engine):
    post(client, body())

    response = post(client, body("complained", token="c" * 50))

    assert response.get_json()["status"] == "accepted"
    assert count(engine, ReplayNonce) == 2


def test_same_event_under_a_new_signature_is_a_duplicate(client, engine):
    content = body()
    first = post(client, content).get_json()

    again = post(client, resigned(content)).get_json()

    assert (again["status"], again["original_receipt_id"]) == ("duplicate", first["receipt_id"])
    assert count(engine, Consent) == 1


def test_stale_token_is_401_and_stores_nothing(client, engine):
    response = post(client, body(age=13 * 3600))

    assert response.status_code == 401
    assert "stale" in response.get_json()["error"]
    assert count(engine, RequestRecord) == 0 and count(engine, ReplayNonce) == 0


def test_forged_signature_is_401_and_stores_nothing(client, engine):
    response = post(client, body(key="guessed-key"))

    assert response.status_code == 401
    assert count(engine, RequestRecord) == 0


def test_complaint_with_mail_ban_option_and_rotated_key(client, engine):
    response = post(client, body("complained", key=ROTATED_KEY), source="mailgun-strict")

    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MAIL_BAN]}]


@pytest.mark.parametrize("event", ["delivered", "failed", "opened"])
def test_other_events_are_acknowledged_as_ignored(client, engine, event):
    answer = post(client, body(event)).get_json()

    assert (answer["status"], answer["event_ids"], answer["changes"]) == ("ignored", [EVENTS[event]["id"]], [])
    assert count(engine, SignalRow) == 1
    assert count(engine, Consent) == count(engine, Delivery) == 0


def test_malformed_json_is_400_naming_the_body(client, engine):
    response = post(client, b'{"signature": ')

    assert response.status_code == 400
    assert response.get_json()["field"] == "body"
    assert count(engine, RequestRecord) == 0


def test_missing_event_id_is_400_naming_it(client, engine):
    data = json.loads(body())
    del data["event-data"]["id"]

    response = post(client, json.dumps(data).encode())

    assert (response.status_code, response.get_json()["field"]) == (400, "event-data.id")


def test_text_post_is_415(client, engine):
    response = post(client, body(), content_type="text/plain")

    assert response.status_code == 415
    assert count(engine, RequestRecord) == 0


# --- django-anymail's recorded JSON payloads ------------------------------------------------------

# django-anymail, tests/test_mailgun_webhooks.py: "an actual, complete (sanitized) delivered event as
# received from Mailgun", and its complained and unsubscribed events (event-data only; signed here).
ANYMAIL_EVENTS = {
    "delivered": {
        "tags": [], "timestamp": 1534108637.153125,
        "storage": {"url": "https://sw.api.mailgun.net/v3/domains/example.org/messages/eyJwI...", "key": "eyJwI..."},
        "recipient-domain": "example.com", "id": "hTWCTD81RtiDN-...", "campaigns": [], "user-variables": {},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "log-level": "info",
        "envelope": {"sending-ip": "333.123.123.200", "sender": "test@example.org", "transport": "smtp",
                     "targets": "recipient@example.com"},
        "message": {"headers": {"to": "recipient@example.com",
                                "message-id": "20180812211713.1.DF5966851B4BAA99@example.org",
                                "from": "test@example.org", "subject": "Testing"},
                    "attachments": [], "size": 809},
        "recipient": "recipient@example.com", "event": "delivered",
        "delivery-status": {"tls": True, "mx-host": "smtp-in.example.com", "attempt-no": 1, "description": "",
                            "session-seconds": 3.5700838565826416, "utf8": True, "code": 250, "message": "OK",
                            "certificate-verified": True},
    },
    "complained": {
        "event": "complained", "id": "ncV2XwymRUKbPek_MIM-Gw", "timestamp": 1377214260.049634, "log-level": "warn",
        "recipient": "recipient@example.com",
        "message": {"headers": {"to": "foo@recipient.com", "message-id": "20130718032413.263EE2E0926@example.org",
                                "from": "Sender Name <sender@example.org>", "subject": "We are not spammer"}},
    },
    "unsubscribed": {
        "event": "unsubscribed", "id": "W3X4JOhFT-OZidZGKKr9iA", "timestamp": 1377213791.421473, "log-level": "info",
        "recipient": "recipient@example.com",
        "message": {"headers": {"message-id": "20130822232216.13966.79700@samples.mailgun.org"}},
    },
}


def signed_json(event_data: dict, token: str = "651869375b9df3c98fc15c4889b102119add1235c38fc92824") -> bytes:
    timestamp = str(int(time.time()))
    return json.dumps({"signature": {"timestamp": timestamp, "token": token,
                                     "signature": mailgun_signature(SIGNING_KEY, timestamp, token)},
                       "event-data": event_data}).encode()


@pytest.mark.parametrize("name, kind, add", [
    ("delivered", OTHER, frozenset()), ("complained", OPT_OUT, {MARKETING_DECLINE}),
    ("unsubscribed", OPT_OUT, {MARKETING_DECLINE}),
])
def test_anymail_recorded_json_events(source_settings, name, kind, add):
    inbound = mailgun(source_settings).handle(http(signed_json(ANYMAIL_EVENTS[name])))

    [signal] = inbound.signals
    assert inbound.request_key == ANYMAIL_EVENTS[name]["id"]
    assert (signal.kind, signal.add, signal.email) == (kind, add, "recipient@example.com")
    assert signal.detail["message_id"] == ANYMAIL_EVENTS[name]["message"]["headers"]["message-id"]


# --- legacy webhooks: form-encoded and multipart --------------------------------------------------

# django-anymail, tests/test_mailgun_webhooks.py, MailgunLegacyTestCase: the legacy "delivered" and
# "dropped" posts (real, sanitised), field for field; anymail signs them with its helper, as here.
LEGACY_DELIVERED = [
    ("domain", "example.com"),
    ("message-headers", json.dumps([
        ["Sender", "from=example.com"], ["Date", "Thu, 21 Apr 2016 17:55:29 +0000"],
        ["X-Mailgun-Sid", "WyIxZmY4ZSIsICJtZWRtdW5kc0BnbWFpbC5jb20iLCAiZjFjNzgyIl0="],
        ["Received", "by luna.mailgun.net with HTTP; Thu, 21 Apr 2016 17:55:29 +0000"],
        ["Message-Id", "<20160421175529.19495.89030.B3AE3728@example.com>"], ["To", "recipient@example.com"],
        ["From", "from@example.com"], ["Subject", "Webhook testing"], ["Mime-Version", "1.0"],
        ["Content-Type", ["multipart/alternative", {"boundary": "74fb561763da440d8e6a034054974251"}]]])),
    ("X-Mailgun-Sid", "WyIxZmY4ZSIsICJtZWRtdW5kc0BnbWFpbC5jb20iLCAiZjFjNzgyIl0="),
    ("token", "06c96bafc3f42a66b9edd546347a2fe18dc23461fe80dc52f0"),
    ("timestamp", "1461261330"),
    ("Message-Id", "<20160421175529.19495.89030.B3AE3728@example.com>"),
    ("recipient", "recipient@example.com"),
    ("event", "delivered"),
]
LEGACY_DROPPED = [
    ("code", "605"), ("domain", "example.com"), ("description", "Not delivering to previously bounced address"),
    ("attachment-count", "1"), ("Message-Id", "<20160421180324.70521.79375.96884DDB@example.com>"),
    ("reason", "hardfail"), ("event", "dropped"), ("recipient", "bounce@example.com"),
    ("timestamp", "1461261330"), ("X-Mailgun-Sid", "WyI3Y2VjMyIsICJib3VuY2VAZXhhbXBsZS5jb20iLCAiZjFjNzgyIl0="),
    ("token", "a3fe1fa1640349ac552b84ddde373014b4c41645830c8dd3fc"),
]
# Legacy "unsubscribed" and "complained" posts with the fields Mailgun documented for them (anymail's
# _common_legacy_event_fields: event, recipient, domain, ip, country, ..., tag, mailing-list, message-id,
# timestamp, token, signature; a complaint carries the message's headers and Message-Id, as "dropped" does).
LEGACY_UNSUBSCRIBED = [
    ("event", "unsubscribed"), ("recipient", "guest@example.com"), ("domain", "mg.example.com"),
    ("ip", "203.0.113.7"), ("country", "US"), ("region", "NY"), ("city", "New York"),
    ("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6)"), ("device-type", "desktop"),
    ("client-type", "browser"), ("client-name", "Chrome"), ("client-os", "OS X"), ("tag", "newsletter"),
    ("mailing-list", ""), ("message-id", "20261124101500.1.ABCDEF@mg.example.com"),
    ("h", "2b2b0c0c2f1f7e0b8bdfe5a1a2c9e6d1"),
    ("timestamp", "1461261330"), ("token", "c2a3f0b1e4d5a6978877665544332211ffeeddccbbaa998877"),
]
LEGACY_COMPLAINED = [
    ("event", "complained"), ("recipient", "Guest@Example.COM"), ("domain", "mg.example.com"),
    ("message-headers", json.dumps([["Message-Id", "<20261124.1.X@mg.example.com>"], ["To", "guest@example.com"],
                                    ["From", "hotel@mg.example.com"], ["Subject", "November news"]])),
    ("Message-Id", "<20261124.1.X@mg.example.com>"), ("campaign-id", ""), ("tag", "newsletter"),
    ("attachment-count", "1"),
    ("timestamp", "1461261330"), ("token", "9b8a7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3b4a59687a1"),
]


def legacy_fields(fields: list[tuple[str, str]], *, key: str = SIGNING_KEY, age: float = 60) -> list[tuple[str, str]]:
    """The post's fields with a fresh timestamp (``age`` seconds old) and Mailgun's signature fields last."""
    timestamp, token = str(int(time.time() - age)), dict(fields)["token"]
    kept = [(name, value) for name, value in fields if name not in ("timestamp", "token", "signature")]
    return [*kept, ("timestamp", timestamp), ("token", token), ("signature", mailgun_signature(key, timestamp, token))]


def urlencoded(fields: list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode()


BOUNDARY = "74fb561763da440d8e6a034054974251"


def multipart(fields: list[tuple[str, str]], attachment: bytes | None = None) -> bytes:
    """RFC 7578 form-data as Mailgun's legacy hooks post it (a complaint may attach the message)."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields]
    if attachment is not None:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachment-1"; '
                     f'filename="message.eml"\r\nContent-Type: message/rfc822\r\n\r\n'.encode() + attachment + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def legacy_http(content: bytes, mimetype: str = "application/x-www-form-urlencoded") -> HttpRequest:
    content_type = f"{mimetype}; boundary={BOUNDARY}" if mimetype == "multipart/form-data" else mimetype
    return HttpRequest(method="POST", path="/hooks/mailgun", query_string="",
                       headers=Headers({"Content-Type": content_type}), body=content, mimetype=mimetype,
                       args=MultiDict())


def test_legacy_delivered_sample_is_only_recorded(source_settings):
    inbound = mailgun(source_settings).handle(legacy_http(urlencoded(legacy_fields(LEGACY_DELIVERED))))

    [signal] = inbound.signals
    assert inbound.request_key.startswith("legacy:") and signal.event_id == inbound.request_key
    assert inbound.nonce == "06c96bafc3f42a66b9edd546347a2fe18dc23461fe80dc52f0"
    assert (signal.kind, signal.keyword, signal.email) == (OTHER, "delivered", "recipient@example.com")
    assert signal.detail["message_id"] == "<20160421175529.19495.89030.B3AE3728@example.com>"
    assert signal.detail["format"] == "legacy"


def test_legacy_sample_at_its_own_time_verifies(source_settings, monkeypatch):
    """anymail's sample as posted in 2016 (timestamp 1461261330), our clock set near it."""
    fields = [*LEGACY_DROPPED, ("signature", mailgun_signature(SIGNING_KEY, "1461261330",
                                                               "a3fe1fa1640349ac552b84ddde373014b4c41645830c8dd3fc"))]
    pin_clock(monkeypatch, 1461261330 + 3600)

    inbound = mailgun(source_settings).handle(legacy_http(urlencoded(fields)))

    [signal] = inbound.signals
    assert (signal.kind, signal.keyword, signal.email) == (OTHER, "dropped", "bounce@example.com")
    assert signal.occurred_at == datetime.fromtimestamp(1461261330, UTC)
    assert signal.detail["code"] == "605"


@pytest.mark.parametrize("encode, mimetype", [(urlencoded, "application/x-www-form-urlencoded"),
                                              (multipart, "multipart/form-data")])
def test_legacy_unsubscribed_is_a_marketing_decline(source_settings, encode, mimetype):
    inbound = mailgun(source_settings).handle(legacy_http(encode(legacy_fields(LEGACY_UNSUBSCRIBED)), mimetype))

    [signal] = inbound.signals
    assert (signal.kind, signal.add, signal.email) == (OPT_OUT, {MARKETING_DECLINE}, "guest@example.com")
    assert signal.detail["message_id"] == "20261124101500.1.ABCDEF@mg.example.com"
    assert signal.detail["tags"] == ["newsletter"]


@pytest.mark.parametrize("name, complaint", [("mailgun", MARKETING_DECLINE), ("mailgun-strict", MAIL_BAN)])
def test_legacy_complaint_with_an_attached_message_follows_the_complaint_option(source_settings, name, complaint):
    key = ROTATED_KEY if name == "mailgun-strict" else SIGNING_KEY
    content = multipart(legacy_fields(LEGACY_COMPLAINED, key=key), attachment=b"From: hotel@mg.example.com\r\n\r\nHi")

    [signal] = mailgun(source_settings, name).handle(legacy_http(content, "multipart/form-data")).signals

    assert (signal.kind, signal.add, signal.email) == (OPT_OUT, {complaint}, "guest@example.com")


def test_legacy_user_variables_named_like_mailguns_fields_are_not_confused(source_settings):
    """anymail's test_metadata_key_conflicts: Mailgun merges user-variables into the post; for the
    signature fields its own value comes last, for the others first."""
    signed = dict(legacy_fields(LEGACY_UNSUBSCRIBED))
    fields = [(n, v) for n, v in LEGACY_UNSUBSCRIBED if n not in ("event", "recipient", "timestamp", "token")]
    fields = [("event", "unsubscribed"), ("event", "metadata-event"), ("recipient", "guest@example.com"),
              ("recipient", "metadata-recipient"), *fields,
              ("signature", "metadata-signature"), ("timestamp", "metadata-timestamp"), ("token", "metadata-token"),
              ("timestamp", signed["timestamp"]), ("token", signed["token"]), ("signature", signed["signature"])]

    [signal] = mailgun(source_settings).handle(legacy_http(urlencoded(fields))).signals

    assert (signal.keyword, signal.email, signal.add) == ("unsubscribed", "guest@example.com", {MARKETING_DECLINE})


@pytest.mark.parametrize("change, message", [
    ({"key": "someone-else"}, "does not match"),
    ({"age": 13 * 3600}, "stale"),
])
def test_legacy_forged_or_stale_is_401(source_settings, change, message):
    content = urlencoded(legacy_fields(LEGACY_UNSUBSCRIBED, **change))

    with pytest.raises(BadSignature, match=message):
        mailgun(source_settings).handle(legacy_http(content))


def test_legacy_stale_post_names_its_own_timestamp_field(source_settings):
    """A legacy post's timestamp is the top-level ``timestamp`` field: no ``signature.`` block."""
    content = urlencoded(legacy_fields(LEGACY_UNSUBSCRIBED, age=13 * 3600))

    with pytest.raises(BadSignature, match=r"^timestamp: stale"):
        mailgun(source_settings).handle(legacy_http(content))


@pytest.mark.parametrize("event", ["unsubscribed\x85", "unsub\x9bscribed", "x" * 256, "\x7f"])
@pytest.mark.parametrize("encode, mimetype", [(urlencoded, "application/x-www-form-urlencoded"),
                                              (multipart, "multipart/form-data")])
def test_legacy_event_follows_the_identifier_rule(source_settings, event, encode, mimetype):
    fields = [("event", event), *[(n, v) for n, v in legacy_fields(LEGACY_UNSUBSCRIBED) if n != "event"]]

    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(legacy_http(encode(fields), mimetype))

    assert caught.value.field == "event"


@pytest.mark.parametrize("mimetype", ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_each_body_is_parsed_once(source_settings, monkeypatch, mimetype):
    """verify and parse both read the signed fields: the request keeps what it parsed."""
    calls = []

    def counting(name, original):
        def parse(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return parse

    for owner, name in [(base, "parse_json"), (base, "parse_qsl"), (MultiPartParser, "parse")]:
        monkeypatch.setattr(owner, name, counting(name, getattr(owner, name)))
    if mimetype == "application/json":
        request = http(body())
    else:
        encode = multipart if mimetype == "multipart/form-data" else urlencoded
        request = legacy_http(encode(legacy_fields(LEGACY_UNSUBSCRIBED)), mimetype)

    [signal] = mailgun(source_settings).handle(request).signals

    assert signal.add == {MARKETING_DECLINE}
    assert len(calls) == 1, calls


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
def test_legacy_missing_signature_field_is_401_naming_it(source_settings, missing):
    fields = [(n, v) for n, v in legacy_fields(LEGACY_UNSUBSCRIBED) if n != missing]

    with pytest.raises(BadSignature, match=f"^{missing}: "):
        mailgun(source_settings).handle(legacy_http(urlencoded(fields)))


def test_legacy_inbound_route_post_without_event_is_400(source_settings):
    """anymail's test_misconfigured_inbound: an inbound-mail route pointed at the tracking hook."""
    fields = legacy_fields([("recipient", "test@inbound.example.com"), ("sender", "envelope-from@example.org"),
                            ("message-headers", "[]"), ("body-plain", "Test body plain"),
                            ("body-html", "<div>Test body html</div>"), ("token", "1234567890abcdef1234567890abcdef")])

    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(legacy_http(urlencoded(fields)))

    assert caught.value.field == "event"


def test_legacy_multipart_without_a_boundary_is_400(source_settings):
    content = multipart(legacy_fields(LEGACY_UNSUBSCRIBED))
    request = dataclasses.replace(legacy_http(content, "multipart/form-data"),
                                  headers=Headers({"Content-Type": "multipart/form-data"}))

    with pytest.raises(BadRequest) as caught:
        mailgun(source_settings).handle(request)

    assert caught.value.field == "body"


def test_legacy_key_binds_the_event_to_the_token(source_settings):
    fields = legacy_fields(LEGACY_UNSUBSCRIBED)
    other = [(n, "victim@example.com" if n == "recipient" else v) for n, v in fields]

    first = mailgun(source_settings).handle(legacy_http(urlencoded(fields)))
    forged = mailgun(source_settings).handle(legacy_http(urlencoded(other)))

    assert first.nonce == forged.nonce
    assert first.request_key != forged.request_key


def legacy_post(client, content: bytes, content_type: str = "application/x-www-form-urlencoded"):
    if content_type == "multipart/form-data":
        content_type += f"; boundary={BOUNDARY}"
    return client.post("/hooks/mailgun", data=content, content_type=content_type)


def test_legacy_form_post_is_accepted_and_delivered_once(client, engine):
    content = urlencoded(legacy_fields(LEGACY_UNSUBSCRIBED))

    response = legacy_post(client, content)
    retry = legacy_post(client, content).get_json()  # Mailgun's retry: the same fields, the original signature

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]
    assert response.headers["webhook-signature"].startswith("v1a,")
    assert (retry["status"], retry["original_receipt_id"]) == ("duplicate", answer["receipt_id"])
    assert (count(engine, SignalRow), count(engine, Delivery)) == (1, 1)


def test_legacy_multipart_complaint_through_the_web_layer(client, engine):
    content = multipart(legacy_fields(LEGACY_COMPLAINED), attachment=b"Subject: November news\r\n\r\nHello")

    response = legacy_post(client, content, "multipart/form-data")

    assert response.status_code == 200
    assert response.get_json()["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]


def test_legacy_token_replayed_with_another_recipient_is_401(client, engine):
    fields = legacy_fields(LEGACY_UNSUBSCRIBED)
    assert legacy_post(client, urlencoded(fields)).status_code == 200
    forged = [(n, "victim@example.com" if n == "recipient" else v) for n, v in fields]

    response = legacy_post(client, urlencoded(forged))

    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    assert count(engine, Consent) == 1


@pytest.mark.parametrize("fields", [LEGACY_DELIVERED, LEGACY_DROPPED], ids=["delivered", "dropped"])
def test_legacy_other_events_are_ignored(client, engine, fields):
    answer = legacy_post(client, urlencoded(legacy_fields(fields))).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])
    assert count(engine, Delivery) == 0
