"""POST /v1/erasure: no trace of the address in any table, the opt-out still holds and is still found."""

import pytest
from sqlalchemy import inspect, text

from receiver import create_app
from receiver.compliance.chain import verify
from receiver.ledger import chain
from tests.helpers import make_settings, twilio_signature, twilio_sms

ADMIN = {"Authorization": "Bearer admin-token"}
PHONE, EMAIL = "+15551234567", "guest@example.com"


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def sms(client, body: str, sid: str) -> None:
    params = twilio_sms(sid=sid, phone=PHONE, body=body)
    assert client.post("/hooks/twilio", data=params, headers={
        "X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200


def every_value(engine) -> str:
    """Every text of every row of every table, as one string."""
    seen = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                seen.extend(str(value) for value in row)
    return "\n".join(seen)


def test_an_erased_phone_leaves_no_trace_and_its_opt_out_holds(app, client):
    sms(client, "STOP", "SM" + "1" * 32)
    assert client.post("/forms/unsubscribe", json={"tenant": "grand", "email": EMAIL, "phone": PHONE,
                                                   "email_marketing": True}).status_code == 200
    engine = app.extensions["receiver"].engine
    assert "5551234567" in every_value(engine)

    answer = client.post("/v1/erasure", json={"tenant": "grand", "phone": PHONE}, headers=ADMIN)

    assert answer.status_code == 200 and answer.get_json()["rows_changed"] > 0
    assert "5551234567" not in every_value(engine)  # E.164 and CRM Text's ten digits alike
    consent = client.get(f"/v1/consent?tenant=grand&phone={PHONE}", headers=ADMIN).get_json()
    assert "sms_ban" in consent["states"]
    sms(client, "START", "SM" + "2" * 32)  # a later opt-in of the raw number cannot lift it
    assert "sms_ban" in client.get(f"/v1/consent?tenant=grand&phone={PHONE}", headers=ADMIN).get_json()["states"]
    assert verify(chain.stream(engine), app.extensions["receiver"].settings.identity_key) is None
    deliveries = client.get("/v1/deliveries?tenant=grand", headers=ADMIN).get_json()["items"]
    unsent = [d for d in deliveries if d["identity"].startswith("erased:")]
    assert unsent and {d["status"] for d in unsent} == {"dead"}  # never sent: its clock stays open
    kinds = [e["kind"] for e in client.get("/v1/events?tenant=grand", headers=ADMIN).get_json()["items"]]
    assert "erasure" in kinds
    proof = client.get(f"/v1/proof?tenant=grand&phone={PHONE}", headers=ADMIN).get_json()
    assert "sms_ban" in proof["states"] and len(proof["signals"]) >= 2


def test_an_erased_email_is_still_opted_out(app, client):
    assert client.post("/forms/unsubscribe", json={"tenant": "grand", "email": EMAIL,
                                                   "email_marketing": True}).status_code == 200

    assert client.post("/v1/erasure", json={"tenant": "grand", "email": "Guest@Example.com"},
                       headers=ADMIN).status_code == 200

    assert "guest@example.com" not in every_value(app.extensions["receiver"].engine).lower()
    states = client.get(f"/v1/consent?tenant=grand&email={EMAIL}", headers=ADMIN).get_json()["states"]
    assert "marketing_decline" in states


@pytest.mark.parametrize(("body", "field"), [
    ({"tenant": "grand"}, "email"), ({"tenant": "grand", "email": EMAIL, "phone": PHONE}, "email"),
    ({"tenant": "nobody", "email": EMAIL}, "tenant"), ({"tenant": "grand", "phone": "call me"}, "phone")])
def test_bad_erasure_requests_name_the_field(client, body, field):
    answer = client.post("/v1/erasure", json=body, headers=ADMIN)

    assert answer.status_code == 400 and answer.get_json()["error"].startswith(field)
