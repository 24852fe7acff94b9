"""The engine: a long read never holds up an opt-out being stored; SQLite commits survive power loss."""

import threading

import pytest
from sqlalchemy import func, insert, select

from receiver.ledger import queries
from receiver.ledger.models import Consent
from receiver.ledger.record import ACCEPTED
from receiver.signals import OPT_OUT, Inbound, Signal
from receiver.states import SMS_BAN


def stop(n: int) -> Inbound:
    return Inbound(request_key=f"SM{n}", signals=[
        Signal(event_id=f"SM{n}", kind=OPT_OUT, phone=f"+1555123{n:04d}", add=frozenset({SMS_BAN}))])


def record_meanwhile(ledger, source, inbound) -> tuple[threading.Thread, threading.Event, dict]:
    done, outcome = threading.Event(), {}

    def run():
        outcome["status"] = ledger.record(source, inbound, b"Body=STOP").status
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, outcome


@pytest.mark.parametrize("reader", ["csv export streaming", "read transaction left open"])
def test_a_long_read_never_delays_an_opt_out(ledger, engine, settings, reader):
    twilio = settings.sources["twilio"]
    for n in range(3):
        ledger.record(twilio, stop(n), b"Body=STOP")
    export = queries.export_rows(engine, batch=1)
    with engine.connect() as conn:
        if reader == "csv export streaming":
            next(export)  # the export's cursor is open, mid-way through its rows
        else:
            conn.execute(select(Consent)).all()  # the read transaction stays open until the block ends
        thread, done, outcome = record_meanwhile(ledger, twilio, stop(99))
        stored_while_reading = done.wait(5)
    export.close()
    thread.join()

    assert stored_while_reading, "the opt-out waited for the reader"
    assert outcome["status"] == ACCEPTED


def test_a_write_that_reads_first_is_not_failed_by_a_writer_in_between(ledger, engine, settings):
    """engine.begin() takes the write lock up front: another writer waits for it, never invalidates its read."""
    twilio = settings.sources["twilio"]
    ledger.record(twilio, stop(1), b"Body=STOP")
    with engine.begin() as conn:
        held = conn.execute(select(Consent.identity, Consent.state, Consent.since, Consent.signal_id)).first()
        thread, done, outcome = record_meanwhile(ledger, twilio, stop(2))
        done.wait(0.5)  # the other writer tries now (on SQLite it waits for this transaction)
        conn.execute(insert(Consent).values(tenant="smsonly", identity=held.identity, state=held.state,
                                            since=held.since, signal_id=held.signal_id))
    thread.join()

    assert outcome["status"] == ACCEPTED
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Consent)).scalar() == 3


def test_sqlite_syncs_every_commit(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite setting")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
