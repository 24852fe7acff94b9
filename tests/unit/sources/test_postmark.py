"""Postmark source: Basic credentials from the webhook URL, RecordType mapping, composite dedup keys."""

import base64
import dataclasses
import json
from datetime import UTC, datetime

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, UnsupportedMediaType
from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow
from receiver.signals import OPT_IN, OPT_OUT, OTHER
from receiver.sources import validate_source_options
from receiver.sources.base import HttpRequest
from receiver.sources.postmark import PostmarkSource
from receiver.states import MAIL_BAN, MARKETING_DECLINE
from tests.helpers import config_toml, empty_tables, make_settings

CREDENTIALS = "postmark:s3cret-webhook-pw"
ROTATED = "postmark:new-webhook-pw"
POSTMARK_TOML = f"""
[sources.postmark]
kind = "postmark"
tenant = "grand"
basic_auth = "env:POSTMARK_WEBHOOK_AUTH"

[sources.postmark-strict]
kind = "postmark"
tenant = "grand"
basic_auth = ["{ROTATED}", "env:POSTMARK_WEBHOOK_AUTH"]
complaint = "mail_ban"
honour_resubscribe = true
"""

# inbound-formats.md, Appendix A.
APPENDIX_A = {
    "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 123456,
    "MessageStream": "broadcast", "ChangedAt": "2026-11-24T10:15:00Z", "Recipient": "guest@example.com",
    "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression",
    "Tag": "nov-newsletter", "Metadata": {"tenant": "grand"},
}
# Postmark's documented samples, other record types.
REACTIVATION = {
    "RecordType": "SubscriptionChange", "MessageID": None, "ServerID": 123456, "MessageStream": "broadcast",
    "ChangedAt": "2026-11-25T08:00:00.416071Z", "Recipient": "guest@example.com", "Origin": "Customer",
    "SuppressSending": False, "SuppressionReason": None, "Tag": None, "Metadata": {},
}
BOUNCE = {
    "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807, "Type": "HardBounce",
    "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value"}, "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "Test bounce details", "Email": "john@example.com", "From": "sender@example.com",
    "BouncedAt": "2026-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True, "CanActivate": True,
    "Subject": "Test subject", "Content": "<Full dump of bounce>",
}
SPAM_COMPLAINT = {
    "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42, "Type": "SpamComplaint",
    "TypeCode": 512, "Name": "Spam complaint", "Tag": "Test", "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value"}, "ServerID": 1234, "Description": "", "Details": "Test spam complaint details",
    "Email": "john@example.com", "From": "sender@example.com", "BouncedAt": "2026-11-05T16:33:54.9070259Z",
    "DumpAvailable": True, "Inactive": True, "CanActivate": False, "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}
DELIVERY = {
    "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
    "MessageID": "00000000-0000-0000-0000-000000000001", "Recipient": "john@example.com", "Tag": "welcome-email",
    "DeliveredAt": "2026-11-05T16:33:54.9070259Z", "Details": "Test delivery webhook details",
    "Metadata": {"a_key": "a_value"},
}
OPEN = {
    "RecordType": "Open", "MessageStream": "outbound", "FirstOpen": True,
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
    "Platform": "WebMail", "UserAgent": "Mozilla/5.0", "ReadSeconds": 5, "Geo": {"CountryISOCode": "US"},
    "MessageID": "00000000-0000-0000-0000-000000000002", "Metadata": {}, "ReceivedAt": "2026-11-05T16:33:54.9070259Z",
    "Tag": "welcome-email", "Recipient": "john@example.com",
}
CLICK = {
    "RecordType": "Click", "MessageStream": "outbound", "ClickLocation": "HTML", "Platform": "Desktop",
    "UserAgent": "Mozilla/5.0", "OriginalLink": "https://example.com", "Geo": {}, "OS": {}, "Client": {},
    "MessageID": "00000000-0000-0000-0000-000000000003", "Metadata": {}, "ReceivedAt": "2026-11-05T16:33:54.9070259Z",
    "Tag": "welcome-email", "Recipient": "john@example.com",
}


