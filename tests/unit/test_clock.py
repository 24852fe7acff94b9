"""One clock (receiver.clock) read by every freshness check and time stamp; the suite pins it one way."""

from datetime import UTC, datetime

from receiver.crm.errors import parse_retry_after
from receiver.ledger.models import utcnow
from receiver.receipts import ReceiptSigner
from tests.helpers import pin_clock

AT = 1_795_515_300  # a whole second, in 2026


def test_one_pin_sets_the_ledger_s_time_and_the_receipt_s_timestamp(monkeypatch):
    # Issue 12.6: a module-level clock (SendGrid), time.time patched globally (Mailgun, receipts) and a
    # library's datetime patched (Standard Webhooks) were three ways; receiver.clock is the one.
    pin_clock(monkeypatch, AT + 0.25)

    assert utcnow() == datetime.fromtimestamp(AT + 0.25, UTC)
    headers = ReceiptSigner(["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]).headers(b"{}")
    assert headers["webhook-timestamp"] == str(AT)


def test_a_retry_after_date_is_read_against_the_pinned_clock(monkeypatch):
    pin_clock(monkeypatch, AT)

    assert parse_retry_after(datetime.fromtimestamp(AT + 120, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")) == 120

