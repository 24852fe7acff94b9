"""/console: sign-in (cookie flags, new session, rate limit, CSRF), find a guest, staff opt-out, review, sign-out,
clocks and CRM answers, the printable proof, dead deliveries and replay."""

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

import receiver
from receiver import create_app
from receiver.access.credentials import Passwords
from receiver.access.roles import Role
from receiver.ledger.models import Attempt, Delivery, SignalRow
from receiver.ledger.operators import add_operator, disable_operator
from tests.helpers import make_settings, pin_clock, twilio_signature, twilio_sms, verify_receipt

PASSWORD, PHONE = "correct horse battery staple", "+15551234567"
HTTPS = {"base_url": "https://localhost"}  # the cookie is Secure outside development


def console_app(tmp_path, database_url):
    """An app with an agent and a viewer of the hotel "grand" (the console tests' fixture, shared)."""
    app = create_app(make_settings(tmp_path, database_url))
    engine = app.extensions["receiver"].engine
    add_operator(engine, "desk@grand.example", Role.AGENT, ["grand"], Passwords().hash(PASSWORD), by="tests")
    add_operator(engine, "look@grand.example", Role.VIEWER, ["grand"], Passwords().hash(PASSWORD), by="tests")
    yield app
    engine.dispose()


@pytest.fixture
def app(tmp_path, database_url, settings):
    yield from console_app(tmp_path, database_url)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


def signals(app) -> int:
    with app.extensions["receiver"].engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SignalRow)).scalar()


def sign_in(client, email="desk@grand.example", password=PASSWORD):
    page = client.get("/console/login", **HTTPS)
    return client.post("/console/login", data={"csrf": csrf_of(page.text), "email": email, "password": password},
                       **HTTPS)


def test_pages_need_a_session(app):
    resp = app.test_client().get("/console", **HTTPS)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/console/login")


def test_sign_in_sets_a_new_hardened_session(app):
    client = app.test_client()
    page = client.get("/console/login", **HTTPS)
    before = page.headers["Set-Cookie"]
    assert all(flag in before for flag in ("HttpOnly", "Secure", "SameSite=Lax"))
    resp = client.post("/console/login", data={"csrf": csrf_of(page.text), "email": "Desk@Grand.example",
                                               "password": PASSWORD}, **HTTPS)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/console")
    after = resp.headers["Set-Cookie"]
    assert after.split(";")[0] != before.split(";")[0]  # a new session, not the one held before sign-in
    home = client.get("/console", **HTTPS)
    assert home.status_code == 200 and "desk@grand.example" in home.text
    assert csrf_of(home.text) != csrf_of(page.text)


