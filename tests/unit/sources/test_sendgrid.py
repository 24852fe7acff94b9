"""SendGrid source: batches signed in the test with `cryptography` (ECDSA P-256), SendGrid's own vector, mapping."""

import base64
import hashlib
import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, ConfigError, UnsupportedMediaType
from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow
from receiver.signals import OPT_OUT, OTHER
from receiver.sources.base import HttpRequest
from receiver.sources.sendgrid import SendGridSource
from receiver.states import MAIL_BAN, MARKETING_DECLINE
from tests.helpers import config_toml, empty_tables, make_settings, pin_clock

PATH = "/hooks/sendgrid"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# inbound-formats.md, Appendix A: SendGrid's real public vector, byte-exact (the body ends with \r\n).
APPENDIX_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+"
                "2fNNRaINXvVpiglSI8eNEc6wEA3F+g==")
APPENDIX_SIGNATURE = ("MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=")
APPENDIX_TIMESTAMP = "1600112502"
APPENDIX_BODY = (
    b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n'
)
# Appendix A's opt-out shape (a group unsubscribe), signed in the tests below.
GROUP_UNSUBSCRIBE = {
    "email": "guest@example.com", "timestamp": 1795515300, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
    "event": "group_unsubscribe", "category": "newsletter", "sg_event_id": "ahSCB7xYcXFb-hEaawsPRw==",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "useragent": "Mozilla/5.0",
    "ip": "255.255.255.255", "url": "https://example.com/", "asm_group_id": 10,
}

PRIVATE = ec.generate_private_key(ec.SECP256R1())
NEXT_PRIVATE = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def public_key_b64(private) -> str:
    """The Verification Key as SendGrid's console shows it: base64 DER SubjectPublicKeyInfo."""
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def source_toml(public_key_toml: str = '"env:SENDGRID_WEBHOOK_PUBLIC_KEY"', extra: str = "") -> str:
    return f"""
[sources.sendgrid]
kind = "sendgrid"
tenant = "grand"
public_key = {public_key_toml}
{extra}
"""


def load(tmp_path, database_url: str | None = None, public_key: str | None = None, **toml):
    """Settings with the sendgrid source; ``public_key`` is the SENDGRID_WEBHOOK_PUBLIC_KEY variable."""
    return make_settings(tmp_path, database_url or f"sqlite:///{tmp_path / 'unused.db'}",
                         toml=config_toml(extra=source_toml(**toml)),
                         SENDGRID_WEBHOOK_PUBLIC_KEY=public_key or public_key_b64(PRIVATE))


def make_source(tmp_path, **kwargs) -> SendGridSource:
    settings = load(tmp_path, **kwargs)
    return SendGridSource(settings.sources["sendgrid"], settings)


@pytest.fixture
def source(tmp_path) -> SendGridSource:
    return make_source(tmp_path)


