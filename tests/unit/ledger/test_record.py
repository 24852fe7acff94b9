"""Ledger.record: receipt, signals, consent and deliveries in one transaction, duplicates answered."""

import dataclasses
import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import select

from receiver import clock
from receiver.errors import Unavailable
from receiver.ledger.models import Consent, Delivery, IdentityLink, RequestRecord, SignalRow
from receiver.ledger.outbox import PENDING, SKIPPED
from receiver.ledger.record import ACCEPTED, DUPLICATE, IGNORED, Ledger
from receiver.settings import SourceConfig
from receiver.signals import OPT_OUT, Inbound, Signal
from receiver.sources.sms import classify, sms_signal
from receiver.states import CRMTEXT, EXPERIENCE, MARKETING_DECLINE, MARKETING_DECLINE_SMS, SMS_BAN
from tests.helpers import config_toml, make_settings

PHONE = "+15551234567"
EMAIL = "guest@example.com"


def sms(sid: str, text: str = "STOP", phone: str = PHONE, **extra) -> Inbound:
    intent, keyword, review = classify(text)
    return Inbound(request_key=sid, signals=[sms_signal(sid, phone, intent, keyword=keyword, review=review, **extra)])


def rows(engine, model) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(model)).all())


def deliveries(engine) -> dict[str, Delivery]:
    found = {}
    for row in rows(engine, Delivery):
        assert row.crm not in found, "one delivery per CRM expected"
        found[row.crm] = row
    return found


@pytest.fixture
def twilio(settings):
    return settings.sources["twilio"]


@pytest.fixture
def crmtext(settings):
    return settings.sources["crmtext"]


def test_stop_is_accepted_with_its_change_and_two_deliveries(ledger, engine, twilio):
    outcome = ledger.record(twilio, sms("SM1"), b"Body=STOP")

    assert outcome.status == ACCEPTED
    assert outcome.receipt_id.startswith("rcpt_")
    assert outcome.event_ids == ["SM1"]
    assert outcome.changes == [{"phone": PHONE, "states": [SMS_BAN]}]
    assert outcome.original_receipt_id is None
    assert outcome.kinds == {OPT_OUT}

    found = deliveries(engine)
    assert set(found) == {EXPERIENCE, CRMTEXT}
    experience, crm_text = found[EXPERIENCE], found[CRMTEXT]
    assert (experience.status, experience.reason, experience.identity) == (PENDING, None, PHONE)
    assert experience.payload == {"email": None, "phone": PHONE,
                                  "states": {SMS_BAN: outcome.received_at.isoformat()}}
    assert (crm_text.status, crm_text.reason) == (PENDING, None)
    assert crm_text.payload == {"phone": PHONE, "ten_digits": "5551234567"}
    assert experience.attempts == crm_text.attempts == 0

    [receipt] = rows(engine, RequestRecord)
    assert (receipt.id, receipt.source, receipt.tenant, receipt.request_key) == (outcome.receipt_id, "twilio", "grand", "SM1")
    assert (receipt.status, receipt.event_ids, receipt.changes) == (ACCEPTED, ["SM1"], outcome.changes)
    assert receipt.evidence_sha256 == hashlib.sha256(b"Body=STOP").hexdigest()
    [signal] = rows(engine, SignalRow)
    assert (signal.receipt_id, signal.kind, signal.keyword, signal.phone) == (outcome.receipt_id, OPT_OUT, "stop", PHONE)
    assert signal.changes == outcome.changes
    assert experience.signal_id == crm_text.signal_id == signal.id
    [consent] = rows(engine, Consent)
    assert (consent.tenant, consent.identity, consent.state, consent.signal_id) == ("grand", PHONE, SMS_BAN, signal.id)