def test_wrong_password_missing_csrf_and_the_rate_limit(app, monkeypatch):
    # The limit counts per minute: seven slow password checks must not straddle two minutes.
    pin_clock(monkeypatch, time.time() // 60 * 60 + 30)
    client = app.test_client()
    assert sign_in(client, password="wrong password, long enough").status_code == 401
    assert sign_in(client, email="nobody@grand.example").status_code == 401
    page = client.get("/console/login", **HTTPS)
    no_csrf = client.post("/console/login", data={"email": "desk@grand.example", "password": PASSWORD}, **HTTPS)
    assert no_csrf.status_code == 400 and csrf_of(page.text)
    statuses = [sign_in(client, password="wrong password, long enough").status_code for _ in range(5)]
    assert statuses[-1] == 429  # five a minute per email: the right password waits too
    assert sign_in(client).status_code == 429


def test_find_a_guest_record_an_opt_out_and_sign_out(app):
    client = app.test_client()
    sign_in(client)
    page = client.get("/console/opt-outs", **HTTPS)
    form = {"csrf": csrf_of(page.text), "tenant": "grand", "phone": "(555) 123-4567", "states": ["sms_ban"],
            "channel": "phone-call", "note": "guest called"}
    assert client.post("/console/opt-outs", data={**form, "csrf": "forged"}, **HTTPS).status_code == 400
    assert signals(app) == 0
    done = client.post("/console/opt-outs", data=form, **HTTPS)
    assert done.status_code == 200 and 'id="recorded"' in done.text
    bad = client.post("/console/opt-outs", data={**form, "phone": "555-1234"}, **HTTPS)
    assert bad.status_code == 400 and "phone" in bad.text and signals(app) == 1

    guest = client.get("/console", query_string={"tenant": "grand", "phone": PHONE}, **HTTPS)
    assert "sms_ban" in guest.text and "desk@grand.example" in guest.text and "staff" in guest.text

    out = client.post("/console/logout", data={"csrf": csrf_of(guest.text)}, **HTTPS)
    assert out.status_code == 302
    assert client.get("/console", **HTTPS).status_code == 302


def test_a_viewer_may_not_record_and_a_disabled_operator_is_out_at_once(app):
    client = app.test_client()
    sign_in(client, email="look@grand.example")
    assert client.get("/console/opt-outs", **HTTPS).status_code == 403
    assert client.get("/console", **HTTPS).status_code == 200
    disable_operator(app.extensions["receiver"].engine, "look@grand.example", by="tests")
    assert client.get("/console", **HTTPS).status_code == 302


def test_honour_a_review_item(app):
    client = app.test_client()
    params = twilio_sms(sid="SM" + "5" * 32, body="stop by the pool at 5", phone=PHONE)
    client.post("/hooks/twilio", data=params,
                headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    sign_in(client)
    queue = client.get("/console/review", **HTTPS)
    assert "stop by the pool at 5" in queue.text
    item_id = re.search(r'name="id" value="(\d+)"', queue.text)[1]
    decided = client.post("/console/review", data={"csrf": csrf_of(queue.text), "id": item_id,
                                                   "decision": "honour"}, **HTTPS)
    assert decided.status_code == 200 and 'id="decided"' in decided.text
    assert "stop by the pool" not in decided.text
    again = client.post("/console/review", data={"csrf": csrf_of(queue.text), "id": item_id,
                                                 "decision": "dismiss"}, **HTTPS)
    assert again.status_code == 409


def test_the_review_queue_shows_each_items_tcpa_deadline(app, monkeypatch):
    # As in test_staff_review.py: a text on Wednesday 2027-03-03 is to be decided by Wednesday 17 March.
    pin_clock(monkeypatch, datetime(2027, 3, 3, 15, 0, tzinfo=UTC).timestamp())
    client = app.test_client()
    params = twilio_sms(sid="SM" + "5" * 32, body="stop by the pool at 5", phone=PHONE)
    client.post("/hooks/twilio", data=params,
                headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    sign_in(client, email="look@grand.example")
    queue = client.get("/console/review", **HTTPS).text
    assert "Honour by 2027-03-17 23:59 UTC · <strong>pending</strong>" in queue
    pin_clock(monkeypatch, datetime(2027, 3, 18, 9, 0, tzinfo=UTC).timestamp())
    assert "<strong>breached</strong>" in client.get("/console/review", **HTTPS).text
    assert "À honorer avant le 2027-03-17" in client.get("/console/review?lang=fr", **HTTPS).text


def test_the_console_speaks_french(app):
    page = app.test_client().get("/console/login?lang=fr", **HTTPS)
    assert '<html lang="fr">' in page.text and "Se connecter" in page.text


def stop(client, phone=PHONE, sid="SM" + "7" * 32):
    params = twilio_sms(sid=sid, body="STOP", phone=phone)
    assert client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200


def crm_answers(app, status="done"):
    """CRM Text answered the guest's delivery (a 200 after a 503); the other CRM's is left pending."""
    with app.extensions["receiver"].engine.begin() as conn:
        delivery = conn.execute(select(Delivery.id).where(Delivery.crm == "crmtext")).scalar_one()
        conn.execute(update(Delivery).where(Delivery.id == delivery).values(status=status, attempts=2))
        conn.execute(insert(Attempt), [
            {"delivery_id": delivery, "started_at": datetime(2026, 5, 1, 9, 0, tzinfo=UTC),
             "finished_at": datetime(2026, 5, 1, 9, 0, 1, tzinfo=UTC), "outcome": "retry", "http_status": 503,
             "detail": "service unavailable"},
            {"delivery_id": delivery, "started_at": datetime(2026, 5, 1, 9, 5, tzinfo=UTC),
             "finished_at": datetime(2026, 5, 1, 9, 5, 2, tzinfo=UTC),
             "outcome": "ok" if status == "done" else "permanent", "http_status": 200 if status == "done" else 400,
             "detail": None}])
    return delivery


def test_the_guest_page_shows_deadlines_and_the_crms_answers(app):
    client = app.test_client()
    stop(client)
    crm_answers(app)
    sign_in(client, email="look@grand.example")  # a viewer reads them
    guest = client.get("/console", query_string={"tenant": "grand", "phone": PHONE}, **HTTPS).text
    clocks = guest.split('id="clocks"')[1].split("</table>")[0]
    assert "tcpa" in clocks and "sms_ban" in clocks and "pending" in clocks and " UTC" in clocks
    deliveries = guest.split('id="deliveries"')[1].split("</table>")[0]
    assert "crmtext" in deliveries and "2026-05-01 09:05 UTC" in deliveries  # when CRM Text honoured it
    assert "HTTP 503" in deliveries and "service unavailable" in deliveries and "HTTP 200" in deliveries
    assert "experience" in deliveries and "pending" in deliveries
    french = client.get("/console", query_string={"tenant": "grand", "phone": PHONE, "lang": "fr"}, **HTTPS).text
    assert "Échéances" in french and "Réponses du CRM" in french


def test_the_printable_proof_is_the_v1_document_and_its_json_is_signed(app, client):
    stop(client)
    crm_answers(app)
    sign_in(client, email="look@grand.example")
    query = {"tenant": "grand", "phone": PHONE}
    printable = client.get("/console/proof", query_string=query, **HTTPS)
    assert printable.status_code == 200 and "<script" not in printable.text
    assert "/.well-known/receipt-keys" in printable.text and "/console/proof.json?" in printable.text
    signed = client.get("/console/proof.json", query_string=query, **HTTPS)
    verify_receipt(client, signed)  # the same webhook-* headers as /v1/proof, over the exact bytes
    document = signed.get_json()
    [signal] = document["signals"]
    [clock] = document["clocks"]
    for shown in (signal["receipt_id"], signal["chain_sha256"], signal["evidence_sha256"], clock["honour_by"],
                  "HTTP 503", "service unavailable"):
        assert shown in printable.text
    assert "Preuve des désinscriptions" in client.get("/console/proof", query_string={**query, "lang": "fr"},
                                                      **HTTPS).text


def test_an_auditor_checks_the_downloaded_proof_offline_with_the_published_keys(app, client, tmp_path):
    stop(client)
    crm_answers(app)
    sign_in(client, email="look@grand.example")
    query = {"tenant": "grand", "phone": PHONE}
    printable = client.get("/console/proof", query_string=query, **HTTPS).text
    assert "/console/proof.signed.json?" in printable and "check_proof.py" in printable
    download = client.get("/console/proof.signed.json", query_string=query, **HTTPS)
    assert 'filename="proof-grand-signed.json"' in download.headers["Content-Disposition"]
    # What the auditor has: the saved file, the key set, and check_proof.py copied alone (no receiver).
    (tmp_path / "proof-grand-signed.json").write_bytes(download.data)
    (tmp_path / "receipt-keys.json").write_bytes(client.get("/.well-known/receipt-keys").data)
    script = tmp_path / "check_proof.py"
    script.write_text((Path(receiver.__file__).parent / "check_proof.py").read_text())

    def check(*names):
        return subprocess.run([sys.executable, "-I", str(script), *names], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    ok = check("proof-grand-signed.json", "receipt-keys.json")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("signature ok: key ") and "proof of tenant grand" in ok.stdout
    bundle = json.loads(download.data)
    assert json.loads(bundle["body"])["signals"][0]["receipt_id"] in printable  # the document the page shows
    bundle["body"] = bundle["body"].replace('"sms_ban"', '"mail_ban"', 1)  # one state changed after signing
    (tmp_path / "proof-grand-signed.json").write_text(json.dumps(bundle))
    tampered = check("proof-grand-signed.json", "receipt-keys.json")
    assert tampered.returncode == 1 and "does not match" in tampered.stderr


def test_another_tenants_guest_is_not_found(app):
    engine = app.extensions["receiver"].engine
    add_operator(engine, "desk@smsonly.example", Role.VIEWER, ["smsonly"], Passwords().hash(PASSWORD), by="tests")
    client = app.test_client()
    stop(client)
    sign_in(client, email="desk@smsonly.example")
    query = {"tenant": "grand", "phone": PHONE}
    assert client.get("/console/proof", query_string=query, **HTTPS).status_code == 404
    assert client.get("/console/proof.json", query_string=query, **HTTPS).status_code == 404
    assert client.get("/console/proof.signed.json", query_string=query, **HTTPS).status_code == 404


def test_dead_deliveries_are_replayed_by_an_admin_with_csrf_in_a_post(app):
    engine = app.extensions["receiver"].engine
    add_operator(engine, "boss@grand.example", Role.ADMIN, None, Passwords().hash(PASSWORD), by="tests")
    client = app.test_client()
    stop(client)
    delivery = crm_answers(app, status="dead")

    def status():
        with engine.connect() as conn:
            return conn.execute(select(Delivery.status, Delivery.replayed_by).where(Delivery.id == delivery)).one()

    sign_in(client, email="look@grand.example")
    listed = client.get("/console/deliveries", **HTTPS)
    assert listed.status_code == 200 and "HTTP 400" in listed.text and 'name="id"' not in listed.text
    refused = client.post("/console/deliveries", data={"csrf": csrf_of(listed.text), "id": delivery}, **HTTPS)
    assert refused.status_code == 403 and status() == ("dead", None)

    client.post("/console/logout", data={"csrf": csrf_of(listed.text)}, **HTTPS)
    sign_in(client, email="boss@grand.example")
    listed = client.get("/console/deliveries", query_string={"id": delivery}, **HTTPS)  # a GET replays nothing
    assert f'name="id" value="{delivery}"' in listed.text and status() == ("dead", None)
    forged = client.post("/console/deliveries", data={"csrf": "forged", "id": delivery}, **HTTPS)
    assert forged.status_code == 400 and status() == ("dead", None)
    replayed = client.post("/console/deliveries", data={"csrf": csrf_of(listed.text), "id": delivery}, **HTTPS)
    assert replayed.status_code == 200 and 'id="replayed"' in replayed.text
    assert status() == ("pending", "boss@grand.example")
    assert f'name="id" value="{delivery}"' not in replayed.text  # no longer dead
    again = client.post("/console/deliveries", data={"csrf": csrf_of(listed.text), "id": delivery}, **HTTPS)
    assert again.status_code == 409
    missing = client.post("/console/deliveries", data={"csrf": csrf_of(listed.text), "id": 999999}, **HTTPS)
    assert missing.status_code == 404
    assert "Envois abandonnés" in client.get("/console/deliveries?lang=fr", **HTTPS).text

