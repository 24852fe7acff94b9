"""Mailgun source: HMAC over timestamp + token signed here as Mailgun does, replay refused, events mapped."""

import dataclasses
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, UnsupportedMediaType
from receiver.ledger.models import Consent, Delivery, Receipt, ReplayNonce, SignalRow
from receiver.signals import OPT_OUT, OTHER
from receiver.sources import validate_source_options
from receiver.sources.base import HttpRequest
from receiver.sources.mailgun import MailgunSource
from receiver.states import MAIL_BAN, MARKETING_DECLINE
from tests.helpers import config_toml, empty_tables, make_settings

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
    monkeypatch.setattr(time, "time", lambda: APPENDIX_A_TIMESTAMP + 30)

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


@pytest.mark.parametrize("mimetype", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""])
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
    assert (count(engine, Receipt), count(engine, SignalRow), count(engine, Delivery)) == (1, 1, 1)


def test_same_signature_with_another_event_id_is_401_and_stores_nothing(client, engine):
    content = body()
    assert post(client, content).status_code == 200
    data = json.loads(content)
    data["event-data"] = {**data["event-data"], "id": "another-event", "recipient": "victim@example.com"}

    response = post(client, json.dumps(data).encode())

    assert response.status_code == 401
    assert "token" in response.get_json()["error"]
    assert "webhook-signature" not in response.headers
    assert (count(engine, Receipt), count(engine, SignalRow), count(engine, Consent)) == (1, 1, 1)
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
    assert count(engine, Receipt) == 0 and count(engine, ReplayNonce) == 0


def test_forged_signature_is_401_and_stores_nothing(client, engine):
    response = post(client, body(key="guessed-key"))

    assert response.status_code == 401
    assert count(engine, Receipt) == 0


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
    assert count(engine, Receipt) == 0


def test_missing_event_id_is_400_naming_it(client, engine):
    data = json.loads(body())
    del data["event-data"]["id"]

    response = post(client, json.dumps(data).encode())

    assert (response.status_code, response.get_json()["field"]) == (400, "event-data.id")


def test_form_post_is_415(client, engine):
    response = post(client, body(), content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert count(engine, Receipt) == 0