def sign(body: bytes, *, key=PRIVATE, timestamp: int | None = None) -> dict:
    """SendGrid's scheme: ECDSA P-256 / SHA-256 over the timestamp header + the raw body, DER, base64."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    der = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE: base64.b64encode(der).decode(), TIMESTAMP: stamp}


def http(body: bytes, headers: dict, *, mimetype: str = "application/json") -> HttpRequest:
    return HttpRequest(method="POST", path=PATH, query_string="", headers=Headers(headers), body=body,
                       mimetype=mimetype, args=MultiDict())


def signed(payload, **kwargs) -> HttpRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http(body, sign(body, **kwargs))


def event(n: int = 1, name: str = "unsubscribe", email: str = "guest@example.com", **extra) -> dict:
    return {"email": email, "timestamp": 1795515300, "event": name, "sg_event_id": f"sg-{n:04d}",
            "sg_message_id": f"msg-{n}", **extra}


def refused(source, payload) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        source.handle(signed(payload))
    assert caught.value.status == 400
    return caught.value


# --- SendGrid's own vector ---------------------------------------------------------------------

def test_appendix_vector_verifies_when_the_clock_is_near_its_timestamp(tmp_path, monkeypatch):
    pin_clock(monkeypatch, int(APPENDIX_TIMESTAMP) + 60)
    source = make_source(tmp_path, public_key=APPENDIX_KEY)

    inbound = source.handle(http(APPENDIX_BODY, {SIGNATURE: APPENDIX_SIGNATURE, TIMESTAMP: APPENDIX_TIMESTAMP}))

    assert inbound.request_key == hashlib.sha256(APPENDIX_BODY).hexdigest()
    [signal] = inbound.signals
    assert signal.event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert (signal.kind, signal.keyword, signal.add) == (OTHER, "dropped", frozenset())
    assert signal.email == "hello@world.com"
    assert signal.occurred_at == datetime.fromtimestamp(1600112492, UTC)
    assert signal.detail == {"event": "dropped", "sg_message_id":
                             "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"}


@pytest.mark.parametrize("body", [APPENDIX_BODY.rstrip(b"\r\n"), APPENDIX_BODY.replace(b"dropped", b"spamreport")])
def test_appendix_vector_covers_every_body_byte(tmp_path, monkeypatch, body):
    pin_clock(monkeypatch, int(APPENDIX_TIMESTAMP))
    source = make_source(tmp_path, public_key=APPENDIX_KEY)

    with pytest.raises(BadSignature, match="does not match"):
        source.handle(http(body, {SIGNATURE: APPENDIX_SIGNATURE, TIMESTAMP: APPENDIX_TIMESTAMP}))


def test_appendix_vector_is_stale_today(tmp_path):
    source = make_source(tmp_path, public_key=APPENDIX_KEY)

    with pytest.raises(BadSignature, match="stale"):
        source.handle(http(APPENDIX_BODY, {SIGNATURE: APPENDIX_SIGNATURE, TIMESTAMP: APPENDIX_TIMESTAMP}))


# --- signatures --------------------------------------------------------------------------------

def test_group_unsubscribe_signed_now_is_an_opt_out(source):
    inbound = source.handle(signed([GROUP_UNSUBSCRIBE]))

    [signal] = inbound.signals
    assert signal.event_id == "ahSCB7xYcXFb-hEaawsPRw=="
    assert (signal.kind, signal.keyword) == (OPT_OUT, "group_unsubscribe")
    assert (signal.email, signal.phone) == ("guest@example.com", None)
    assert signal.add == {MARKETING_DECLINE}
    assert signal.occurred_at == datetime.fromtimestamp(1795515300, UTC)
    assert signal.detail == {"event": "group_unsubscribe", "asm_group_id": 10, "category": "newsletter",
                             "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}


def test_request_key_is_the_body_hash_so_a_retry_is_the_same_request(source):
    body = json.dumps([event(1), event(2, "open")]).encode()

    first = source.handle(http(body, sign(body, timestamp=int(time.time()) - 60)))
    retry = source.handle(http(body, sign(body)))

    assert first.request_key == retry.request_key == hashlib.sha256(body).hexdigest()


def test_rotation_accepts_either_public_key(tmp_path):
    keys = json.dumps([public_key_b64(NEXT_PRIVATE), public_key_b64(PRIVATE)])  # a TOML array of strings
    source = make_source(tmp_path, public_key_toml=keys)

    assert len(source.options["public_key"]) == 2
    for key in (NEXT_PRIVATE, PRIVATE):
        assert source.handle(signed([event()], key=key)).signals[0].kind == OPT_OUT
    with pytest.raises(BadSignature, match="does not match"):
        source.handle(signed([event()], key=STRANGER))


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
def test_timestamps_outside_five_minutes_are_stale(source, offset):
    with pytest.raises(BadSignature, match="stale"):
        source.handle(signed([event()], timestamp=int(time.time()) + offset))


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamps_within_five_minutes_are_accepted(source, offset):
    assert source.handle(signed([event()], timestamp=int(time.time()) + offset)).signals


def test_signed_by_another_key(source):
    with pytest.raises(BadSignature, match="does not match"):
        source.handle(signed([event()], key=STRANGER))


@pytest.mark.parametrize("signature, message", [
    ("", "missing"),
    ("not base64!", "not base64"),
    ("AAAA", "does not match"),  # base64, but not a DER signature
    (APPENDIX_SIGNATURE, "does not match"),  # a real signature over something else
])
def test_forged_or_malformed_signatures(source, signature, message):
    body = json.dumps([event()]).encode()
    headers = {**sign(body), SIGNATURE: signature}

    with pytest.raises(BadSignature, match=message) as caught:
        source.handle(http(body, headers))

    assert caught.value.status == 401


@pytest.mark.parametrize("tamper", [
    lambda body: body.replace(b"unsubscribe", b"delivered"),
    lambda body: body.replace(b"guest@", b"other@"),
    lambda body: body + b"\r\n",
    lambda body: json.dumps(json.loads(body), indent=1).encode(),
])
def test_body_tampered_after_signing(source, tamper):
    body = json.dumps([event()]).encode()
    headers = sign(body)

    with pytest.raises(BadSignature, match="does not match"):
        source.handle(http(tamper(body), headers))


def test_timestamp_header_is_signed_too(source):
    body = json.dumps([event()]).encode()
    headers = sign(body)
    headers[TIMESTAMP] = str(int(headers[TIMESTAMP]) - 1)

    with pytest.raises(BadSignature, match="does not match"):
        source.handle(http(body, headers))


@pytest.mark.parametrize("missing", [SIGNATURE, TIMESTAMP])
def test_missing_header_is_401_naming_it(source, missing):
    body = json.dumps([event()]).encode()
    headers = sign(body)
    del headers[missing]

    with pytest.raises(BadSignature, match=f"{missing}: missing"):
        source.handle(http(body, headers))


@pytest.mark.parametrize("stamp", ["1600112502.5", "-1", " 1600112502", "soon", "9" * 13])
def test_timestamp_must_be_unix_seconds(source, stamp):
    body = json.dumps([event()]).encode()

    with pytest.raises(BadSignature, match="not Unix seconds"):
        source.handle(http(body, {**sign(body), TIMESTAMP: stamp}))


@pytest.mark.parametrize("mimetype", ["application/x-www-form-urlencoded", "text/plain"])
def test_wrong_content_type_is_415(source, mimetype):
    body = json.dumps([event()]).encode()

    with pytest.raises(UnsupportedMediaType) as caught:
        source.handle(http(body, sign(body), mimetype=mimetype))

    assert caught.value.status == 415


def test_sendgrid_shares_no_secret_for_the_receipt(source):
    assert source.hmac_secrets() == []


# --- the mapping table -------------------------------------------------------------------------

@pytest.mark.parametrize("name, complaint, state", [
    ("unsubscribe", None, MARKETING_DECLINE),
    ("group_unsubscribe", None, MARKETING_DECLINE),
    ("spamreport", None, MARKETING_DECLINE),
    ("spamreport", "mail_ban", MAIL_BAN),
    ("unsubscribe", "mail_ban", MARKETING_DECLINE),
])
def test_opt_out_events(tmp_path, name, complaint, state):
    source = make_source(tmp_path, extra=f'complaint = "{complaint}"' if complaint else "")

    [signal] = source.handle(signed([event(name=name)])).signals

    assert (signal.kind, signal.keyword, signal.add, signal.remove) == (OPT_OUT, name, {state}, frozenset())


@pytest.mark.parametrize("name", ["processed", "dropped", "delivered", "deferred", "bounce", "open", "click",
                                  "group_resubscribe", "account_status_change", "something_new"])
def test_every_other_event_is_only_recorded(source, name):
    [signal] = source.handle(signed([event(name=name, reason="Unsubscribed Address")])).signals

    assert (signal.kind, signal.keyword, signal.add, signal.remove) == (OTHER, name, frozenset(), frozenset())
    assert signal.email == "guest@example.com"


def test_bad_complaint_option_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="sources.sendgrid.complaint"):
        load(tmp_path, extra='complaint = "sms_ban"')


def test_mixed_batch_keeps_its_order(source):
    events = [event(1, "delivered"), event(2, "unsubscribe", "A@Example.COM"), event(3, "open"),
              event(4, "spamreport")]

    signals = source.handle(signed(events)).signals

    assert [(s.event_id, s.kind, s.email) for s in signals] == [
        ("sg-0001", OTHER, "guest@example.com"), ("sg-0002", OPT_OUT, "a@example.com"),
        ("sg-0003", OTHER, "guest@example.com"), ("sg-0004", OPT_OUT, "guest@example.com")]


@pytest.mark.parametrize("category", ["newsletter", ["newsletter", "november"]])
def test_category_string_or_list_is_kept(source, category):
    [signal] = source.handle(signed([event(category=category, asm_group_id=42)])).signals

    assert signal.detail["category"] == category
    assert signal.detail["asm_group_id"] == 42


@pytest.mark.parametrize("timestamp", [None, "yesterday", True, 1e20])
def test_strange_event_timestamp_is_dropped_not_refused(source, timestamp):
    [signal] = source.handle(signed([event(timestamp=timestamp)])).signals

    assert signal.occurred_at is None


@pytest.mark.parametrize("email", [None, "", "not-an-email", 42])
def test_event_that_changes_nothing_is_never_refused_for_its_address(source, email):
    payload = [event(1, "dropped", email=email, reason="Invalid"), event(2)]

    signals = source.handle(signed(payload)).signals

    assert signals[0].email is None
    assert signals[1].kind == OPT_OUT


# --- refusals ----------------------------------------------------------------------------------

def test_batch_of_1000_is_accepted(source):
    assert len(source.handle(signed([event(n, "delivered") for n in range(1000)])).signals) == 1000


def test_batch_over_1000_events_is_accepted(source):
    """Contract: any number of events (the 1000-event limit sank SendGrid's 768 KB batches)."""
    assert len(source.handle(signed([event(n) for n in range(1001)])).signals) == 1001


def test_empty_batch_is_refused(source):
    error = refused(source, [])

    assert (error.field, error.message) == ("body", "body: must hold at least one event")


@pytest.mark.parametrize("payload", [event(), "events", None, 3])
def test_body_must_be_a_json_array(source, payload):
    assert refused(source, payload).message == "body: must be a JSON array of events"


@pytest.mark.parametrize("payload", [b"[", b"", b"[{'email': 1}]", b"\xff\xfe"])
def test_malformed_json_is_400(source, payload):
    error = refused(source, payload)

    assert (error.field, error.message) == ("body", "body: not valid JSON")


@pytest.mark.parametrize("change", [
    {"email": None}, {"email": ["guest@example.com"]}, {"email": "guest@@example"},
])
def test_opt_out_without_a_valid_address_is_recorded_as_unusable_not_400(source, change):
    """One odd event never sinks the batch: the opt-outs posted with it still count."""
    payload = [event(0), event(1, "open"), {**event(2, "unsubscribe"), **change}]

    signals = source.handle(signed(payload)).signals

    assert [s.kind for s in signals] == [OPT_OUT, OTHER, OTHER]
    assert (signals[2].event_id, signals[2].email, signals[2].add) == ("sg-0002", None, frozenset())
    assert signals[2].detail["unusable"].startswith("[2].email: ")
    assert signals[2].keyword == "unsubscribe"


@pytest.mark.parametrize("event_id", [None, "", 12345, "x" * 256, "sg\x00id", ["sg-0002"]])
def test_unusable_sg_event_id_is_replaced_by_the_content_hash(source, event_id):
    odd = {**event(2, "unsubscribe"), "sg_event_id": event_id}

    signals = source.handle(signed([event(0), odd])).signals

    canonical = json.dumps(odd, sort_keys=True, separators=(",", ":"))
    assert signals[1].event_id == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert (signals[1].kind, signals[1].add) == (OPT_OUT, {MARKETING_DECLINE})


def test_missing_sg_event_id_is_not_refused_on_an_ignored_event(source):
    payload = [event(0), event(1, "delivered")]
    del payload[1]["sg_event_id"]

    signals = source.handle(signed(payload)).signals

    assert signals[1].event_id.startswith("sha256:") and len(signals[1].event_id) == 7 + 64
    assert signals[1].kind == OTHER


def test_content_hash_ignores_key_order_and_spacing(source):
    """The same event re-sent by SendGrid, serialised differently, gets the same id."""
    one = {"email": "guest@example.com", "event": "unsubscribe", "timestamp": 1795515300}
    other = dict(reversed(one.items()))

    first = source.handle(signed(json.dumps([one]).encode())).signals[0].event_id
    again = source.handle(signed(json.dumps([other], indent=2).encode())).signals[0].event_id

    assert first == again


@pytest.mark.parametrize("odd, reason", [
    ("unsubscribe", "[1]: not an object"),
    (None, "[1]: not an object"),
    ({"email": "guest@example.com", "sg_event_id": "sg-0001"}, "[1].event: missing or not a short string"),
    ({**event(1), "event": 42}, "[1].event: missing or not a short string"),
    ({**event(1), "event": "x" * 256}, "[1].event: missing or not a short string"),
])
def test_malformed_event_is_recorded_as_ignored(source, odd, reason):
    signals = source.handle(signed([event(0), odd])).signals

    assert signals[0].kind == OPT_OUT
    assert (signals[1].kind, signals[1].add, signals[1].email) == (OTHER, frozenset(), None)
    assert signals[1].detail == {"unusable": reason}


# --- configuration -----------------------------------------------------------------------------

def test_pem_public_key_is_accepted_too(tmp_path):
    pem = PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    source = make_source(tmp_path, public_key=pem)

    assert source.handle(signed([event()])).signals


def test_base64_key_wrapped_over_lines_is_accepted(tmp_path):
    text = public_key_b64(PRIVATE)

    assert make_source(tmp_path, public_key=text[:40] + "\n" + text[40:] + "\n").options["public_key"]


def _der_b64(public) -> str:
    return base64.b64encode(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


@pytest.mark.parametrize("public_key, message", [
    ("not a key", "is not a base64 DER public key"),
    (base64.b64encode(b"garbage bytes").decode(), "is not a base64 DER public key"),
    (_der_b64(ec.generate_private_key(ec.SECP384R1()).public_key()), "is not an EC P-256 public key"),
    (_der_b64(ed25519.Ed25519PrivateKey.generate().public_key()), "is not an EC P-256 public key"),
    (_der_b64(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
     "is not an EC P-256 public key"),
])
def test_bad_public_key_stops_start_up_naming_it(tmp_path, public_key, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, public_key=public_key)

    assert f"sources.sendgrid.public_key: key #1 {message}" in str(caught.value)


def test_public_key_is_required(tmp_path):
    with pytest.raises(ConfigError, match="sources.sendgrid.public_key"):
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}",
                      toml=config_toml(extra='[sources.sendgrid]\nkind = "sendgrid"\ntenant = "grand"\n'))


# --- through the web layer ---------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path, database_url):
    """The conftest's app and client, with the sendgrid source configured."""
    empty_tables(database_url)
    return load(tmp_path, database_url=database_url)


def post(client, payload, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(PATH, data=body, content_type="application/json", headers=sign(body, **kwargs))


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def test_batch_with_an_opt_out_is_accepted(client, engine):
    response = post(client, [event(1, "delivered"), GROUP_UNSUBSCRIBE, event(3, "open")])

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["event_ids"] == ["sg-0001", "ahSCB7xYcXFb-hEaawsPRw==", "sg-0003"]
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]
    assert [e.split(",")[0] for e in response.headers["webhook-signature"].split(" ")] == ["v1a"]
    assert (count(engine, SignalRow), count(engine, Consent)) == (3, 1)


def test_batch_without_an_opt_out_is_ignored(client):
    answer = post(client, [event(1, "delivered"), event(2, "bounce")]).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])