def test_same_request_again_is_a_duplicate_and_stores_nothing(ledger, engine, twilio):
    first = ledger.record(twilio, sms("SM1"), b"Body=STOP")
    before = {model: len(rows(engine, model)) for model in (RequestRecord, SignalRow, Consent, Delivery)}

    again = ledger.record(twilio, sms("SM1"), b"Body=STOP")

    assert again.status == DUPLICATE
    assert again.original_receipt_id == first.receipt_id
    assert again.receipt_id != first.receipt_id
    assert again.event_ids == first.event_ids == ["SM1"]
    assert again.duplicate_event_ids == ["SM1"]
    assert again.changes == []
    assert {model: len(rows(engine, model)) for model in before} == before


def test_same_message_id_from_another_source_is_not_a_duplicate(ledger, engine, twilio):
    ledger.record(twilio, sms("X1"), b"")
    other = SourceConfig(name="twilio-2", kind="twilio", tenant="grand", options={})

    assert ledger.record(other, sms("X1"), b"").status == ACCEPTED


def test_second_stop_is_accepted_without_changes_or_deliveries(ledger, engine, twilio):
    ledger.record(twilio, sms("SM1"), b"")

    second = ledger.record(twilio, sms("SM2", "stop please"), b"")

    assert second.status == ACCEPTED
    assert second.event_ids == ["SM2"]
    assert second.changes == []
    assert len(rows(engine, Delivery)) == 2
    assert len(rows(engine, SignalRow)) == 2
    assert len(rows(engine, Consent)) == 1


def test_stop_start_stop(ledger, engine, twilio):
    ledger.record(twilio, sms("SM1", "STOP"), b"")

    start = ledger.record(twilio, sms("SM2", "START"), b"")

    assert start.status == ACCEPTED
    assert start.changes == [{"phone": PHONE, "removed": [SMS_BAN]}]
    assert rows(engine, Consent) == []
    assert len(rows(engine, Delivery)) == 2  # a re-consent is not delivered

    again = ledger.record(twilio, sms("SM3", "STOP"), b"")

    assert again.changes == [{"phone": PHONE, "states": [SMS_BAN]}]
    found = rows(engine, Delivery)
    assert len(found) == 4
    [third] = [row for row in rows(engine, SignalRow) if row.event_id == "SM3"]
    assert {row.crm for row in found if row.signal_id == third.id} == {EXPERIENCE, CRMTEXT}
    assert all(row.status == PENDING for row in found)


def test_start_with_nothing_to_remove_changes_nothing(ledger, engine, twilio):
    outcome = ledger.record(twilio, sms("SM1", "START"), b"")

    assert (outcome.status, outcome.changes) == (ACCEPTED, [])
    assert rows(engine, Delivery) == []


def test_non_us_number_skips_crmtext_with_a_reason(ledger, engine, twilio):
    ledger.record(twilio, sms("SM1", phone="+442071838750"), b"")

    found = deliveries(engine)
    assert found[EXPERIENCE].status == PENDING
    assert found[CRMTEXT].status == SKIPPED
    assert "US" in found[CRMTEXT].reason
    assert found[CRMTEXT].payload == {"phone": "+442071838750", "ten_digits": None}


def test_opt_out_reported_by_crmtext_is_not_sent_back(ledger, engine, crmtext):
    outcome = ledger.record(crmtext, sms("123456789", "STOP", reported_by=CRMTEXT), b"")

    assert outcome.changes == [{"phone": PHONE, "states": [SMS_BAN]}]
    found = deliveries(engine)
    assert found[EXPERIENCE].status == PENDING
    assert found[CRMTEXT].status == SKIPPED
    assert "CRM Text" in found[CRMTEXT].reason


def test_tenant_without_experience_owes_only_crmtext(ledger, engine):
    source = SourceConfig(name="small-twilio", kind="twilio", tenant="smsonly", options={})

    outcome = ledger.record(source, sms("SM1"), b"")

    assert outcome.changes == [{"phone": PHONE, "states": [SMS_BAN]}]
    [delivery] = rows(engine, Delivery)
    assert (delivery.crm, delivery.tenant, delivery.status) == (CRMTEXT, "smsonly", PENDING)