def basic(credentials: str) -> str:
    """The Authorization header a client sends for https://user:password@host/... (RFC 7617)."""
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def http(record, authorization: str | None = basic(CREDENTIALS), mimetype: str = "application/json") -> HttpRequest:
    content = record if isinstance(record, bytes) else json.dumps(record).encode()
    headers = Headers({"Authorization": authorization} if authorization is not None else {})
    return HttpRequest(method="POST", path="/hooks/postmark", query_string="", headers=headers, body=content,
                       mimetype=mimetype, args=MultiDict())


def settings_for(tmp_path, database_url):
    return make_settings(tmp_path, database_url, toml=config_toml(extra=POSTMARK_TOML),
                         POSTMARK_WEBHOOK_AUTH=CREDENTIALS)


@pytest.fixture
def source_settings(tmp_path):
    return settings_for(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


@pytest.fixture
def settings(tmp_path, database_url):
    """The conftest ``settings`` (fresh tables) with the Postmark sources added, for ``client``."""
    empty_tables(database_url)
    return settings_for(tmp_path, database_url)


def postmark(settings, name: str = "postmark", **options) -> PostmarkSource:
    config = settings.sources[name]
    return PostmarkSource(dataclasses.replace(config, options={**config.options, **options}), settings)


def only_signal(settings, record, **options):
    inbound = postmark(settings, **options).handle(http(record))
    [signal] = inbound.signals
    assert signal.event_id == inbound.request_key
    return signal


# --- the source on its own ---------------------------------------------------------------------


def test_appendix_a_manual_suppression_is_a_marketing_decline(source_settings):
    inbound = postmark(source_settings).handle(http(APPENDIX_A))

    assert inbound.nonce is None
    assert inbound.request_key.startswith("SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:"
                                          "2026-11-24T10:15:00Z:")
    [signal] = inbound.signals
    assert signal.event_id == inbound.request_key
    assert signal.kind == OPT_OUT
    assert signal.email == "guest@example.com"
    assert (signal.add, signal.remove) == ({MARKETING_DECLINE}, frozenset())
    assert signal.occurred_at == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    assert signal.detail["origin"] == "Recipient"
    assert signal.detail["message_stream"] == "broadcast"


@pytest.mark.parametrize("origin", ["Customer", "Admin"])
def test_operator_suppression_is_a_marketing_decline_too(source_settings, origin):
    signal = only_signal(source_settings, {**APPENDIX_A, "Origin": origin, "MessageID": None})

    assert signal.add == {MARKETING_DECLINE}


@pytest.mark.parametrize("reason", [None, "SomeReasonPostmarkAddsLater"])
def test_suppression_without_a_known_reason_is_a_marketing_decline(source_settings, reason):
    signal = only_signal(source_settings, {**APPENDIX_A, "SuppressionReason": reason})

    assert signal.add == {MARKETING_DECLINE}


@pytest.mark.parametrize("complaint", [MARKETING_DECLINE, MAIL_BAN])
def test_spam_complaint_suppression_follows_the_complaint_option(source_settings, complaint):
    signal = only_signal(source_settings, {**APPENDIX_A, "SuppressionReason": "SpamComplaint"}, complaint=complaint)

    assert (signal.kind, signal.add) == (OPT_OUT, {complaint})


def test_hard_bounce_suppression_is_only_recorded(source_settings):
    signal = only_signal(source_settings, {**APPENDIX_A, "SuppressionReason": "HardBounce", "Origin": "Recipient"})

    assert (signal.kind, signal.add, signal.remove) == (OTHER, frozenset(), frozenset())
    assert signal.email == "guest@example.com"


def test_reactivation_is_ignored_by_default(source_settings):
    signal = only_signal(source_settings, REACTIVATION)

    assert (signal.kind, signal.add, signal.remove) == (OTHER, frozenset(), frozenset())


def test_reactivation_with_honour_resubscribe_lifts_marketing_decline_only(source_settings):
    signal = only_signal(source_settings, REACTIVATION, honour_resubscribe=True)

    assert signal.kind == OPT_IN
    assert (signal.add, signal.remove) == (frozenset(), {MARKETING_DECLINE})
    assert MAIL_BAN not in signal.remove


@pytest.mark.parametrize("value", [None, "true", 1, "false"])
def test_suppress_sending_must_be_a_boolean(source_settings, value):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http({**APPENDIX_A, "SuppressSending": value}))

    assert caught.value.field == "SuppressSending"


