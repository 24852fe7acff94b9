"""Standard Webhooks source: requests signed in the test by the `standardwebhooks` library, partner events."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks.webhooks
from sqlalchemy import func, select
from standardwebhooks import Webhook
from svix.webhooks import Webhook as SvixWebhook
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, ConfigError, UnsupportedMediaType
from receiver.ledger.models import Consent, RequestRecord, SignalRow
from receiver.receipts import ReceiptSigner
from receiver.signals import OPT_IN, OPT_OUT
from receiver.sources.base import HttpRequest
from receiver.sources.standard_webhooks import StandardWebhooksSource
from receiver.states import MAIL_BAN, MARKETING_DECLINE, MARKETING_DECLINE_SMS, SMS_BAN
from tests.helpers import config_toml, empty_tables, make_settings, pin_clock

PATH = "/hooks/booking-engine"
# inbound-formats.md, Appendix A: secret, headers and body exactly as documented.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
APPENDIX_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
APPENDIX_TIMESTAMP = 1795515300
APPENDIX_SIGNATURE = "v1,1U792fvP7Pj/pLvqY0i/fnnYEoV5ZxrepHdIXggeIt0="
APPENDIX_BODY = (
    b'{"id":"evt_01HZX","type":"consent.opt_out","occurred_at":"2026-11-22T10:15:00Z",'
    b'"customer":{"email":"guest@example.com","phone":"+15551234567"},'
    b'"states":["marketing_decline","marketing_decline_sms"],"reason":"guest asked at check-out"}'
)
NEXT_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
RETIRED_SECRET = "whsec_" + base64.b64encode(b"r" * 32).decode()
RECEIPT_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

SOURCE_TOML = """
[sources.booking-engine]
kind = "standard-webhooks"
tenant = "grand"
secret = "env:BOOKING_ENGINE_SECRET"
"""


def event(n: int = 1, *, type: str = "consent.opt_out", states=(MARKETING_DECLINE,), **customer) -> dict:
    """One partner event as the contract's schema shows it."""
    return {"id": f"evt_{n:05d}", "type": type, "occurred_at": "2026-11-22T10:15:00Z",
            "customer": customer or {"email": f"guest{n}@example.com"}, "states": list(states)}


def load(tmp_path, secret=SECRET, database_url: str | None = None, **env):
    return make_settings(tmp_path, database_url or f"sqlite:///{tmp_path / 'unused.db'}",
                         toml=config_toml(extra=SOURCE_TOML), BOOKING_ENGINE_SECRET=secret, **env)


@pytest.fixture
def source_settings(tmp_path):
    return load(tmp_path)


@pytest.fixture
def source(source_settings) -> StandardWebhooksSource:
    return StandardWebhooksSource(source_settings.sources["booking-engine"], source_settings)


def rotating(tmp_path, secrets: list[str]) -> StandardWebhooksSource:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}",
                             toml=config_toml(extra=SOURCE_TOML.replace('"env:BOOKING_ENGINE_SECRET"',
                                                                        json.dumps(secrets))))
    return StandardWebhooksSource(settings.sources["booking-engine"], settings)


def sign(body: bytes, *, secret: str = SECRET, msg_id: str = "msg_1", at: datetime | None = None) -> dict:
    """The three headers as a Standard Webhooks sender makes them, by the library itself."""
    at = at or datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode())}


def http(body: bytes, headers: dict, *, mimetype: str = "application/json", method: str = "POST") -> HttpRequest:
    return HttpRequest(method=method, path=PATH, query_string="", headers=Headers(headers), body=body,
                       mimetype=mimetype, args=MultiDict())


def signed(payload, **kwargs) -> HttpRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http(body, sign(body, **kwargs))


def refused(source, payload) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        source.handle(signed(payload))
    assert caught.value.status == 400
    return caught.value


APPENDIX_HEADERS = {"webhook-id": APPENDIX_ID, "webhook-timestamp": str(APPENDIX_TIMESTAMP),
                    "webhook-signature": APPENDIX_SIGNATURE}


