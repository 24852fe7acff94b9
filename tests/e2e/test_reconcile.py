"""`receiver reconcile` end to end: Experience's list (three pages in the sandbox) read by the real
command, recorded once with the CRM's times, delivered to CRM Text once, never written back; refused
credentials stop the tenant with one line naming it and exit status 1, as every backfill's."""

import subprocess
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from receiver.ledger.models import Consent, Delivery, SignalRow
from tests.e2e.stack import BIN, ROOT

# It reads the whole ledger and every Experience call of the sandbox: a stack of its own.
OWN_STACK = True

US_PHONE, FR_PHONE = "+15557770001", "+33698765432"
RECORDS = [
    {"email": "ann@example.com", "mail_ban": "2022-01-01 10:10:09", "marketing_decline": "2021-12-26 15:04:06"},
    {"email": "bob@example.com", "phone": US_PHONE, "sms_ban": "2023-03-04 05:06:07"},
    {"phone": FR_PHONE, "sms_ban": "2023-05-06 07:08:09"},
    {"email": "cat@example.com", "marketing_decline_sms": "2024-02-29 23:59:59"},
    {"email": "dan@example.com", "marketing_decline": "2025-07-01 00:00:00"},
]
EXPECTED = {
    ("ann@example.com", "mail_ban"): datetime(2022, 1, 1, 10, 10, 9, tzinfo=UTC),
    ("ann@example.com", "marketing_decline"): datetime(2021, 12, 26, 15, 4, 6, tzinfo=UTC),
    (US_PHONE, "sms_ban"): datetime(2023, 3, 4, 5, 6, 7, tzinfo=UTC),
    (FR_PHONE, "sms_ban"): datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC),
    ("cat@example.com", "marketing_decline_sms"): datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    ("dan@example.com", "marketing_decline"): datetime(2025, 7, 1, tzinfo=UTC),
}


def reconcile(stack) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "receiver"), "reconcile"], cwd=ROOT, env=stack.env, capture_output=True,
                          text=True, timeout=120)


def ledger(stack) -> tuple[dict, int, list]:
    with stack.engine.connect() as conn:
        consent = {(r.identity, r.state): r.since for r in conn.execute(select(Consent))}
        signals = len(conn.execute(select(SignalRow.id)).all())
        deliveries = conn.execute(select(Delivery.crm, Delivery.identity, Delivery.status).order_by(Delivery.id)).all()
    return consent, signals, deliveries


def test_reconcile_records_three_pages_once_and_sends_only_the_us_sms_ban_to_crmtext(stack):
    stack.http.post(f"{stack.sandbox_url}/_sandbox/experience/records", json={"records": RECORDS, "page_size": 2},
                    timeout=5).raise_for_status()
    started = datetime.now(UTC)

    first = reconcile(stack)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == ("grand: since 1970-01-01: 3 pages, 5 recipients, 6 states recorded (6 new), "
                                    "6 new changes, 0 skipped; complete")
    consent, signals, _ = ledger(stack)
    assert consent == EXPECTED and signals == 6
    assert [(r.crm, r.status) for r in stack.settled(US_PHONE)] == [("crmtext", "done")]
    assert [(r.crm, r.status) for r in stack.settled(FR_PHONE)] == [("crmtext", "skipped")]
    assert len(stack.opt_out_calls(US_PHONE[2:])) == 1
    after_first = ledger(stack)
    assert len(after_first[2]) == 2  # no Experience delivery at all

    second = reconcile(stack)
    assert second.returncode == 0, second.stderr
    since = (started - timedelta(days=1)).strftime("%Y-%m-%d")
    assert second.stdout.strip() == (f"grand: since {since}: 3 pages, 5 recipients, 6 states recorded (0 new), "
                                     "0 new changes, 0 skipped; complete")
    time.sleep(1)  # several worker polls: nothing new may be delivered
    assert ledger(stack) == after_first
    assert len(stack.opt_out_calls(US_PHONE[2:])) == 1
    retrieves = [c for c in stack.calls("experience") if c["method"] == "retrieve"]
    assert [c["since"] for c in retrieves] == ["1970-01-01"] * 3 + [since] * 3
    assert [c for c in stack.calls("experience") if c["method"] == "opt_out"] == []


def test_refused_credentials_stop_the_tenant_with_one_line_and_exit_1(stack):
    before = ledger(stack)
    stack.fault("experience", "answer", http_status=401, body='"unauthenticated"')
    refused = reconcile(stack)
    assert refused.returncode == 1 and refused.stdout == ""
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("grand:")]  # logs go there too
    assert line.endswith("0 pages, 0 recipients, 0 states recorded (0 new), 0 new changes, 0 skipped; "
                         "stopped: experience: credentials refused (HTTP 401): "
                         "check the tenant's experience partner_token and hotel_token")
    assert ledger(stack) == before