@pytest.mark.parametrize("complaint", [MARKETING_DECLINE, MAIL_BAN])
def test_spam_complaint_record_follows_the_complaint_option(source_settings, complaint):
    inbound = postmark(source_settings, complaint=complaint).handle(http(SPAM_COMPLAINT))

    [signal] = inbound.signals
    assert (signal.kind, signal.add, signal.email) == (OPT_OUT, {complaint}, "john@example.com")
    assert inbound.request_key.startswith(
        "SpamComplaint:00000000-0000-0000-0000-000000000000:2026-11-05T16:33:54.9070259Z:42:")


@pytest.mark.parametrize("complaint", [MARKETING_DECLINE, MAIL_BAN])
def test_bounce_hook_spam_complaint_follows_the_complaint_option(source_settings, complaint):
    record = {**BOUNCE, "Type": "SpamComplaint", "TypeCode": 512}

    signal = only_signal(source_settings, record, complaint=complaint)

    assert (signal.kind, signal.add) == (OPT_OUT, {complaint})


@pytest.mark.parametrize("bounce_type", ["HardBounce", "SoftBounce", "Transient", "Subscribe", None])
def test_bounces_are_only_recorded(source_settings, bounce_type):
    signal = only_signal(source_settings, {**BOUNCE, "Type": bounce_type})

    assert (signal.kind, signal.add) == (OTHER, frozenset())
    assert signal.email == "john@example.com"
    assert signal.event_id.startswith("Bounce:883953f4-6105-42a2-a16a-77a8eac79483:2026-11-05T16:33:54.9070259Z:"
                                      "4323372036854775807:")


@pytest.mark.parametrize("record", [DELIVERY, OPEN, CLICK, {**DELIVERY, "RecordType": "SomethingNew"}],
                         ids=["delivery", "open", "click", "unknown"])
def test_other_record_types_are_only_recorded(source_settings, record):
    signal = only_signal(source_settings, record)

    assert (signal.kind, signal.add, signal.remove) == (OTHER, frozenset(), frozenset())
    assert signal.email == "john@example.com"
    assert signal.keyword == record["RecordType"]


def test_recorded_event_without_an_address_is_not_refused(source_settings):
    record = {key: value for key, value in OPEN.items() if key != "Recipient"}

    assert only_signal(source_settings, record).email is None


@pytest.mark.parametrize("recipient", [None, "", "not an address", 7])
def test_opt_out_without_a_valid_address_is_a_bad_request(source_settings, recipient):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http({**APPENDIX_A, "Recipient": recipient}))

    assert caught.value.field == "Recipient"


def test_complaint_without_a_valid_address_names_email(source_settings):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http({**SPAM_COMPLAINT, "Email": None}))

    assert caught.value.field == "Email"


def test_key_is_stable_and_keeps_the_address_out(source_settings):
    first = postmark(source_settings).handle(http(APPENDIX_A)).request_key

    assert postmark(source_settings).handle(http(dict(reversed(APPENDIX_A.items())))).request_key == first
    assert "guest" not in first and "example.com" not in first
    assert len(first) <= 255


def test_manual_suppressions_without_message_id_stay_apart(source_settings):
    base = {**APPENDIX_A, "MessageID": None, "Origin": "Customer"}
    variants = [base, {**base, "Recipient": "other@example.com"}, {**base, "MessageStream": "outbound"},
                {**base, "SuppressSending": False, "SuppressionReason": None}]

    keys = [postmark(source_settings).handle(http(record)).request_key for record in variants]

    assert len(set(keys)) == len(keys)
    assert all(key.startswith("SubscriptionChange::2026-11-24T10:15:00Z::") for key in keys)