# --- the documented vectors -------------------------------------------------------------------

def test_appendix_signature_is_what_the_library_computes():
    at = datetime.fromtimestamp(APPENDIX_TIMESTAMP, UTC)

    assert Webhook(SECRET).sign(APPENDIX_ID, at, APPENDIX_BODY.decode()) == APPENDIX_SIGNATURE


def test_appendix_b_vector_is_what_the_library_computes():
    at = datetime.fromtimestamp(1674087231, UTC)

    assert (Webhook(SECRET).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, '{"test": 2432232314}')
            == "v1,AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI=")


def test_appendix_request_verbatim_is_an_opt_out(source, monkeypatch):
    pin_clock(monkeypatch, APPENDIX_TIMESTAMP + 30)

    inbound = source.handle(http(APPENDIX_BODY, APPENDIX_HEADERS))

    assert inbound.request_key == APPENDIX_ID
    [signal] = inbound.signals
    assert signal.event_id == "evt_01HZX"
    assert (signal.kind, signal.keyword) == (OPT_OUT, "consent.opt_out")
    assert (signal.email, signal.phone) == ("guest@example.com", "+15551234567")
    assert signal.add == {MARKETING_DECLINE, MARKETING_DECLINE_SMS}
    assert signal.remove == frozenset()
    assert signal.occurred_at == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    assert signal.detail == {"reason": "guest asked at check-out"}


@pytest.mark.parametrize("offset, message", [(301, "too old"), (-301, "too new")])
def test_appendix_request_outside_five_minutes_of_our_clock(source, monkeypatch, offset, message):
    pin_clock(monkeypatch, APPENDIX_TIMESTAMP + offset)

    with pytest.raises(BadSignature, match=f"webhook-timestamp: message timestamp {message}"):
        source.handle(http(APPENDIX_BODY, APPENDIX_HEADERS))


# --- signatures -------------------------------------------------------------------------------

def test_single_event_signed_now(source):
    inbound = source.handle(signed(event(7, email="Guest@Example.COM", phone="(555) 123-4567"), msg_id="msg_x"))

    assert inbound.request_key == "msg_x"
    [signal] = inbound.signals
    assert (signal.event_id, signal.email, signal.phone) == ("evt_00007", "guest@example.com", "+15551234567")
    assert signal.detail == {}


def test_rotation_accepts_either_secret(tmp_path):
    source = rotating(tmp_path, [NEXT_SECRET, SECRET])

    for secret in (NEXT_SECRET, SECRET):
        assert source.handle(signed(event(), secret=secret)).signals[0].kind == OPT_OUT
    with pytest.raises(BadSignature, match="no matching signature"):
        source.handle(signed(event(), secret=RETIRED_SECRET))