def test_tenants_keep_separate_states(ledger, engine, twilio):
    ledger.record(twilio, sms("SM1"), b"")
    source = SourceConfig(name="small-twilio", kind="twilio", tenant="smsonly", options={})

    outcome = ledger.record(source, sms("SM2"), b"")

    assert outcome.changes == [{"phone": PHONE, "states": [SMS_BAN]}]
    assert {(row.tenant, row.identity) for row in rows(engine, Consent)} == {("grand", PHONE), ("smsonly", PHONE)}


@pytest.mark.parametrize("text, kind", [("HELP", "help"), ("what time is breakfast?", "other")])
def test_help_and_other_text_are_ignored_but_recorded(ledger, engine, twilio, text, kind):
    outcome = ledger.record(twilio, sms("SM1", text), b"")

    assert outcome.status == IGNORED
    assert (outcome.event_ids, outcome.changes) == (["SM1"], [])
    [signal] = rows(engine, SignalRow)
    assert (signal.kind, signal.event_id) == (kind, "SM1")
    [receipt] = rows(engine, RequestRecord)
    assert receipt.status == IGNORED
    assert rows(engine, Delivery) == []
    assert rows(engine, Consent) == []


def partner(event_id: str, *states: str, email: str | None = EMAIL, phone: str | None = PHONE) -> Inbound:
    signal = Signal(event_id=event_id, kind=OPT_OUT, email=email, phone=phone, add=frozenset(states))
    return Inbound(request_key=event_id, signals=[signal])


def test_signal_with_email_and_phone_links_them_for_later_sms(ledger, engine, twilio):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})
    first = ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"{}")
    assert first.changes == [{"email": EMAIL, "states": [MARKETING_DECLINE]}]
    [link] = rows(engine, IdentityLink)
    assert (link.tenant, link.email, link.phone) == ("grand", EMAIL, PHONE)

    ledger.record(twilio, sms("SM1"), b"")

    sms_deliveries = [row for row in rows(engine, Delivery) if row.identity == PHONE]
    [experience] = [row for row in sms_deliveries if row.crm == EXPERIENCE]
    assert experience.payload["email"] == EMAIL
    assert experience.payload["phone"] == PHONE
    assert {row.crm for row in sms_deliveries} == {EXPERIENCE, CRMTEXT}


def test_email_and_sms_states_of_one_signal_go_to_their_own_identities(ledger, engine):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})

    outcome = ledger.record(source, partner("evt_1", MARKETING_DECLINE, MARKETING_DECLINE_SMS), b"{}")

    assert outcome.changes == [{"phone": PHONE, "states": [MARKETING_DECLINE_SMS]},
                               {"email": EMAIL, "states": [MARKETING_DECLINE]}]
    found = rows(engine, Delivery)
    # marketing_decline_sms is Experience-only: CRM Text has no marketing-only state.
    assert sorted((row.crm, row.identity) for row in found) == [(EXPERIENCE, PHONE), (EXPERIENCE, EMAIL)]


@pytest.fixture
def email_only(tmp_path, database_url):
    extra = """
[tenants.strict]
experience = { base_url = "http://127.0.0.1:9/experience", partner_token = "p", hotel_token = "h", sms_records = "email-only" }
crmtext = { base_url = "http://127.0.0.1:9/crmtext", user = "u", password = "pw", keyword = "STRICT" }

[sources.strict-twilio]
kind = "twilio"
tenant = "strict"
auth_token = "t"
"""
    settings = make_settings(tmp_path, database_url, toml=config_toml(extra=extra))
    assert settings.tenants["strict"].experience.sms_records == "email-only"
    return settings


def test_email_only_skips_experience_for_a_phone_without_email(email_only, engine):
    ledger = Ledger(engine, email_only.tenants, email_only.identity_key)

    ledger.record(email_only.sources["strict-twilio"], sms("SM1"), b"")

    found = deliveries(engine)
    assert found[EXPERIENCE].status == SKIPPED
    assert "email-only" in found[EXPERIENCE].reason
    assert found[CRMTEXT].status == PENDING