@pytest.mark.parametrize("name, value", [("MessageID", "x" * 65), ("ChangedAt", {"at": 1}), ("MessageID", True)])
def test_malformed_key_parts_are_bad_requests_naming_them(source_settings, name, value):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http({**APPENDIX_A, name: value}))

    assert caught.value.field == name


@pytest.mark.parametrize("record_type", [None, "", 5, "x" * 33, "Bounce\x00", "Bounce\x85", "\ud800"])
def test_missing_record_type_is_a_bad_request(source_settings, record_type):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http({**APPENDIX_A, "RecordType": record_type}))

    assert caught.value.field == "RecordType"


@pytest.mark.parametrize("content", [b"", b"{", b"RecordType=Bounce", b"\xff"])
def test_malformed_json_is_a_bad_request(source_settings, content):
    with pytest.raises(BadRequest) as caught:
        postmark(source_settings).handle(http(content))

    assert caught.value.field == "body"


@pytest.mark.parametrize("content", [b"[]", json.dumps([APPENDIX_A]).encode(), b"null"])
def test_anything_but_one_object_is_a_bad_request(source_settings, content):
    with pytest.raises(BadRequest, match="one JSON object"):
        postmark(source_settings).handle(http(content))


@pytest.mark.parametrize("authorization", [
    None,
    "",
    "Basic",
    "Basic ",
    basic("postmark:wrong"),
    basic("someone:s3cret-webhook-pw"),
    basic(CREDENTIALS + " "),
    basic("postmark"),
    "Bearer " + base64.b64encode(CREDENTIALS.encode()).decode(),
    "Basic !!not-base64!!",
    "Basic " + base64.b64encode(b"postmark:\xff").decode(),
    CREDENTIALS,
])
def test_missing_or_wrong_credentials(source_settings, authorization):
    with pytest.raises(BadSignature) as caught:
        postmark(source_settings).handle(http(APPENDIX_A, authorization))

    assert caught.value.status == 401


@pytest.mark.parametrize("authorization", [basic(CREDENTIALS), "basic " + basic(CREDENTIALS)[6:],
                                           "BASIC  " + basic(CREDENTIALS)[6:]])
def test_scheme_is_case_insensitive(source_settings, authorization):
    assert postmark(source_settings).handle(http(APPENDIX_A, authorization)).signals


def test_credential_rotation_accepts_every_listed_entry(source_settings):
    source = postmark(source_settings, "postmark-strict")

    for credentials in (ROTATED, CREDENTIALS):
        assert source.handle(http(APPENDIX_A, basic(credentials))).signals[0].add == {MARKETING_DECLINE}
    with pytest.raises(BadSignature):
        source.handle(http(APPENDIX_A, basic("postmark:retired-pw")))


def test_credentials_are_checked_before_the_body(source_settings):
    with pytest.raises(BadSignature):
        postmark(source_settings).handle(http(b"{", basic("postmark:wrong")))