def test_several_signatures_in_the_header_any_one_may_match(source):
    body = json.dumps(event()).encode()
    headers = sign(body)
    retired = sign(body, secret=RETIRED_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{retired} v1a,bm90LWNoZWNrZWQ= {headers['webhook-signature']}"

    assert source.handle(http(body, headers)).signals[0].event_id == "evt_00001"


@pytest.mark.parametrize("offset, message", [(-301, "too old"), (-3600, "too old"), (301, "too new"),
                                             (86400, "too new")])
def test_timestamps_outside_five_minutes_are_refused(source, offset, message):
    at = datetime.now(UTC) + timedelta(seconds=offset)

    with pytest.raises(BadSignature, match=f"webhook-timestamp: message timestamp {message}"):
        source.handle(signed(event(), at=at))


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamps_within_five_minutes_are_accepted(source, offset):
    at = datetime.now(UTC) + timedelta(seconds=offset)

    assert source.handle(signed(event(), at=at)).signals


def test_signed_with_another_secret(source):
    with pytest.raises(BadSignature, match="no matching signature"):
        source.handle(signed(event(), secret=NEXT_SECRET))


@pytest.mark.parametrize("signature", [
    "v1,1U792fvP7Pj/pLvqY0i/fnnYEoV5ZxrepHdIXggeIt0=",  # right form, wrong content
    "v1",  # no comma: the library raises ValueError, not its own error
    "v1,a,b",
    "v1,!!!not base64!!!",
    "v2,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
    " ",
])
def test_forged_or_malformed_signatures_are_401(source, signature):
    body = json.dumps(event()).encode()
    headers = {**sign(body), "webhook-signature": signature}

    with pytest.raises(BadSignature) as caught:
        source.handle(http(body, headers))

    assert caught.value.status == 401


@pytest.mark.parametrize("tamper", [
    lambda body: body.replace(b"marketing_decline", b"mail_ban"),
    lambda body: body.replace(b"guest1@", b"other@"),
    lambda body: body + b" ",
    lambda body: json.dumps(json.loads(body), indent=1).encode(),  # re-serialised JSON breaks it too
])
def test_body_tampered_after_signing(source, tamper):
    body = json.dumps(event()).encode()
    headers = sign(body)

    with pytest.raises(BadSignature):
        source.handle(http(tamper(body), headers))


def test_signed_for_another_webhook_id(source):
    body = json.dumps(event()).encode()
    headers = {**sign(body, msg_id="msg_a"), "webhook-id": "msg_b"}

    with pytest.raises(BadSignature):
        source.handle(http(body, headers))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_401_naming_it(source, missing):
    body = json.dumps(event()).encode()
    headers = sign(body)
    del headers[missing]

    with pytest.raises(BadSignature, match=f"{missing}: missing"):
        source.handle(http(body, headers))


@pytest.mark.parametrize("timestamp", ["yesterday", "nan", "inf", "1e400"])
def test_unreadable_timestamp_is_401(source, timestamp):
    body = json.dumps(event()).encode()
    headers = {**sign(body), "webhook-timestamp": timestamp}

    with pytest.raises(BadSignature):
        source.handle(http(body, headers))


@pytest.mark.parametrize("variant", ["{}.9", "{}.0", " {}", "+{}", "{}e0", "{:_}"])
def test_timestamp_must_be_exactly_the_signed_digits(source, monkeypatch, variant):
    """The library reads the header with float() and signs its floor: the appendix's signature, made
    for 1795515300, also verified with 1795515300.9. Only the digits that were signed are accepted."""
    pin_clock(monkeypatch, APPENDIX_TIMESTAMP + 30)
    headers = {**APPENDIX_HEADERS, "webhook-timestamp": variant.format(APPENDIX_TIMESTAMP)}

    with pytest.raises(BadSignature, match="^webhook-timestamp: not Unix seconds"):
        source.handle(http(APPENDIX_BODY, headers))


def test_body_that_is_not_utf8_is_401(source):
    body = b'{"id": "\xff"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
               "webhook-signature": "v1," + base64.b64encode(b"s" * 32).decode()}

    with pytest.raises(BadSignature, match="body is not utf-8"):
        source.handle(http(body, headers))


