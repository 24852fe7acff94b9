"""GET /v1/proof: one guest's record, signed; an unknown guest is 200 with empty lists."""

import pytest
from sqlalchemy import update

from receiver import check_proof, create_app
from receiver.ledger.models import Delivery
from tests.helpers import make_settings, twilio_signature, twilio_sms, verify_receipt

ADMIN = {"Authorization": "Bearer admin-token"}
PHONE = "+15551234567"


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def stop(client, phone: str, sid: str, body: str = "STOP") -> None:
    params = twilio_sms(sid=sid, phone=phone, body=body)
    assert client.post("/hooks/twilio", data=params, headers={
        "X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200


def test_a_guests_proof_holds_their_signals_deliveries_clocks_and_chain_and_is_signed(app, client):
    stop(client, PHONE, "SM" + "1" * 32)
    stop(client, "+15559990000", "SM" + "2" * 32)  # someone else: not in this proof
    with app.extensions["receiver"].engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.identity == PHONE, Delivery.crm == "crmtext").values(
            status="done", attempts=1))

    answer = client.get(f"/v1/proof?tenant=grand&phone={PHONE}", headers=ADMIN)

    assert answer.status_code == 200
    verify_receipt(client, answer)
    proof = answer.get_json()
    assert list(proof["states"]) == ["sms_ban"]
    [signal] = proof["signals"]
    assert (signal["event_id"], signal["keyword"], signal["receipt_status"]) == ("SM" + "1" * 32, "stop", "accepted")
    assert len(signal["chain_sha256"]) == 64 and len(signal["phone_hash"]) == 64
    assert {(d["crm"], d["status"]) for d in proof["deliveries"]} == {("crmtext", "done"), ("experience", "pending")}
    [clock] = proof["clocks"]
    assert (clock["regime"], clock["signal_id"]) == ("tcpa", signal["id"])
    assert proof["chain_head"]["signal_id"] == signal["id"] + 1  # the other guest's STOP came after


def test_an_unknown_guest_has_an_empty_proof(client):
    answer = client.get("/v1/proof?tenant=grand&email=nobody@example.com", headers=ADMIN)

    assert answer.status_code == 200
    proof = answer.get_json()
    assert (proof["states"], proof["signals"], proof["deliveries"], proof["clocks"]) == ({}, [], [], [])
    # The other look-ups of a guest never seen answer the same way: 200, nothing in them.
    events = client.get("/v1/events?tenant=grand&phone=%2B15550009999", headers=ADMIN)
    assert events.status_code == 200 and events.get_json()["items"] == []
    consent = client.get("/v1/consent?tenant=grand&phone=%2B15550009999", headers=ADMIN)
    assert consent.status_code == 200 and consent.get_json()["states"] == {}


def test_a_proof_needs_a_guest_and_a_known_tenant(client):
    assert client.get("/v1/proof?tenant=grand", headers=ADMIN).get_json()["error"].startswith("email")
    assert client.get("/v1/proof?tenant=nobody&phone=%2B15551234567", headers=ADMIN).status_code == 400


def test_a_v1_proof_saved_with_its_headers_is_checked_offline(client, tmp_path):
    stop(client, PHONE, "SM" + "1" * 32)
    answer = client.get(f"/v1/proof?tenant=grand&phone={PHONE}", headers=ADMIN)
    # As `curl -D proof.headers -o proof.json` saves them.
    (tmp_path / "proof.json").write_bytes(answer.data)
    (tmp_path / "proof.headers").write_text("HTTP/1.1 200 OK\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in answer.headers.items()))
    (tmp_path / "keys.json").write_bytes(client.get("/.well-known/receipt-keys").data)
    paths = [str(tmp_path / "proof.json"), str(tmp_path / "keys.json"), "--headers", str(tmp_path / "proof.headers")]

    assert check_proof.main(paths) == 0
    (tmp_path / "proof.json").write_bytes(answer.data.replace(b"sms_ban", b"mail_ban"))
    assert check_proof.main(paths) == 1
    assert check_proof.main(paths[:2]) == 1  # the body alone: its signature was in the headers