@pytest.mark.parametrize("mimetype", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_wrong_content_type_is_415(source_settings, mimetype):
    with pytest.raises(UnsupportedMediaType):
        postmark(source_settings).handle(http(APPENDIX_A, mimetype=mimetype))


@pytest.mark.parametrize("options, problem", [
    ({}, "basic_auth"),
    ({"basic_auth": "no-colon"}, "basic_auth"),
    ({"basic_auth": ["user:pw", "no-colon"]}, "basic_auth"),
    ({"basic_auth": "u:p", "honour_resubscribe": "maybe"}, "honour_resubscribe"),
    ({"basic_auth": "u:p", "complaint": "sms_ban"}, "complaint"),
    ({"basic_auth": "u:p", "server_token": "x"}, "server_token"),
])
def test_bad_options_fail_at_start_up(options, problem):
    with pytest.raises(ValidationError) as caught:
        validate_source_options("postmark", options)

    assert problem in caught.value.messages


def test_option_defaults():
    options = validate_source_options("postmark", {"basic_auth": "u:p"})

    assert (options["honour_resubscribe"], options["complaint"]) == (False, MARKETING_DECLINE)


# Every visible part of the key at its longest: a RecordType Postmark may add later (32), and
# MessageID, ReceivedAt and ID of 64 characters each.
LONGEST_KEY_RECORD = {**OPEN, "RecordType": "R" * 32, "MessageID": "m" * 64, "ReceivedAt": "t" * 64, "ID": "i" * 64}


def test_longest_key_fits_the_ledgers_255_characters(source_settings):
    key = postmark(source_settings).handle(http(LONGEST_KEY_RECORD)).request_key

    assert len(key) <= 255


# --- through POST /hooks/<source> and the ledger -----------------------------------------------


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def post(client, record, source: str = "postmark", credentials: str = CREDENTIALS, content_type="application/json"):
    content = record if isinstance(record, bytes) else json.dumps(record).encode()
    return client.post(f"/hooks/{source}", data=content, content_type=content_type,
                       headers={"Authorization": basic(credentials)})


def states(engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(conn.execute(select(Consent.identity, Consent.state)).all())


def test_appendix_a_is_accepted_with_a_signed_receipt(client, engine):
    response = post(client, APPENDIX_A)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "accepted"
    assert answer["receipt_id"] == response.headers["webhook-id"]
    assert response.headers["webhook-signature"].startswith("v1a,")
    [event_id] = answer["event_ids"]
    assert event_id.startswith("SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:")
    assert answer["changes"] == [{"email": "guest@example.com", "states": [MARKETING_DECLINE]}]
    assert states(engine) == {("guest@example.com", MARKETING_DECLINE)}
    assert count(engine, Delivery) == 1


def test_same_record_again_is_a_duplicate(client, engine):
    first = post(client, APPENDIX_A).get_json()

    again = post(client, APPENDIX_A).get_json()

    assert again["status"] == "duplicate"
    assert again["original_receipt_id"] == first["receipt_id"]
    assert (again["event_ids"], again["changes"]) == (first["event_ids"], [])
    assert (count(engine, RequestRecord), count(engine, SignalRow), count(engine, Delivery)) == (1, 1, 1)


def test_simultaneous_manual_suppressions_of_two_guests_are_both_recorded(client, engine):
    base = {**APPENDIX_A, "MessageID": None, "Origin": "Customer"}

    answers = [post(client, {**base, "Recipient": email}).get_json()["status"]
               for email in ("one@example.com", "two@example.com")]

    assert answers == ["accepted", "accepted"]
    assert states(engine) == {("one@example.com", MARKETING_DECLINE), ("two@example.com", MARKETING_DECLINE)}


def test_longest_key_is_recorded_on_every_database(client, engine):
    """On PostgreSQL a key over the 255-character column was a 503 that Postmark retries for hours."""
    response = post(client, LONGEST_KEY_RECORD)

    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert count(engine, SignalRow) == 1


def test_a_key_over_255_characters_is_400_not_503(client, engine):
    """Parts of 64 characters each made a key of 276: over the column, a 503 on PostgreSQL."""
    response = post(client, {**LONGEST_KEY_RECORD, "RecordType": "R" * 64})

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("RecordType: ")


@pytest.mark.parametrize("record_type", ["Bounce\x00", "SubscriptionChange\x1b", "x" * 33])
def test_record_type_is_refused_the_same_on_every_database(client, engine, record_type):
    """A NUL in RecordType reached PostgreSQL, which cannot store it: a 503 retried for hours."""
    response = post(client, {**APPENDIX_A, "RecordType": record_type})

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("RecordType: ")
    assert count(engine, RequestRecord) == 0


@pytest.mark.parametrize("credentials", ["postmark:wrong", "", ROTATED])
def test_wrong_credentials_are_401_and_store_nothing(client, engine, credentials):
    response = post(client, APPENDIX_A, credentials=credentials)

    assert response.status_code == 401
    assert "webhook-signature" not in response.headers
    assert count(engine, RequestRecord) == 0


def test_missing_authorization_is_401(client, engine):
    response = client.post("/hooks/postmark", data=json.dumps(APPENDIX_A), content_type="application/json")

    assert response.status_code == 401
    assert count(engine, RequestRecord) == 0


@pytest.mark.parametrize("record", [BOUNCE, DELIVERY, OPEN, {**APPENDIX_A, "SuppressionReason": "HardBounce"},
                                    REACTIVATION], ids=["bounce", "delivery", "open", "hard-bounce", "reactivation"])
def test_events_without_opt_out_are_ignored(client, engine, record):
    answer = post(client, record).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])
    assert count(engine, SignalRow) == 1
    assert count(engine, Consent) == count(engine, Delivery) == 0