@pytest.mark.parametrize("mimetype", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_wrong_content_type_is_415(source, mimetype):
    body = json.dumps(event()).encode()

    with pytest.raises(UnsupportedMediaType) as caught:
        source.handle(http(body, sign(body), mimetype=mimetype))

    assert caught.value.status == 415


def test_only_post_is_accepted(source):
    body = json.dumps(event()).encode()

    with pytest.raises(BadSignature):
        source.handle(http(body, sign(body), method="PUT"))


# --- Svix's header names -----------------------------------------------------------------------

def svix_signed(payload, *, msg_id: str = "msg_svix", secret: str = SECRET) -> HttpRequest:
    """A request as a Svix-hosted sender posts it: svix-* headers, signed by the svix library."""
    body = json.dumps(payload).encode()
    at = datetime.now(UTC)
    return http(body, {"svix-id": msg_id, "svix-timestamp": str(int(at.timestamp())),
                       "svix-signature": SvixWebhook(secret).sign(msg_id, at, body.decode())})


# Svix's published test vector (Svix's "Verifying webhooks manually" docs; the Standard Webhooks
# libraries' tests carry it too), under the header names a Svix-hosted sender posts it with.
SVIX_VECTOR_BODY = b'{"test": 2432232314}'
SVIX_VECTOR_HEADERS = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
                       "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def test_svix_published_vector_verifies_under_svix_header_names(source, monkeypatch):
    pin_clock(monkeypatch, 1614265330 + 30)

    source.verify(http(SVIX_VECTOR_BODY, SVIX_VECTOR_HEADERS))  # no exception: the signature holds
    with pytest.raises(BadSignature, match="svix-signature: no matching signature"):
        source.verify(http(SVIX_VECTOR_BODY.replace(b"2432232314", b"2432232315"), SVIX_VECTOR_HEADERS))


def test_svix_published_vector_is_stale_today(source):
    with pytest.raises(BadSignature, match="svix-timestamp: message timestamp too old"):
        source.verify(http(SVIX_VECTOR_BODY, SVIX_VECTOR_HEADERS))


def test_svix_headers_are_accepted(source):
    inbound = source.handle(svix_signed(event(5), msg_id="msg_from_svix"))

    assert inbound.request_key == "msg_from_svix"
    assert [s.event_id for s in inbound.signals] == ["evt_00005"]


def test_svix_signature_is_still_checked(source):
    request = svix_signed(event(), secret=NEXT_SECRET)

    with pytest.raises(BadSignature, match="svix-signature: no matching signature"):
        source.handle(request)


@pytest.mark.parametrize("missing", ["svix-timestamp", "svix-signature"])
def test_missing_svix_header_is_401_naming_it(source, missing):
    request = svix_signed(event())
    headers = Headers(request.headers)
    del headers[missing]

    with pytest.raises(BadSignature, match=f"{missing}: missing"):
        source.handle(http(request.body, dict(headers)))


def test_svix_id_is_held_to_the_identifier_rule(source):
    with pytest.raises(BadRequest) as caught:
        source.handle(svix_signed(event(), msg_id="m" * 256))

    assert caught.value.field == "svix-id"


def test_svix_library_verifies_our_receipt(source):
    answer = b'{"receipt_id":"rcpt_01","status":"accepted"}'

    headers = ReceiptSigner([RECEIPT_KEY]).headers(answer, receipt_id="rcpt_01", hmac_secrets=source.hmac_secrets())

    SvixWebhook(SECRET).verify(answer, headers)  # raises if it does not hold


# --- parsing ----------------------------------------------------------------------------------

def test_batch_keeps_the_order_of_its_events(source):
    events = [event(1), event(2, email="b@example.com", phone="+15550000002"), event(3, phone="+447700900123")]

    inbound = source.handle(signed({"events": events}, msg_id="msg_batch"))

    assert inbound.request_key == "msg_batch"
    assert [s.event_id for s in inbound.signals] == ["evt_00001", "evt_00002", "evt_00003"]
    assert [(s.email, s.phone) for s in inbound.signals] == [
        ("guest1@example.com", None), ("b@example.com", "+15550000002"), (None, "+447700900123")]


def test_opt_in_removes_the_named_states(source):
    [signal] = source.handle(signed(event(type="consent.opt_in", states=[SMS_BAN, MARKETING_DECLINE_SMS],
                                          phone="+15551234567"))).signals

    assert (signal.kind, signal.keyword) == (OPT_IN, "consent.opt_in")
    assert signal.remove == {SMS_BAN, MARKETING_DECLINE_SMS}
    assert signal.add == frozenset()


def test_every_state_may_be_named(source):
    [signal] = source.handle(signed(event(states=[MAIL_BAN, MARKETING_DECLINE, SMS_BAN, MARKETING_DECLINE_SMS],
                                          email="a@example.com", phone="+15551234567"))).signals

    assert signal.add == {MAIL_BAN, MARKETING_DECLINE, SMS_BAN, MARKETING_DECLINE_SMS}


def test_optional_fields_may_be_absent_or_null(source):
    payload = {"id": "evt_min", "type": "consent.opt_out", "customer": {"email": None, "phone": "+15551234567"},
               "states": [SMS_BAN], "occurred_at": None, "reason": None}

    [signal] = source.handle(signed(payload)).signals

    assert (signal.email, signal.occurred_at, signal.detail) == (None, None, {})


def test_unknown_fields_are_ignored_for_forward_compatibility(source):
    payload = {**event(), "schema_version": 2, "hotel": {"code": "GRD"},
               "customer": {"email": "guest@example.com", "loyalty_id": "L123"}}

    [signal] = source.handle(signed(payload)).signals

    assert signal.email == "guest@example.com"
    assert signal.detail == {}


def test_batch_of_1000_is_accepted(source):
    events = [event(n) for n in range(1000)]

    assert len(source.handle(signed({"events": events})).signals) == 1000


@pytest.mark.parametrize("events", [[], [event(n) for n in range(1001)], "evt_1", {"id": "evt_1"}, None])
def test_batch_size_and_shape(source, events):
    error = refused(source, {"events": events})

    assert error.field == "events"
    assert "1 to 1000" in error.message


@pytest.mark.parametrize("payload", [b"[]", b'"event"', b"null", b"42"])
def test_body_must_be_an_object(source, payload):
    assert refused(source, payload).field == "body"


@pytest.mark.parametrize("payload", [b"{", b"", b"{'id': 1}", b'{"id": "evt_1",}'])
def test_malformed_json_is_400(source, payload):
    error = refused(source, payload)

    assert (error.field, error.message) == ("body", "body: not valid JSON")


def test_unknown_state_names_event_and_position(source):
    events = [event(0), event(1), event(2), event(3, states=["foo"])]

    error = refused(source, {"events": events})

    assert error.message == "events[3].states[0]: unknown state 'foo'"
    assert error.field == "events[3].states[0]"


def test_missing_identity_names_event(source):
    events = [event(0), event(1), {**event(2), "customer": {}}]

    error = refused(source, {"events": events})

    assert error.message == "events[2].customer: email or phone required"


def test_single_event_errors_name_the_field_without_an_index(source):
    assert refused(source, {**event(), "customer": {"email": ""}}).message == "customer: email or phone required"
    assert refused(source, {**event(), "states": ["foo"]}).message == "states[0]: unknown state 'foo'"


@pytest.mark.parametrize("change, field, message", [
    ({"id": None}, "events[1].id", "missing"),
    ({"id": ""}, "events[1].id", "must be 1 to 255 characters"),
    ({"id": "x" * 256}, "events[1].id", "must be 1 to 255 characters"),
    ({"id": 17}, "events[1].id", "not a string"),
    ({"type": "consent.unsubscribe"}, "events[1].type", "unknown type 'consent.unsubscribe'"),
    ({"customer": None}, "events[1].customer", "missing"),
    ({"customer": "guest@example.com"}, "events[1].customer", "must be an object"),
    ({"customer": {"email": 5}}, "events[1].customer.email", "not a string"),
    ({"customer": {"email": "not-an-email"}}, "events[1].customer.email", "not a valid email address"),
    ({"customer": {"email": "a@example.com", "phone": "call me"}}, "events[1].customer.phone", "letters are not allowed"),
    ({"customer": {"phone": "+1555"}}, "events[1].customer.phone", "not a full phone number"),
    ({"states": []}, "events[1].states", "must name at least one state"),
    ({"states": "mail_ban"}, "events[1].states", "must be a list"),
    ({"states": [MAIL_BAN, None]}, "events[1].states[1]", ""),
    ({"occurred_at": "2026-11-22T10:15:00"}, "events[1].occurred_at", "must include a time zone"),
    ({"occurred_at": "22/11/2026"}, "events[1].occurred_at", "not an ISO 8601 date-time"),
    ({"reason": "x" * 1001}, "events[1].reason", "must be 0 to 1000 characters"),
])
def test_bad_field_is_400_naming_event_and_field(source, change, field, message):
    payload = {"events": [event(0), {**event(1), **change}, event(2)]}

    error = refused(source, payload)

    assert error.field == field
    assert error.message.startswith(f"{field}: {message}")


@pytest.mark.parametrize("missing", ["id", "type", "customer", "states"])
def test_required_fields(source, missing):
    payload = event()
    del payload[missing]

    assert refused(source, payload).message == f"{missing}: missing"


def test_event_that_is_not_an_object(source):
    assert refused(source, {"events": [event(0), "evt_1"]}).message == "events[1]: must be an object"


def test_same_event_id_twice_in_one_batch_is_refused(source):
    error = refused(source, {"events": [event(1), event(2), event(1, type="consent.opt_in")]})

    assert error.message == "events[2].id: repeats events[0].id"


def test_webhook_id_longer_than_the_ledger_keeps(source):
    body = json.dumps(event()).encode()

    with pytest.raises(BadRequest, match="webhook-id"):
        source.handle(http(body, sign(body, msg_id="m" * 256)))


# --- configuration and the receipt ------------------------------------------------------------

@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!!", "not base64 at all"])
def test_bad_secret_stops_start_up_naming_it_not_showing_it(tmp_path, secret):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, secret=secret)

    assert "sources.booking-engine.secret: secret #1 must be whsec_ followed by base64" in str(caught.value)
    assert "!!!!" not in str(caught.value) and "at all" not in str(caught.value)