def test_retried_batch_is_a_duplicate_and_overlapping_events_are_skipped(client, engine):
    body = json.dumps([event(1), event(2, "open")]).encode()
    first = post(client, body, timestamp=int(time.time()) - 120).get_json()

    retry = post(client, body).get_json()  # SendGrid's retry: the same bytes, a new signature
    overlap = post(client, [event(2, "open"), event(3, "spamreport")]).get_json()

    assert retry["status"] == "duplicate"
    assert retry["event_ids"] == first["event_ids"] == ["sg-0001", "sg-0002"]
    assert retry["original_receipt_id"] == first["receipt_id"]
    assert (overlap["event_ids"], overlap["duplicate_event_ids"]) == (["sg-0002", "sg-0003"], ["sg-0002"])
    assert (count(engine, RequestRecord), count(engine, SignalRow)) == (2, 3)


def test_stale_or_forged_batches_store_nothing(client, engine):
    stale = post(client, [event()], timestamp=int(time.time()) - 600)
    forged = post(client, [event()], key=STRANGER)

    assert (stale.status_code, forged.status_code) == (401, 401)
    assert "stale" in stale.get_json()["error"]
    assert count(engine, RequestRecord) == 0


# --- real payloads -----------------------------------------------------------------------------

# django-anymail, tests/test_sendgrid_webhooks.py (events recorded from SendGrid, sanitised).
ANYMAIL_EVENTS = [
    {"email": "recipient@example.com", "timestamp": 1461095246, "anymail_id": "3c2f4df8-c6dd-4cd2-9b91-6582b81a0349",
     "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>", "sg_event_id": "ZyjAM5rnQmuI1KFInHQ3Nw",
     "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0", "event": "processed",
     "category": ["tag1", "tag2"], "custom1": "value1", "custom2": "value2"},
    {"ip": "167.89.17.173", "response": "250 2.0.0 OK 1461095248 m143si2210036ioe.159 - gsmtp ",
     "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>", "sg_event_id": "nOSv8m0eTQ-vxvwNwt3fZQ",
     "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0", "tls": 1, "event": "delivered",
     "email": "recipient@example.com", "timestamp": 1461095250, "anymail_id": "4ab185c2-0171-492f-9ce0-27de258efc99"},
    {"email": "invalid@invalid", "anymail_id": "c74002d9-7ccb-4f67-8b8c-766cec03c9a6", "timestamp": 1461095250,
     "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>", "sg_event_id": "3NPOePGOTkeM_U3fgWApfg",
     "sg_message_id": "filter0093p1las1.9128.5717FB8127.0", "reason": "Invalid", "event": "dropped"},
    {"email": "unsubscribe@example.com", "anymail_id": "a36ec0f9-aabe-45c7-9a84-3e17afb5cb65", "timestamp": 1461095250,
     "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>", "sg_event_id": "oxy9OLwMTAy5EsuZn1qhIg",
     "sg_message_id": "filter0199p1las1.4745.5717FB6F5.0", "reason": "Unsubscribed Address", "event": "dropped"},
    {"ip": "167.89.17.173", "status": "5.1.1", "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
     "sg_event_id": "lC0Rc-FuQmKbnxCWxX1jRQ",
     "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
     "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0", "tls": 1, "event": "bounce",
     "email": "noreply@example.com", "timestamp": 1461095250, "anymail_id": "de212213-bb66-4302-8f3f-20acdb7a104e",
     "type": "bounce"},
    {"email": "recipient@example.com", "timestamp": 1461095250, "ip": "66.102.6.229",
     "sg_event_id": "MjIwNDg5NTgtZGE3OC00NDI1LWFiMmMtMDUyZTU2ZmFkOTFm",
     "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0",
     "anymail_id": "44920b35-3e31-478b-bb67-b4f5e0c85ebc",
     "useragent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0", "event": "open"},
    {"ip": "24.130.34.103", "sg_event_id": "OTdlOGUzYjctYjc5Zi00OWE4LWE4YWUtNjIxNjk2ZTJlNGVi",
     "sg_message_id": "_fjPjuJfRW-IPs5SuvYotg.filter0590p1mdw1.2098.57168CFC4B.0",
     "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_4) AppleWebKit/537.36",
     "anymail_id": "75de5af9-a090-4325-87f9-8c599ad66f60", "event": "click",
     "url_offset": {"index": 0, "type": "html"}, "email": "recipient@example.com", "timestamp": 1461095250,
     "url": "http://www.example.com"},
]
# SendGrid's Event Webhook reference (sendgrid/docs, for-developers/tracking-events/event.md), engagement events.
DOCS_OPT_OUT_EVENTS = [
    {"email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
     "event": "spamreport", "category": "cat facts", "sg_event_id": "37nvH5QBz858KGVYCM4uOA==",
     "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
    {"email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
     "event": "unsubscribe", "category": "cat facts", "sg_event_id": "zz_BjPgU_5pS-J8vlfB1sg==",
     "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
    {"email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
     "event": "group_resubscribe", "category": "cat facts", "sg_event_id": "w_u0vJhLT-OFfprar5N93g==",
     "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
     "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
     "ip": "255.255.255.255", "url": "http://www.sendgrid.com/", "asm_group_id": 10},
]
# SendGrid's troubleshooting page (sendgrid/docs, for-developers/tracking-events/troubleshooting.md): the
# cURL sample, byte for byte. None of its events carries an sg_event_id.
TROUBLESHOOTING_BODY = (
    b'[{"email":"john.doe@sendgrid.com","timestamp":1337197600,"smtp-id":"<4FB4041F.6080505@sendgrid.com>",'
    b'"event":"processed"},{"email":"john.doe@sendgrid.com","timestamp":1337966815,"category":"newuser",'
    b'"event":"click","url":"https://sendgrid.com"},{"email":"john.doe@sendgrid.com","timestamp":1337969592,'
    b'"smtp-id":"<20120525181309.C1A9B40405B3@Example-Mac.local>","event":"processed"}]'
)


def test_anymail_recorded_events_are_only_recorded(source):
    signals = source.handle(signed(ANYMAIL_EVENTS)).signals

    assert [s.event_id for s in signals] == [e["sg_event_id"] for e in ANYMAIL_EVENTS]
    assert {s.kind for s in signals} == {OTHER}
    assert signals[2].email is None  # "invalid@invalid" is no address, and never refuses the batch
    assert signals[0].detail["category"] == ["tag1", "tag2"]


def test_docs_engagement_events_map_onto_states(source):
    signals = source.handle(signed(DOCS_OPT_OUT_EVENTS)).signals

    assert [(s.keyword, s.kind, s.add) for s in signals] == [
        ("spamreport", OPT_OUT, {MARKETING_DECLINE}), ("unsubscribe", OPT_OUT, {MARKETING_DECLINE}),
        ("group_resubscribe", OTHER, frozenset())]


def test_troubleshooting_sample_without_sg_event_id_is_recorded(source):
    signals = source.handle(signed(TROUBLESHOOTING_BODY)).signals

    ids = [s.event_id for s in signals]
    assert all(i.startswith("sha256:") for i in ids) and len(set(ids)) == 3
    assert [s.keyword for s in signals] == ["processed", "click", "processed"]


def realistic_batch(count: int, start: int = 0) -> list[dict]:
    """Events shaped like SendGrid's documented ones with the fields a marketing send carries
    (categories, custom args, campaign, user agent): about 1 KB each, as SendGrid's batches are."""
    names = ["processed", "delivered", "open", "click", "unsubscribe", "group_unsubscribe", "bounce", "spamreport"]
    events = []
    for n in range(start, start + count):
        name = names[n % len(names)]
        events.append({
            "email": f"guest.{n:05d}@example.com", "timestamp": 1795515300 + n,
            "smtp-id": f"<14c5d75ce93.dfd.{n:06x}@ismtpd0039p1iad1.sendgrid.net>", "event": name,
            "category": ["newsletter", "november", "grand-hotel"],
            "sg_event_id": base64.urlsafe_b64encode(hashlib.md5(str(n).encode()).digest()).decode().rstrip("="),
            "sg_message_id": f"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-{n}.0",
            "useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
            "ip": "203.0.113.7", "url": "https://grand.example.com/offers/winter-2026?utm_source=newsletter",
            "asm_group_id": 10, "marketing_campaign_id": 12345, "marketing_campaign_name": "November newsletter",
            "marketing_campaign_version": "B", "marketing_campaign_split_id": 13,
            "tenant": "grand", "booking_ref": f"BK-{n:08d}", "crm_contact_id": f"c0ffee-{n:012d}",
            "response": "250 2.0.0 OK  1795515300 d75a77b69052e-43.2 - gsmtp", "tls": 1, "pool": {"name": "mkt", "id": 210},
            "sg_template_id": "d-2c214ac919e84170b21855cc129b4a5f", "sg_template_name": "Newsletter",
        })
    return events


def test_two_mebibyte_batch_of_realistic_events_parses_and_records(source, settings, ledger, engine):
    """Item: SendGrid's batches. 2000 realistic events are about 2 MiB (the contract's cap for
    sendgrid); the HTTP-level size limit is the web layer's, so this goes through source and ledger."""
    body = json.dumps(realistic_batch(2000), separators=(",", ":")).encode()  # compact, as SendGrid posts
    assert 1.8 * 2**20 < len(body) <= 2 * 2**20

    inbound = source.handle(signed(body))
    outcome = ledger.record(source.config, inbound, body)

    assert len(inbound.signals) == 2000
    assert outcome.status == "accepted" and len(outcome.event_ids) == 2000
    assert count(engine, SignalRow) == 2000
    assert count(engine, Consent) == 3 * 250  # unsubscribe, group_unsubscribe, spamreport: 250 guests each


# --- re-sent events ----------------------------------------------------------------------------

def deliveries(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Delivery)).scalar()


def test_unsubscribe_re_sent_with_a_new_sg_event_id_creates_no_second_delivery(client, engine):
    """SendGrid has re-sent events under a changed sg_event_id: the ledger adds a state once, so the
    re-sent unsubscribe is one more line in the audit trail and nothing more."""
    first = post(client, [DOCS_OPT_OUT_EVENTS[1]]).get_json()
    resent = post(client, [{**DOCS_OPT_OUT_EVENTS[1], "sg_event_id": "bmV3LWlkLW9uLXJldHJ5"}]).get_json()

    assert first["changes"] == [{"email": "example@test.com", "states": [MARKETING_DECLINE]}]
    assert (resent["status"], resent["changes"]) == ("accepted", [])
    assert (count(engine, SignalRow), count(engine, Consent), deliveries(engine)) == (2, 1, 1)


def test_event_without_sg_event_id_re_sent_in_another_batch_is_a_duplicate(client, engine):
    unsubscribe = {k: v for k, v in DOCS_OPT_OUT_EVENTS[1].items() if k != "sg_event_id"}
    first = post(client, [unsubscribe]).get_json()

    again = post(client, [ANYMAIL_EVENTS[1], unsubscribe]).get_json()

    assert first["status"] == "accepted" and deliveries(engine) == 1
    assert again["duplicate_event_ids"] == first["event_ids"]
    assert (count(engine, SignalRow), deliveries(engine)) == (2, 1)


def test_troubleshooting_sample_through_the_web_layer(client, engine):
    answer = post(client, TROUBLESHOOTING_BODY).get_json()
    retry = post(client, TROUBLESHOOTING_BODY).get_json()

    assert (answer["status"], len(answer["event_ids"])) == ("ignored", 3)
    assert retry["status"] == "duplicate"
    assert count(engine, SignalRow) == 3


def test_batch_with_one_malformed_event_is_accepted_not_400(client, engine):
    response = post(client, [GROUP_UNSUBSCRIBE, "not an event", {**event(3), "email": "guest@@example"}])

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted" and len(answer["event_ids"]) == 3
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]


