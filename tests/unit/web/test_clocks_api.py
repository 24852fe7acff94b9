"""GET /v1/clocks, clocks on /v1/events items, GET /v1/chain (the signed head)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from receiver import create_app
from receiver.compliance.chain import verify
from receiver.ledger import chain
from receiver.ledger.models import SignalRow
from tests.helpers import make_settings, pin_clock, twilio_signature, twilio_sms, verify_receipt

ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def stop(client, phone: str, sid: str) -> None:
    params = twilio_sms(sid=sid, phone=phone)
    assert client.post("/hooks/twilio", data=params, headers={
        "X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200


def stops_on(client, monkeypatch, days) -> None:
    for n, day in enumerate(days):
        pin_clock(monkeypatch, datetime(2027, 3, day, 12, 0, tzinfo=UTC).timestamp())
        stop(client, f"+1555123000{n}", "SM" + str(n) * 32)


def test_clocks_are_listed_oldest_deadline_first_page_by_page(client, monkeypatch):
    stops_on(client, monkeypatch, [10, 3, 5])

    first = client.get("/v1/clocks?tenant=grand&limit=2", headers=ADMIN).get_json()
    second = client.get(f"/v1/clocks?tenant=grand&limit=2&cursor={first['next_cursor']}", headers=ADMIN).get_json()

    items = first["items"] + second["items"]
    assert [i["started_at"][:10] for i in items] == ["2027-03-03", "2027-03-05", "2027-03-10"]
    assert second["next_cursor"] is None
    assert {(i["regime"], i["status"], i["honoured_at"]) for i in items} == {("tcpa", "pending", None)}
    assert items[0]["honour_by"] == "2027-03-17T23:59:59Z" and items[0]["states"] == ["sms_ban"]


def test_clocks_filter_by_status_and_refuse_bad_input(client, monkeypatch):
    stops_on(client, monkeypatch, [3])

    assert client.get("/v1/clocks?tenant=grand&status=met", headers=ADMIN).get_json()["items"] == []
    assert len(client.get("/v1/clocks?tenant=grand&status=pending", headers=ADMIN).get_json()["items"]) == 1
    for query, field in (("tenant=nobody", "tenant"), ("tenant=grand&status=late", "status"),
                         ("tenant=grand&cursor=xyz", "cursor"), ("", "tenant")):
        answer = client.get(f"/v1/clocks?{query}", headers=ADMIN)
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(field), query


def test_events_carry_their_clocks(client, monkeypatch):
    stops_on(client, monkeypatch, [3])

    [item] = client.get("/v1/events", headers=ADMIN).get_json()["items"]

    [clock] = item["clocks"]
    assert (clock["signal_id"], clock["regime"], clock["status"]) == (item["id"], "tcpa", "pending")


def test_the_chain_head_is_signed_and_matches_the_last_row(app, client, monkeypatch):
    stops_on(client, monkeypatch, [3, 4])

    answer = client.get("/v1/chain?tenant=grand", headers=ADMIN)

    assert answer.status_code == 200
    verify_receipt(client, answer)
    engine = app.extensions["receiver"].engine
    with engine.connect() as conn:
        last = conn.execute(select(SignalRow.id, SignalRow.chain_sha256).order_by(SignalRow.id.desc())).first()
    assert (answer.get_json()["signal_id"], answer.get_json()["chain_sha256"]) == tuple(last)
    assert verify(chain.stream(engine)) is None
    empty = client.get("/v1/chain?tenant=smsonly", headers=ADMIN).get_json()
    assert (empty["signal_id"], empty["chain_sha256"]) == (None, None)