def test_honour_resubscribe_lifts_marketing_decline_but_not_mail_ban(client, engine):
    complaint = post(client, SPAM_COMPLAINT, "postmark-strict", ROTATED).get_json()
    post(client, {**APPENDIX_A, "Recipient": "john@example.com"}, "postmark-strict")
    assert complaint["changes"] == [{"email": "john@example.com", "states": [MAIL_BAN]}]
    assert states(engine) == {("john@example.com", MAIL_BAN), ("john@example.com", MARKETING_DECLINE)}

    answer = post(client, {**REACTIVATION, "Recipient": "john@example.com"}, "postmark-strict").get_json()

    assert answer["status"] == "accepted"
    assert answer["changes"] == [{"email": "john@example.com", "removed": [MARKETING_DECLINE]}]
    assert states(engine) == {("john@example.com", MAIL_BAN)}


def test_reactivation_without_honour_resubscribe_changes_nothing(client, engine):
    post(client, APPENDIX_A)

    answer = post(client, REACTIVATION).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])
    assert states(engine) == {("guest@example.com", MARKETING_DECLINE)}


def test_malformed_json_is_400_naming_the_body(client, engine):
    response = post(client, b'{"RecordType": ')

    assert (response.status_code, response.get_json()["field"]) == (400, "body")
    assert count(engine, RequestRecord) == 0


