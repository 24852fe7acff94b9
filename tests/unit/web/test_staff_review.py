"""POST /v1/opt-outs (staff opt-outs, delivered to the CRMs by the worker) and the review queue."""

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from receiver import create_app
from receiver.access.roles import Role
from receiver.errors import Conflict
from receiver.ledger import review
from receiver.ledger.models import ReviewDecision, SignalRow
from receiver.ledger.operators import add_operator, issue_token
from receiver.worker import Worker
from tests.helpers import (
    config_toml,
    make_settings,
    pin_clock,
    twilio_signature,
    twilio_sms,
    verify_receipt,
)

PHONE, TEN = "+15551234567", "5551234567"


@pytest.fixture
def app(tmp_path, database_url, settings, sandbox):
    app = create_app(make_settings(tmp_path, database_url, toml=config_toml(sandbox.url)))
    yield app
    app.extensions["receiver"].engine.dispose()


@pytest.fixture
def engine_of(app):
    return app.extensions["receiver"].engine


@pytest.fixture
def agent(engine_of):
    add_operator(engine_of, "desk@grand.example", Role.AGENT, ["grand"], None, by="tests")
    return {"Authorization": f"Bearer {issue_token(engine_of, 'desk@grand.example', by='tests')}"}


def signals(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SignalRow)).scalar()


def sms(client, body, sid="SM" + "7" * 32, phone=PHONE):
    params = twilio_sms(sid=sid, body=body, phone=phone)
    resp = client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    assert resp.status_code == 200


def test_a_phone_call_opt_out_reaches_crm_text(app, engine_of, agent, sandbox):
    client = app.test_client()
    resp = client.post("/v1/opt-outs", headers=agent, json={
        "tenant": "grand", "phone": "(555) 123-4567", "states": ["sms_ban"], "channel": "phone-call",
        "note": "guest called reception", "occurred_at": "2025-11-25T09:12:00Z"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert (body["status"], body["source"], body["changes"]) == ("accepted", "staff", [
        {"phone": PHONE, "states": ["sms_ban"]}])
    verify_receipt(client, resp)
    with engine_of.connect() as conn:
        row = conn.execute(select(SignalRow.__table__)).one()
    assert row.detail == {"channel": "phone-call", "operator": "desk@grand.example",
                          "note": "guest called reception"}
    assert row.occurred_at.isoformat() == "2025-11-25T09:12:00+00:00"

    settings = app.extensions["receiver"].settings
    assert Worker(settings, engine_of).run_once() == 2
    [call] = sandbox.calls("crmtext")
    assert (call["method"], call["phone_number"]) == ("optoutcustomer", TEN)


def test_a_staff_entry_links_email_and_phone_only_when_both_are_given(app, engine_of, agent):
    client = app.test_client()
    resp = client.post("/v1/opt-outs", headers=agent, json={
        "tenant": "grand", "phone": PHONE, "email": "Guest@Example.com", "channel": "front-desk",
        "states": ["mail_ban", "marketing_decline", "sms_ban", "marketing_decline_sms"]})
    assert resp.status_code == 201
    assert resp.get_json()["changes"] == [
        {"phone": PHONE, "states": ["sms_ban", "marketing_decline_sms"]},
        {"email": "guest@example.com", "states": ["mail_ban", "marketing_decline"]}]


@pytest.mark.parametrize("body, field", [
    ({"channel": "fax"}, "channel"),
    ({"channel": None}, "channel"),
    ({"states": ["sms_bam"]}, "states[0]"),
    ({"states": []}, "states"),
    ({"states": "sms_ban"}, "states"),
    ({"phone": None}, "email"),
    ({"phone": "555-1234"}, "phone"),  # a 7-digit local number is not a full one: never guessed
    ({"phone": None, "email": "guest@example.com"}, "phone"),  # sms_ban needs a phone
    ({"states": ["mail_ban"]}, "email"),  # an email state needs an email
    ({"email": "not-an-email"}, "email"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"occurred_at": "2026-11-25T09:12:00"}, "occurred_at"),
    ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),  # would start its clocks in the future
    ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),  # before year 1 in UTC: was a 500
    ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at"),
    ({"tenant": "nowhere"}, "tenant"),
    ({"colour": "red"}, "colour"),
    ({"note": "x" * 2001}, "note"),
])
def test_bad_staff_opt_outs_name_the_field_and_store_nothing(app, engine_of, agent, body, field):
    entry = {"tenant": "grand", "phone": PHONE, "states": ["sms_ban"], "channel": "phone-call", **body}
    resp = app.test_client().post("/v1/opt-outs", headers=agent, json=entry)
    assert resp.status_code in (400, 404) and resp.get_json()["field"] == field, resp.get_json()
    assert signals(engine_of) == 0


def test_a_viewer_may_not_record_an_opt_out(app, engine_of):
    add_operator(engine_of, "viewer@grand.example", Role.VIEWER, ["grand"], None, by="tests")
    headers = {"Authorization": f"Bearer {issue_token(engine_of, 'viewer@grand.example', by='tests')}"}
    resp = app.test_client().post("/v1/opt-outs", headers=headers, json={
        "tenant": "grand", "phone": PHONE, "states": ["sms_ban"], "channel": "phone-call"})
    assert resp.status_code == 403 and signals(engine_of) == 0


