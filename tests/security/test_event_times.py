"""A sender's event time that cannot be one (year 1 with an offset, year 9999, ahead of now, no zone)
never turns an opt-out into a 500 the sender retries for days, and never starts its clocks then:
the opt-out is recorded with the receipt's time (contract: a clock starts at the signal's
``occurred_at``, else the receipt's time).

Payloads: the contract's partner event, Postmark's SubscriptionChange webhook as its documentation
shows it, and inbound-formats.md Appendix A's CRM Text callback, each with only its time changed.
"""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from receiver import create_app
from receiver.ledger.models import SignalRow
from receiver.signals import plausible_time
from tests.helpers import CRMTEXT_TOKEN, config_toml, make_settings
from tests.security.test_identifiers import PARTNER_SECRET, POSTMARK_AUTH, SOURCES_TOML

IMPOSSIBLE = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1970-01-01T00:00:00Z"]


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, config_toml(extra=SOURCES_TOML)))
    yield app
    app.extensions["receiver"].engine.dispose()


def recorded_time(engine, event_id: str):
    with engine.connect() as conn:
        return conn.execute(select(SignalRow.occurred_at).where(SignalRow.event_id == event_id)).one().occurred_at


def partner(client, event_id: str, at: str):
    body = json.dumps({"id": event_id, "type": "consent.opt_out", "occurred_at": at,
                       "customer": {"phone": "+13105550100"}, "states": ["sms_ban"]})
    now = datetime.now(UTC)
    headers = {"webhook-id": "msg_" + event_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(PARTNER_SECRET).sign("msg_" + event_id, now, body)}
    return client.post("/hooks/booking-engine", data=body, headers=headers, content_type="application/json")


@pytest.mark.parametrize("at", [*IMPOSSIBLE, (datetime.now(UTC) + timedelta(days=30)).isoformat()])
def test_a_partner_event_at_an_impossible_time_is_recorded_at_its_receipt(client, engine, at):
    answer = partner(client, "evt_time", at)

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["status"] == "accepted"
    assert recorded_time(engine, "evt_time") is None


@pytest.mark.parametrize("at", [*IMPOSSIBLE, "2026-11-22T10:00:00"])
def test_a_postmark_subscription_change_at_an_impossible_or_zoneless_time_is_kept(client, engine, at):
    record = {"RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
              "ServerID": 23, "MessageStream": "outbound", "ChangedAt": at, "Recipient": "bounced-address@wildbit.com",
              "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "HardBounce", "Tag": "my-tag",
              "Metadata": {}}
    auth = "Basic " + base64.b64encode(POSTMARK_AUTH.encode()).decode()

    answer = client.post("/hooks/postmark", json=record, headers={"Authorization": auth})

    assert answer.status_code == 200, answer.get_data(as_text=True)
    with engine.connect() as conn:
        times = conn.execute(select(SignalRow.occurred_at)).scalars().all()
    zoneless = datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert [t and t.replace(tzinfo=UTC) for t in times] == [zoneless if at == "2026-11-22T10:00:00" else None]


def test_a_crm_text_callback_past_the_calendars_end_is_kept(client, engine):
    answer = client.post(f"/hooks/crmtext?token={CRMTEXT_TOKEN}", data={
        "custID": "112233", "message": "STOP", "keyword": "GRAND", "mobileNum": "3105550100",
        "optInStatus": "Opt-out", "timeStamp": "9999-12-31 23:59:59", "msgID": "123456789"})

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert recorded_time(engine, "123456789") is None


def test_plausible_time():
    now = datetime.now(UTC)
    assert plausible_time(None) is None
    assert plausible_time(datetime(2026, 11, 22, 10)) == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert plausible_time(now - timedelta(days=3)) == now - timedelta(days=3)
    assert plausible_time(now + timedelta(minutes=4)) is not None  # clock drift
    assert plausible_time(now + timedelta(minutes=6)) is None
    assert plausible_time(datetime(1999, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert plausible_time(datetime.fromisoformat("0001-01-01T00:00:00+05:00")) is None
    assert plausible_time(datetime.fromisoformat("9999-12-31T23:59:59-05:00")) is None