def test_form_post_is_415(client, engine):
    response = post(client, json.dumps(APPENDIX_A).encode(), content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert count(engine, RequestRecord) == 0


# --- Bounce of Type "Unsubscribe" (TypeCode 16) ---------------------------------------------------

# Postmark's bounce webhook sample (BOUNCE above) with Postmark's bounce type "Unsubscribe", TypeCode 16,
# "Unsubscribe request" (Postmark's bounce-type table; the `postmark` npm typings: BounceTypeCode.Unsubscribe = 16).
UNSUBSCRIBE_BOUNCE = {**BOUNCE, "Type": "Unsubscribe", "TypeCode": 16, "Name": "Unsubscribe request",
                      "Description": "Unsubscribe or Remove request.", "Inactive": False, "CanActivate": True}


@pytest.mark.parametrize("complaint", [MARKETING_DECLINE, MAIL_BAN])
def test_unsubscribe_bounce_with_an_email_is_a_marketing_decline(source_settings, complaint):
    signal = only_signal(source_settings, UNSUBSCRIBE_BOUNCE, complaint=complaint)

    assert (signal.kind, signal.add, signal.remove) == (OPT_OUT, {MARKETING_DECLINE}, frozenset())
    assert (signal.email, signal.keyword) == ("john@example.com", "Bounce")
    assert signal.detail["type"] == "Unsubscribe"


def test_type_code_16_without_a_type_is_an_unsubscribe_too(source_settings):
    record = {key: value for key, value in UNSUBSCRIBE_BOUNCE.items() if key != "Type"}

    assert only_signal(source_settings, record).add == {MARKETING_DECLINE}


@pytest.mark.parametrize("email", [None, "", "absent"])
def test_unsubscribe_bounce_without_an_email_is_only_recorded(source_settings, email):
    record = {**UNSUBSCRIBE_BOUNCE, "Email": email}
    if email == "absent":
        del record["Email"]

    signal = only_signal(source_settings, record)

    assert (signal.kind, signal.add, signal.email) == (OTHER, frozenset(), None)


def test_unsubscribe_bounce_is_accepted_and_delivered_once(client, engine):
    answer = post(client, UNSUBSCRIBE_BOUNCE).get_json()
    again = post(client, UNSUBSCRIBE_BOUNCE).get_json()

    assert answer["status"] == "accepted"
    assert answer["changes"] == [{"email": "john@example.com", "states": [MARKETING_DECLINE]}]
    assert again["status"] == "duplicate"
    assert count(engine, Delivery) == 1


# --- django-anymail's recorded payloads ----------------------------------------------------------

# django-anymail, tests/test_postmark_webhooks.py (payloads recorded from Postmark, sanitised).
ANYMAIL_BOUNCE = {
    "RecordType": "Bounce", "ID": 901542550, "Type": "HardBounce", "TypeCode": 1, "ServerID": 23,
    "Name": "Hard bounce", "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "bounce@example.com", "From": "sender@example.com", "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
    "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Postmark event test", "Content": "...",
}
ANYMAIL_SPAM = {
    "RecordType": "SpamComplaint", "ID": 901542550, "Type": "SpamComplaint", "TypeCode": 512,
    "Name": "Spam complaint", "Tag": "Test", "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed", "ServerID": 1234,
    "Description": "", "Details": "Test spam complaint details", "Email": "spam@example.com",
    "From": "sender@example.com", "BouncedAt": "2016-04-27T16:28:50.3963933-04:00", "DumpAvailable": True,
    "Inactive": True, "CanActivate": False, "Subject": "Postmark event test",
}
ANYMAIL_UNSUBSCRIBE = {
    "RecordType": "SubscriptionChange", "MessageID": "a4909a96-73d7-4c49-b148-a54522d3f7ac", "ServerID": 23,
    "MessageStream": "outbound", "ChangedAt": "2022-06-05T17:17:32Z", "Recipient": "john@example.com",
    "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "welcome-email",
    "Metadata": {"example": "value", "example_2": "value"},
}
ANYMAIL_RESUBSCRIBE = {**ANYMAIL_UNSUBSCRIBE, "SuppressSending": False, "SuppressionReason": None}
ANYMAIL_SUPPRESSION_BOUNCE = {**ANYMAIL_UNSUBSCRIBE, "MessageID": "b4cb783d-78ed-43f2-983b-63f55c712dc8",
                              "SuppressionReason": "HardBounce", "Tag": "my-tag"}
ANYMAIL_DELIVERY = {
    "RecordType": "Delivery", "ServerId": 23, "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Recipient": "recipient@example.com", "Tag": "welcome-email",
    "Metadata": {"cohort": "2014-08-A", "userid": "12345"}, "DeliveredAt": "2014-08-01T13:28:10.2735393-04:00",
    "Details": "Test delivery webhook details",
}


@pytest.mark.parametrize("record, kind, add, email", [
    (ANYMAIL_BOUNCE, OTHER, frozenset(), "bounce@example.com"),
    (ANYMAIL_SPAM, OPT_OUT, {MARKETING_DECLINE}, "spam@example.com"),
    (ANYMAIL_UNSUBSCRIBE, OPT_OUT, {MARKETING_DECLINE}, "john@example.com"),
    (ANYMAIL_RESUBSCRIBE, OTHER, frozenset(), "john@example.com"),
    (ANYMAIL_SUPPRESSION_BOUNCE, OTHER, frozenset(), "john@example.com"),
    (ANYMAIL_DELIVERY, OTHER, frozenset(), "recipient@example.com"),
], ids=["bounce", "spam", "unsubscribe", "resubscribe", "suppression-bounce", "delivery"])
def test_anymail_recorded_payloads(source_settings, record, kind, add, email):
    signal = only_signal(source_settings, record)

    assert (signal.kind, signal.add, signal.email) == (kind, add, email)
    assert signal.occurred_at is not None