def test_email_only_sends_a_phone_with_a_known_email(email_only, engine):
    ledger = Ledger(engine, email_only.tenants, email_only.identity_key)
    source = SourceConfig(name="strict-partner", kind="standard-webhooks", tenant="strict", options={})
    ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"{}")

    ledger.record(email_only.sources["strict-twilio"], sms("SM1"), b"")

    [experience] = [row for row in rows(engine, Delivery) if row.identity == PHONE and row.crm == EXPERIENCE]
    assert experience.status == PENDING
    assert experience.payload["email"] == EMAIL


def test_email_only_delivers_a_skipped_sms_state_once_a_link_appears(email_only, engine):
    ledger = Ledger(engine, email_only.tenants, email_only.identity_key)
    ledger.record(email_only.sources["strict-twilio"], sms("SM1"), b"")
    [skipped] = [row for row in rows(engine, Delivery) if row.crm == EXPERIENCE]
    source = SourceConfig(name="strict-partner", kind="standard-webhooks", tenant="strict", options={})

    ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"{}")

    [phone_delivery] = [row for row in rows(engine, Delivery) if row.crm == EXPERIENCE and row.identity == PHONE]
    assert phone_delivery.id == skipped.id
    assert (phone_delivery.status, phone_delivery.reason) == (PENDING, None)
    assert phone_delivery.payload == {**skipped.payload, "email": EMAIL}

    ledger.record(source, partner("evt_2", MARKETING_DECLINE, email="other@example.com"), b"{}")
    assert len([row for row in rows(engine, Delivery) if row.identity == PHONE and row.status == PENDING]) == 2


def test_email_only_link_does_not_deliver_a_lifted_state(email_only, engine):
    ledger = Ledger(engine, email_only.tenants, email_only.identity_key)
    twilio = email_only.sources["strict-twilio"]
    ledger.record(twilio, sms("SM1", "STOP"), b"")
    ledger.record(twilio, sms("SM2", "START"), b"")
    source = SourceConfig(name="strict-partner", kind="standard-webhooks", tenant="strict", options={})

    ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"{}")

    [held] = [row for row in rows(engine, Delivery) if row.crm == EXPERIENCE and row.identity == PHONE]
    assert held.status == SKIPPED


def test_email_only_link_with_the_same_state_owes_it_once(email_only, engine):
    ledger = Ledger(engine, email_only.tenants, email_only.identity_key)
    twilio = email_only.sources["strict-twilio"]
    ledger.record(twilio, sms("SM1", "STOP"), b"")
    ledger.record(twilio, sms("SM2", "START"), b"")
    source = SourceConfig(name="strict-partner", kind="standard-webhooks", tenant="strict", options={})

    ledger.record(source, partner("evt_1", SMS_BAN), b"{}")  # adds sms_ban again, with the email

    owed = [row for row in rows(engine, Delivery) if row.crm == EXPERIENCE and row.status == PENDING]
    assert len(owed) == 1
    assert owed[0].payload["email"] == EMAIL


