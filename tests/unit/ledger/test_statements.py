"""What one recorded request costs the database, counted in statements (issue #16: ingest cost).

A count, not a timing: each statement is a round trip to PostgreSQL, and each row is written once,
complete (no insert-then-update of the receipt or the signal rows).
"""

import pytest
from sqlalchemy import event, select

from receiver.ledger import chain
from receiver.ledger.models import RequestRecord, SignalRow
from receiver.ledger.record import ACCEPTED, DUPLICATE
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal

# Every cursor execution while recording; before issue #16 a STOP cost 13 on either database.
# SQLite's own is its BEGIN IMMEDIATE (ledger/db.py); PostgreSQL's, the lock of the request's
# guests (chain.lock_guests), which keeps one guest's changes in turn now that the chain head is
# taken last (it was 9 while the head lock, taken first, serialised the tenant's whole transaction).
MOST_STATEMENTS = {"postgresql": 10, "sqlite": 10}
# What may follow the chain head's lock before commit: the head lock is held for these only.
AFTER_THE_HEAD = ("INSERT INTO signals ", "UPDATE chain_heads ")


def stop(sid: str, phone: str) -> Inbound:
    intent, keyword, review = classify("STOP")
    return Inbound(request_key=sid, signals=[sms_signal(sid, phone, intent, keyword=keyword, review=review)])


@pytest.fixture
def statements(engine):
    """Every statement sent while the test records, as (verb, SQL)."""
    sent: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield sent
    event.remove(engine, "before_cursor_execute", count)


def test_a_twilio_stop_costs_few_statements_and_no_updates_of_its_rows(ledger, engine, settings, statements):
    twilio = settings.sources["twilio"]
    ledger.record(twilio, stop("SM1", "+15551230001"), b"Body=STOP")  # the tenant's chain head exists from here
    statements.clear()

    outcome = ledger.record(twilio, stop("SM2", "+15551230002"), b"Body=STOP")

    assert outcome.status == ACCEPTED
    print(f"\nstatements for one Twilio STOP ({engine.dialect.name}): {len(statements)}")
    for sql in statements:
        print("  ", " ".join(sql.split())[:110])
    assert len(statements) <= MOST_STATEMENTS[engine.dialect.name]
    updated = [sql for sql in statements if sql.lstrip().upper().startswith("UPDATE")]
    assert not any(" receipts " in sql or " signals " in sql for sql in updated), updated
    with engine.connect() as conn:
        receipt = conn.execute(select(RequestRecord).where(RequestRecord.id == outcome.receipt_id)).one()
        signal = conn.execute(select(SignalRow).where(SignalRow.receipt_id == outcome.receipt_id)).one()
    assert (receipt.status, receipt.event_ids, receipt.changes) == (ACCEPTED, ["SM2"], outcome.changes)
    assert signal.changes == outcome.changes
    assert chain.check(engine, settings.identity_key) == (2, None)


def test_the_chain_head_is_locked_last_just_before_commit(ledger, engine, settings, statements):
    # Issue #16: taken first, the head lock held one tenant's ingest to one transaction at a time
    # (py-spy: a third to two thirds of web time waiting on it). Everything else comes before it.
    twilio = settings.sources["twilio"]
    ledger.record(twilio, stop("SM1", "+15551230001"), b"Body=STOP")
    statements.clear()

    ledger.record(twilio, stop("SM2", "+15551230002"), b"Body=STOP")

    flat = [" ".join(sql.split()) for sql in statements]
    [at] = [n for n, sql in enumerate(flat) if sql.startswith("SELECT") and " FROM chain_heads " in sql]
    assert engine.dialect.name != "postgresql" or flat[at].endswith("FOR UPDATE")
    assert [sql[:len(prefix)] for sql, prefix in zip(flat[at + 1:], AFTER_THE_HEAD, strict=True)] == list(
        AFTER_THE_HEAD), flat[at:]
    assert any(sql.startswith("INSERT INTO receipts ") for sql in flat[:at])


def test_a_redelivered_stop_is_still_a_duplicate_of_the_first(ledger, engine, settings):
    twilio = settings.sources["twilio"]
    first = ledger.record(twilio, stop("SM1", "+15551230001"), b"Body=STOP")

    again = ledger.record(twilio, stop("SM1", "+15551230001"), b"Body=STOP")

    assert (again.status, again.original_receipt_id) == (DUPLICATE, first.receipt_id)
    with engine.connect() as conn:
        assert conn.execute(select(RequestRecord.id)).scalars().all() == [first.receipt_id]
    assert chain.check(engine, settings.identity_key) == (1, None)
