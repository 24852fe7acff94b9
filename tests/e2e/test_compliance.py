"""Compliance through real processes: a STOP's clock met once the worker delivered it, `receiver verify`
naming a row tampered in the database, and an erasure leaving no trace of the number while the opt-out holds.

Its own stack: tampering breaks the chain, which no other module's test should meet."""

import secrets
import subprocess
from datetime import UTC, datetime

from sqlalchemy import update

from receiver.ledger.models import SignalRow
from tests.e2e.stack import ADMIN_TOKEN, BIN, ROOT, wait_until
from tests.e2e.test_sms import new_phone

OWN_STACK = True
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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