def test_commit_failure_is_unavailable_and_leaves_nothing_half_written(ledger, engine, twilio, monkeypatch):
    def fail(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("INSERT INTO deliveries", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Ledger, "_owe_deliveries", fail)

    with pytest.raises(Unavailable) as caught:
        ledger.record(twilio, sms("SM1"), b"")

    assert caught.value.status == 503
    for model in (RequestRecord, SignalRow, Consent, Delivery, IdentityLink):
        assert rows(engine, model) == [], model.__tablename__

    monkeypatch.undo()  # the sender's retry then goes through as new
    assert ledger.record(twilio, sms("SM1"), b"").status == ACCEPTED


def test_concurrent_identical_requests_give_one_accepted_one_duplicate(ledger, engine, twilio):
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def deliver():
        try:
            barrier.wait(timeout=10)
            outcomes.append(ledger.record(twilio, sms("SM1"), b"Body=STOP"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(outcome.status for outcome in outcomes) == [ACCEPTED, DUPLICATE]
    accepted = next(o for o in outcomes if o.status == ACCEPTED)
    duplicate = next(o for o in outcomes if o.status == DUPLICATE)
    assert duplicate.original_receipt_id == accepted.receipt_id
    assert duplicate.event_ids == accepted.event_ids
    assert len(rows(engine, RequestRecord)) == 1
    assert len(rows(engine, Delivery)) == 2


def test_events_seen_under_another_request_are_listed_as_duplicates(ledger, engine):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})
    ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"")
    batch = Inbound(request_key="msg_2", signals=[
        Signal(event_id="evt_1", kind=OPT_OUT, email=EMAIL, add=frozenset({MARKETING_DECLINE})),
        Signal(event_id="evt_2", kind=OPT_OUT, email="other@example.com", add=frozenset({MARKETING_DECLINE})),
    ])

    outcome = ledger.record(source, batch, b"")

    assert outcome.status == ACCEPTED
    assert outcome.event_ids == ["evt_1", "evt_2"]  # every event of the request now recorded
    assert outcome.duplicate_event_ids == ["evt_1"]
    assert outcome.original_receipt_id is None
    assert outcome.changes == [{"email": "other@example.com", "states": [MARKETING_DECLINE]}]
    [receipt] = [r for r in rows(engine, RequestRecord) if r.id == outcome.receipt_id]
    assert receipt.event_ids == ["evt_1", "evt_2"]


def test_new_request_of_only_seen_events_is_a_duplicate_of_their_first_receipt(ledger, engine):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})
    first = ledger.record(source, partner("evt_1", MARKETING_DECLINE), b"")
    resent = Inbound(request_key="msg_resent", signals=partner("evt_1", MARKETING_DECLINE).signals)

    outcome = ledger.record(source, resent, b"")

    assert outcome.status == DUPLICATE
    assert outcome.event_ids == outcome.duplicate_event_ids == ["evt_1"]
    assert outcome.original_receipt_id == first.receipt_id
    assert outcome.receipt_id != first.receipt_id
    assert outcome.changes == []
    assert len(rows(engine, SignalRow)) == 1
    assert len(rows(engine, Delivery)) == 1

    retry = ledger.record(source, resent, b"")  # the same new request again: answered from its receipt

    # ... pointing at the receipt that recorded the event, never at the duplicate answer before it
    assert (retry.status, retry.event_ids, retry.original_receipt_id) == (DUPLICATE, ["evt_1"], first.receipt_id)
    assert retry.duplicate_event_ids == ["evt_1"]


def optout(event_id: str, email: str) -> Signal:
    return Signal(event_id=event_id, kind=OPT_OUT, email=email, add=frozenset({MARKETING_DECLINE}))


def test_events_seen_in_several_requests_point_at_the_receipt_of_the_first_event(ledger, engine):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})
    first = ledger.record(source, Inbound(request_key="msg_1", signals=[optout("evt_1", EMAIL)]), b"")
    second = ledger.record(source, Inbound(request_key="msg_2", signals=[optout("evt_2", "b@example.com")]), b"")
    resent = Inbound(request_key="msg_3", signals=[optout("evt_2", "b@example.com"), optout("evt_1", EMAIL)])

    outcome = ledger.record(source, resent, b"")
    retry = ledger.record(source, resent, b"")

    assert outcome.status == retry.status == DUPLICATE
    assert outcome.event_ids == retry.event_ids == ["evt_2", "evt_1"]
    # The receipt that first recorded the request's first event, on the first answer and on retries.
    assert outcome.original_receipt_id == retry.original_receipt_id == second.receipt_id != first.receipt_id
    statuses = {r.id: r.status for r in rows(engine, RequestRecord)}
    assert statuses[outcome.original_receipt_id] == ACCEPTED


