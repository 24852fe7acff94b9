"""Compliance through real processes: a STOP's clock met once the worker delivered it, `receiver verify`
naming a row tampered in the database, an erasure leaving no trace of the number while the opt-out holds,
and a CRM outage breaching a clock and raising its alert once at the operators' endpoint.

Its own stack: tampering breaks the chain, which no other module's test should meet; [alerts] is its own."""

import base64
import json
import secrets
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from receiver.ledger.models import SignalRow
from receiver.worker import CLOCK_PASS_SECONDS
from tests.e2e.stack import ADMIN_TOKEN, BIN, ROOT, free_port, wait_until
from tests.e2e.test_sms import new_phone

OWN_STACK = True
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ALERTS_SECRET = "whsec_" + base64.b64encode(b"e2e-alerts-secret-of-32-bytes!!!").decode()
OPS_PORT = free_port()
EXTRA_CONFIG = f"""
[alerts]
url = "http://127.0.0.1:{OPS_PORT}/hooks/receiver"
secret = "{ALERTS_SECRET}"
"""


@pytest.fixture(scope="module")
def ops():
    """The operators' alert endpoint the worker POSTs to: every (headers, body) it got."""
    got = []

    @Request.application
    def app(request):
        got.append((dict(request.headers), request.get_data()))
        return Response("", 204)

    server = make_server("127.0.0.1", OPS_PORT, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()
    server.server_close()


def verify(stack) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "receiver"), "verify", "--tenant", "grand"], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=120)


def stop_delivered(stack) -> str:
    phone = new_phone()
    assert stack.sms("STOP", phone, "SM" + secrets.token_hex(16)).status_code == 200
    stack.settled(phone)
    return phone


def event_of(stack, phone: str) -> dict:
    resp = stack.http.get(f"{stack.web_url}/v1/events", params={"phone": phone}, headers=ADMIN, timeout=15)
    [event] = resp.json()["items"]
    return event


def test_a_stops_clock_is_met_once_both_crms_have_it(stack):
    phone = stop_delivered(stack)

    def met():
        return [c for c in event_of(stack, phone)["clocks"] if c["status"] == "met"]
    [clock] = wait_until(met, timeout=30, message="the STOP's TCPA clock met")
    assert clock["regime"] == "tcpa" and clock["honoured_at"] <= clock["honour_by"]
    listed = stack.http.get(f"{stack.web_url}/v1/clocks", params={"tenant": "grand", "status": "met"},
                            headers=ADMIN, timeout=15).json()["items"]
    assert any(c["honour_by"] == clock["honour_by"] and c["regime"] == "tcpa" for c in listed)


def test_verify_names_a_row_tampered_in_the_database(stack):
    stop_delivered(stack)
    phone = stop_delivered(stack)
    ok = verify(stack)
    assert ok.returncode == 0 and ok.stdout.startswith("chain ok:"), ok.stdout + ok.stderr

    signal_id = event_of(stack, phone)["id"]
    with stack.engine.begin() as conn:  # someone back-dates the opt-out in the database
        conn.execute(update(SignalRow).where(SignalRow.id == signal_id).values(
            occurred_at=datetime(2020, 1, 1, tzinfo=UTC)))

    bad = verify(stack)
    assert bad.returncode == 1
    assert f"row {signal_id} " in bad.stderr and "\n" not in bad.stderr.strip()


def test_erasure_leaves_no_trace_of_the_number_and_the_opt_out_holds(stack):
    phone = stop_delivered(stack)

    resp = stack.http.post(f"{stack.web_url}/v1/erasure", json={"tenant": "grand", "phone": phone},
                           headers=ADMIN, timeout=15)
    assert resp.status_code == 200 and resp.json()["rows_changed"] > 0, resp.text

    digits = phone[2:]
    for table in ("signals", "consent", "deliveries", "attempts", "receipts", "identity_links"):
        rows = stack.query(f"SELECT * FROM {table}")
        assert not [row for row in rows if digits in repr(tuple(row))], table
    consent = stack.http.get(f"{stack.web_url}/v1/consent", params={"tenant": "grand", "phone": phone},
                             headers=ADMIN, timeout=15).json()
    assert "sms_ban" in consent["states"]


def test_a_crm_outage_breaches_a_clock_and_raises_its_alert_once(stack, ops):
    # A letter the front desk received 30 days ago, entered now: its 10 business days are already over,
    # and both CRMs are down, so nothing can honour it. The worker's clock pass finds it breached.
    stack.fault("experience", "500", count=1000)
    stack.fault("crmtext", "500", count=1000)
    try:
        phone = new_phone()
        resp = stack.http.post(f"{stack.web_url}/v1/opt-outs", headers=ADMIN, timeout=15, json={
            "tenant": "grand", "phone": phone, "states": ["sms_ban"], "channel": "letter",
            "occurred_at": (datetime.now(UTC) - timedelta(days=30)).isoformat()})
        assert resp.status_code == 201, resp.text
        signal_id = event_of(stack, phone)["id"]
        deliveries = {row.id for row in stack.query("SELECT id FROM deliveries WHERE signal_id = :s AND crm != 'alerts'",
                                                     s=signal_id)}
        assert len(deliveries) == 2

        def alerts(kind: str) -> list[dict]:
            found = []
            for headers, body in list(ops):
                Webhook(ALERTS_SECRET).verify(body, {k.lower(): v for k, v in headers.items()})  # signed right
                event = json.loads(body)
                if event["type"] == kind and (event["data"].get("signal_id") == signal_id
                                              or event["data"].get("delivery_id") in deliveries):
                    found.append({**event, "webhook-id": headers.get("Webhook-Id") or headers.get("webhook-id")})
            return found

        [breached] = wait_until(lambda: alerts("clock.breached"), timeout=60, message="clock.breached at ops")
        assert breached["tenant"] == "grand" and breached["data"]["regime"] == "tcpa"
        dead = wait_until(lambda: len(found := alerts("delivery.dead")) == 2 and found, timeout=60,
                          message="both deliveries dead")
        assert {d["data"]["crm"] for d in dead} == {"experience", "crmtext"}
        [clock] = [c for c in event_of(stack, phone)["clocks"] if c["regime"] == "tcpa"]
        assert clock["status"] == "breached" and clock["honoured_at"] is None
        time.sleep(CLOCK_PASS_SECONDS + 2)  # at least one more clock pass and the outbox's retries have run
        assert len(alerts("clock.breached")) == 1 and len(alerts("delivery.dead")) == 2
        assert len({a["webhook-id"] for a in alerts("clock.breached") + alerts("delivery.dead")}) == 3
        assert not [b for _, b in ops if phone[2:].encode() in b]  # no address in any alert
    finally:
        stack.clear_faults()