def test_honour_bans_sms_cites_the_original_and_reaches_crm_text(app, engine_of, agent, sandbox):
    client = app.test_client()
    sms(client, "stop by the pool at 5")
    sms(client, "STOP", sid="SM" + "8" * 32, phone="+15550000001")  # an opt-out: not for review
    [item] = client.get("/v1/review", headers=agent).get_json()["items"]
    assert (item["source"], item["text"], item["phone"], item["decision"]) == ("twilio", "stop by the pool at 5", PHONE, None)

    resp = client.post(f"/v1/review/{item['id']}", headers=agent, json={"decision": "honour", "note": "called"})
    assert resp.status_code == 200
    answer = resp.get_json()
    assert (answer["decision"], answer["operator"]) == ("honour", "desk@grand.example")
    assert answer["changes"] == [{"phone": PHONE, "states": ["sms_ban"]}]
    assert resp.headers["webhook-id"] == answer["receipt_id"]
    verify_receipt(client, resp)
    with engine_of.connect() as conn:
        honoured = conn.execute(select(SignalRow.__table__).where(SignalRow.source == "review")).one()
    assert honoured.detail["original_evidence_sha256"] == item["evidence_sha256"]
    assert honoured.detail["operator"] == "desk@grand.example" and honoured.receipt_id == answer["receipt_id"]

    again = client.post(f"/v1/review/{item['id']}", headers=agent, json={"decision": "dismiss"})
    assert again.status_code == 409
    assert client.get("/v1/review", headers=agent).get_json()["items"] == []
    [decided] = client.get("/v1/review?status=decided", headers=agent).get_json()["items"]
    assert (decided["decision"], decided["operator"]) == ("honour", "desk@grand.example")

    settings = app.extensions["receiver"].settings
    Worker(settings, engine_of).run_once()
    # Lanes call CRM Text up to four at once: the order of the two calls is not fixed.
    assert sorted(c["phone_number"] for c in sandbox.calls("crmtext")) == sorted(["5550000001", TEN])


def test_dismiss_records_the_decision_only(app, engine_of, agent):
    client = app.test_client()
    sms(client, "stop by the pool at 5")
    [item] = client.get("/v1/review", headers=agent).get_json()["items"]
    before = signals(engine_of)
    resp = client.post(f"/v1/review/{item['id']}", headers=agent, json={"decision": "dismiss", "note": "pool"})
    assert resp.status_code == 200 and resp.get_json()["changes"] == []
    verify_receipt(client, resp)
    assert signals(engine_of) == before
    assert client.get(f"/v1/consent?tenant=grand&phone={PHONE}", headers=agent).get_json()["states"] == {}
    assert client.post(f"/v1/review/{item['id']}", headers=agent, json={"decision": "honour"}).status_code == 409
    assert signals(engine_of) == before


@pytest.mark.parametrize("path, body, status, field", [
    ("/v1/review/1", {"decision": "maybe"}, 400, "decision"),
    ("/v1/review/1", {"decision": "honour", "extra": 1}, 400, "extra"),
    ("/v1/review/999", {"decision": "honour"}, 404, None),
    ("/v1/review?status=closed", None, 400, "status"),
])
def test_review_errors(app, agent, path, body, status, field):
    client = app.test_client()
    sms(client, "stop by the pool at 5")
    resp = client.get(path, headers=agent) if body is None else client.post(path, headers=agent, json=body)
    assert resp.status_code == status and resp.get_json().get("field") == field


def test_two_decisions_at_once_one_wins(app, engine_of, agent):
    """The decision's primary key, not a read-then-write, keeps the second one out."""
    client = app.test_client()
    sms(client, "stop by the pool at 5")
    [item] = client.get("/v1/review", headers=agent).get_json()["items"]
    results = []

    def decide():
        try:
            review.dismiss(engine_of, item["id"], "grand", None, "desk@grand.example", "rcpt_x")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    with engine_of.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ReviewDecision)).scalar() == 1


def test_a_review_item_carries_its_tcpa_clock_until_decided(app, engine_of, agent, monkeypatch):
    # Wednesday 2027-03-03 15:00 UTC: ten US business days end with Wednesday 17 March (UTC calendar).
    pin_clock(monkeypatch, datetime(2027, 3, 3, 15, 0, tzinfo=UTC).timestamp())
    client = app.test_client()
    sms(client, "stop by the pool at 5")

    [item] = client.get("/v1/review", headers=agent).get_json()["items"]
    assert item["tcpa_clock"] == {"started_at": "2027-03-03T15:00:00Z", "honour_by": "2027-03-17T23:59:59Z",
                                  "decided_at": None, "status": "pending"}

    pin_clock(monkeypatch, datetime(2027, 3, 18, 9, 0, tzinfo=UTC).timestamp())
    [late] = client.get("/v1/review", headers=agent).get_json()["items"]
    assert late["tcpa_clock"]["status"] == "breached"
    client.post(f"/v1/review/{item['id']}", headers=agent, json={"decision": "dismiss"})
    [decided] = client.get("/v1/review?status=decided", headers=agent).get_json()["items"]
    assert decided["tcpa_clock"]["status"] == "breached"  # decided after its deadline