def test_retry_of_a_partly_seen_request_points_at_its_own_first_answer(ledger, engine):
    source = SourceConfig(name="booking-engine", kind="standard-webhooks", tenant="grand", options={})
    ledger.record(source, Inbound(request_key="msg_1", signals=[optout("evt_1", EMAIL)]), b"")
    batch = Inbound(request_key="msg_2", signals=[optout("evt_1", EMAIL), optout("evt_2", "b@example.com")])
    answer = ledger.record(source, batch, b"")

    retry = ledger.record(source, batch, b"")

    assert answer.status == ACCEPTED
    assert (retry.status, retry.original_receipt_id) == (DUPLICATE, answer.receipt_id)
    assert retry.event_ids == retry.duplicate_event_ids == ["evt_1", "evt_2"]


def test_an_event_id_repeated_in_one_request_counts_once_as_its_first_event(ledger, engine):
    source = SourceConfig(name="sendgrid", kind="sendgrid", tenant="grand", options={})
    first_copy, second_copy = optout("sha256:abc", EMAIL), optout("sha256:abc", "other@example.com")
    batch = Inbound(request_key="batch", signals=[first_copy, second_copy, optout("sg_2", "b@example.com")])

    outcome = ledger.record(source, batch, b"")

    assert outcome.status == ACCEPTED
    assert outcome.event_ids == ["sha256:abc", "sg_2"]
    assert outcome.duplicate_event_ids == []
    assert {s.event_id: s.email for s in rows(engine, SignalRow)} == {"sha256:abc": EMAIL, "sg_2": "b@example.com"}
    [receipt] = rows(engine, RequestRecord)
    assert receipt.event_ids == ["sha256:abc", "sg_2"]


def test_a_request_of_one_event_twice_is_accepted_not_duplicate(ledger, engine):
    source = SourceConfig(name="sendgrid", kind="sendgrid", tenant="grand", options={})
    batch = Inbound(request_key="batch", signals=[optout("sha256:abc", EMAIL), optout("sha256:abc", EMAIL)])

    outcome = ledger.record(source, batch, b"")

    assert (outcome.status, outcome.event_ids, outcome.duplicate_event_ids) == (ACCEPTED, ["sha256:abc"], [])
    assert outcome.changes == [{"email": EMAIL, "states": [MARKETING_DECLINE]}]


@pytest.mark.parametrize("sent", [None, datetime(1970, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)],
                         ids=["no time", "epoch", "year 1"])
def test_a_start_read_back_without_a_believable_time_lifts_nothing(ledger, engine, twilio, sent):
    """A backfilled START lifts only a ban older than itself (README Backfill: an older START read
    back never undoes a STOP that arrived later). A time it lacks, or one dropped as implausible
    (before 2000: signals.plausible_time), says nothing about which came first, so the STOP stands."""
    assert ledger.record(twilio, sms("SM-stop"), b"Body").status == ACCEPTED
    start = dataclasses.replace(sms("SM-start", "START").signals[0], occurred_at=sent, read_back=True)
    assert start.occurred_at is None

    outcome = ledger.record(twilio, Inbound(request_key="backfill:1", signals=[start]), b"page")

    assert outcome.status == ACCEPTED and outcome.changes == []
    assert [(r.identity, r.state) for r in rows(engine, Consent)] == [(PHONE, SMS_BAN)]


def test_a_start_read_back_after_the_stop_still_lifts_it(ledger, engine, twilio):
    """The rule above takes nothing from a START whose time is believable and later than the ban."""
    assert ledger.record(twilio, sms("SM-stop"), b"Body").status == ACCEPTED
    later = datetime.fromtimestamp(clock.now(), UTC) + timedelta(minutes=1)
    start = dataclasses.replace(sms("SM-start", "START").signals[0], occurred_at=later, read_back=True)

    outcome = ledger.record(twilio, Inbound(request_key="backfill:1", signals=[start]), b"page")

    assert outcome.status == ACCEPTED and rows(engine, Consent) == []