def test_identical_events_without_sg_event_id_in_one_batch_are_listed_once(client, engine):
    """The troubleshooting sample's events have no sg_event_id: the same one twice hashes the same,
    and is one new event, not a duplicate of itself."""
    processed = json.loads(TROUBLESHOOTING_BODY)[0]
    unsubscribe = {k: v for k, v in DOCS_OPT_OUT_EVENTS[1].items() if k != "sg_event_id"}

    answer = post(client, [unsubscribe, processed, unsubscribe]).get_json()

    assert answer["status"] == "accepted" and len(answer["event_ids"]) == 2
    assert answer["event_ids"][0].startswith("sha256:") and "duplicate_event_ids" not in answer
    assert (count(engine, SignalRow), deliveries(engine)) == (2, 1)


def unusable_count(client) -> float:
    samples = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return sum(s.value for family in samples for s in family.samples
               if s.name == "receiver_unusable_opt_outs_total" and s.labels == {"source": "sendgrid"})


def test_unusable_opt_out_is_counted_and_logged_masked(client, engine, receiver_log):
    """Recorded as ignored, as before, but no longer silently: a guest asked and nothing was applied.
    The events are SendGrid's documented unsubscribe and spamreport (DOCS_OPT_OUT_EVENTS)."""
    before = unusable_count(client)
    batch = [{**DOCS_OPT_OUT_EVENTS[1], "email": "example@@test.com"},
             {**DOCS_OPT_OUT_EVENTS[0], "email": None}, DOCS_OPT_OUT_EVENTS[2]]

    answer = post(client, batch).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])
    assert unusable_count(client) - before == 2
    log = receiver_log()
    assert "example@@test.com" not in log and "e***@test.com" in log
    assert "zz_BjPgU_5pS-J8vlfB1sg==" in log and "unsubscribe" in log and "missing" in log
    assert log.count("unusable address") == 2
