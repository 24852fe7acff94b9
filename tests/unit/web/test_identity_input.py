"""Phones and emails at every door: one normalizer, so incomplete numbers, vanity letters and
invisible characters are refused alike (400 naming the field), and emails compare case-insensitively."""

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from receiver import create_app
from receiver.ledger.models import Consent, Delivery, SignalRow
from receiver.links import Link
from tests.helpers import CRMTEXT_TOKEN, config_toml, make_settings, twilio_signature, twilio_sms

ADMIN = {"Authorization": "Bearer admin-token"}
PARTNER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # inbound-formats.md, Appendix A
PARTNER = f"""
[sources.booking-engine]
kind = "standard-webhooks"
tenant = "grand"
secret = "{PARTNER_SECRET}"
"""


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, config_toml(extra=PARTNER),
                                   RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def stored(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(table)).scalar()
                     for table in (SignalRow, Consent, Delivery))


def form(client, **customer):
    return client.post("/forms/unsubscribe", json={"tenant": "grand", **customer})


def link(client, **customer):
    return client.post("/v1/links", json={"tenant": "grand", "email": "guest@example.com", **customer}, headers=ADMIN)


def consent(client, **customer):
    return client.get("/v1/consent", query_string={"tenant": "grand", **customer}, headers=ADMIN)


def check(client, **customer):
    return client.post("/v1/consent/check", json={"tenant": "grand", "recipients": [customer]}, headers=ADMIN)


def partner(client, **customer):
    # The contract's partner event schema, signed by the standardwebhooks library itself.
    body = json.dumps({"id": "evt_1", "type": "consent.opt_out", "occurred_at": "2026-11-22T10:15:00Z",
                       "customer": customer, "states": ["marketing_decline"]})
    now = datetime.now(UTC)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(PARTNER_SECRET).sign("msg_1", now, body)}
    return client.post("/hooks/booking-engine", data=body, headers=headers, content_type="application/json")


def twilio(client, phone):
    params = twilio_sms(phone=phone)
    return client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})


def crmtext(client, phone):
    # inbound-formats.md, Appendix A's CRM Text callback with another mobileNum.
    return client.post(f"/hooks/crmtext?token={CRMTEXT_TOKEN}", data={
        "custID": "112233", "message": "STOP", "keyword": "GRAND", "mobileNum": phone, "optInStatus": "Opt-out",
        "timeStamp": "2026-11-22 07:15:02", "msgID": "123456789"})


PHONE_DOORS = [
    (form, "phone", "phone"), (link, "phone", "phone"), (consent, "phone", "phone"),
    (check, "phone", "recipients[0].phone"), (partner, "phone", "customer.phone"),
]


@pytest.mark.parametrize("door, key, field", PHONE_DOORS)
@pytest.mark.parametrize("phone", ["555-1234", "+15551234", "1-800-FLOWERS", "+1 555 123\u200b4567"])
def test_incomplete_vanity_or_invisible_phone_is_refused_naming_the_field(client, engine, door, key, field, phone):
    resp = door(client, **{key: phone})

    assert resp.status_code == 400
    assert resp.get_json()["field"] == field and field in resp.get_json()["error"]
    assert stored(engine) == (0, 0, 0)


@pytest.mark.parametrize("door, phone, field", [
    (twilio, "555-1234", "From"), (twilio, "+1800FLOWERS", "From"), (crmtext, "5551234", "mobileNum"),
])
def test_sms_senders_numbers_go_through_the_same_normalizer(client, engine, door, phone, field):
    resp = door(client, phone)

    assert resp.status_code == 400 and resp.get_json()["field"] == field
    assert stored(engine) == (0, 0, 0)


@pytest.mark.parametrize("door, key, field", [
    (form, "email", "email"), (link, "email", "email"), (consent, "email", "email"),
    (check, "email", "recipients[0].email"), (partner, "email", "customer.email"),
])
@pytest.mark.parametrize("email", ["gu\u200best@example.com", "guest\u202e@example.com", "\ufeffguest@example.com"])
def test_invisible_characters_in_an_email_are_refused_naming_the_field(client, engine, door, key, field, email):
    resp = door(client, **{key: email})

    assert resp.status_code == 400 and resp.get_json()["field"] == field
    assert stored(engine) == (0, 0, 0)


def test_a_555_number_with_its_area_code_is_still_accepted(client, engine):
    assert form(client, phone="(555) 123-4567").status_code == 200
    assert "marketing_decline_sms" in consent(client, phone="555-123-4567").get_json()["states"]


def test_an_opt_out_holds_whichever_case_the_address_is_typed_in(client, engine):
    assert partner(client, email="Guest@Example.com").status_code == 200

    [answer] = check(client, email="guest@example.com").get_json()["recipients"]
    assert answer["marketing_email"] is False
    assert consent(client, email="GUEST@EXAMPLE.COM").get_json()["states"].keys() == {"marketing_decline"}
    assert form(client, email="guest@EXAMPLE.com").status_code == 200
    with engine.connect() as conn:
        assert set(conn.execute(select(Consent.identity)).scalars()) == {"guest@example.com"}


def test_a_link_signed_before_the_case_rule_records_the_lower_cased_address(app, client, engine):
    token = app.extensions["receiver"].links.token(Link(tenant="grand", email="Guest@Example.com"))

    resp = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})

    assert resp.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(Consent.identity, Consent.state)).all() == [("guest@example.com",
                                                                                "marketing_decline")]