def test_secret_without_prefix_is_accepted_as_the_library_does(tmp_path):
    source = rotating(tmp_path, [SECRET.removeprefix("whsec_")])

    assert source.handle(signed(event())).signals


def test_hmac_secrets_let_the_partner_verify_our_receipt_with_its_library(source):
    answer = b'{"receipt_id":"rcpt_01","status":"accepted"}'

    headers = ReceiptSigner([RECEIPT_KEY]).headers(answer, receipt_id="rcpt_01", hmac_secrets=source.hmac_secrets())

    assert Webhook(SECRET).verify(answer, headers) == json.loads(answer)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        Webhook(SECRET).verify(answer + b" ", headers)


def test_every_rotating_secret_signs_the_receipt(tmp_path):
    source = rotating(tmp_path, [NEXT_SECRET, SECRET])
    answer = b'{"status":"ignored"}'

    headers = ReceiptSigner([RECEIPT_KEY]).headers(answer, hmac_secrets=source.hmac_secrets())

    assert len(source.hmac_secrets()) == 2
    for secret in (NEXT_SECRET, SECRET):
        Webhook(secret).verify(answer, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        Webhook(RETIRED_SECRET).verify(answer, headers)


# --- through the web layer --------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path, database_url):
    """The conftest's app and client, with the booking-engine source configured."""
    empty_tables(database_url)
    return load(tmp_path, database_url=database_url)


def post(client, payload, msg_id: str):
    body = json.dumps(payload).encode()
    return client.post(PATH, data=body, content_type="application/json", headers=sign(body, msg_id=msg_id))


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def test_batch_of_500_is_recorded_in_one_request(client, engine):
    events = [event(n) for n in range(500)]

    response = post(client, {"events": events}, "msg_500")

    assert response.status_code == 200
    Webhook(SECRET).verify(response.get_data(), dict(response.headers))
    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["source"] == "booking-engine"
    assert answer["event_ids"] == [e["id"] for e in events]
    assert len(answer["changes"]) == 500
    assert answer["changes"][0] == {"email": "guest0@example.com", "states": [MARKETING_DECLINE]}
    assert (count(engine, SignalRow), count(engine, Consent)) == (500, 500)


def test_replayed_webhook_id_is_a_duplicate_with_the_first_event_ids(client, engine):
    payload = {"events": [event(1), event(2)]}
    first = post(client, payload, "msg_replay").get_json()

    response = post(client, payload, "msg_replay")  # a retry: same id, new timestamp and signature

    Webhook(SECRET).verify(response.get_data(), dict(response.headers))
    again = response.get_json()
    assert again["status"] == "duplicate"
    assert again["event_ids"] == first["event_ids"] == ["evt_00001", "evt_00002"]
    assert again["original_receipt_id"] == first["receipt_id"]
    assert again["changes"] == []
    assert (count(engine, RequestRecord), count(engine, SignalRow)) == (1, 2)


def test_new_webhook_id_repeating_an_event_id_skips_that_event(client, engine):
    post(client, {"events": [event(1), event(2)]}, "msg_first")

    answer = post(client, {"events": [event(2), event(3)]}, "msg_second").get_json()

    assert answer["status"] == "accepted"
    assert answer["event_ids"] == ["evt_00002", "evt_00003"]  # every event now recorded, seen or new
    assert answer["duplicate_event_ids"] == ["evt_00002"]
    assert answer["changes"] == [{"email": "guest3@example.com", "states": [MARKETING_DECLINE]}]
    assert count(engine, SignalRow) == 3

    retry = post(client, {"events": [event(2), event(3)]}, "msg_second").get_json()

    assert (retry["status"], retry["original_receipt_id"]) == ("duplicate", answer["receipt_id"])
    assert retry["event_ids"] == answer["event_ids"]


def test_event_resent_under_a_new_webhook_id_is_a_duplicate(client, engine):
    first = post(client, event(1), "msg_first").get_json()

    response = post(client, event(1), "msg_resent")  # the partner re-sends the event as a new message

    Webhook(SECRET).verify(response.get_data(), dict(response.headers))
    answer = response.get_json()
    assert answer["status"] == "duplicate"
    assert answer["event_ids"] == answer["duplicate_event_ids"] == ["evt_00001"]
    assert answer["original_receipt_id"] == first["receipt_id"]
    assert answer["changes"] == []
    assert count(engine, SignalRow) == 1


def test_batch_of_seen_events_under_a_new_webhook_id_is_a_duplicate(client, engine):
    first = post(client, {"events": [event(1), event(2), event(3)]}, "msg_first").get_json()

    answer = post(client, {"events": [event(3), event(1)]}, "msg_resent").get_json()

    assert answer["status"] == "duplicate"
    assert answer["event_ids"] == answer["duplicate_event_ids"] == ["evt_00003", "evt_00001"]
    assert answer["original_receipt_id"] == first["receipt_id"]
    assert count(engine, SignalRow) == 3


def test_opt_in_lifts_what_an_opt_out_set(client, engine):
    post(client, event(1, states=[SMS_BAN], phone="+15551234567"), "msg_out")

    answer = post(client, event(2, type="consent.opt_in", states=[SMS_BAN], phone="+15551234567"), "msg_in").get_json()

    assert answer["changes"] == [{"phone": "+15551234567", "removed": [SMS_BAN]}]
    assert count(engine, Consent) == 0


def test_refusals_store_nothing_and_carry_no_receipt(client, engine):
    body = json.dumps(event()).encode()
    forged = client.post(PATH, data=body, content_type="application/json",
                         headers=sign(body, secret=NEXT_SECRET))
    bad = post(client, {"events": [event(0), event(1, states=["foo"])]}, "msg_bad")
    wrong_type = client.post(PATH, data=body, content_type="text/plain", headers=sign(body))

    assert forged.status_code == 401
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "events[1].states[0]: unknown state 'foo'", "field": "events[1].states[0]"}
    assert wrong_type.status_code == 415
    for response in (forged, bad, wrong_type):
        assert "webhook-signature" not in response.headers
    assert count(engine, RequestRecord) == 0
