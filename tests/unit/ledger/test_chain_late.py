"""The chain head taken last (issue #16): one tenant's writers overlap, one guest's run in turn.

PostgreSQL only: SQLite's one writer (BEGIN IMMEDIATE) holds every other writer back anyway.
No timings: a transaction is held open at a known point (the ``then`` hook, after its consent
changes and before the chain head), and what the others do meanwhile is observed.
"""

import threading

import pytest
from sqlalchemy import select, text

from receiver.compliance.chain import verify
from receiver.ledger import chain
from receiver.ledger.models import Consent, SignalRow
from receiver.ledger.record import ACCEPTED
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal
from receiver.states import SMS_BAN

A, B = "+15551230001", "+15551230002"
WAIT = 60  # seconds: a bound on a wait that should end, never a measurement


@pytest.fixture(autouse=True)
def _postgresql_only(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: nothing overlaps")


def sms(sid: str, phone: str, words: str = "STOP") -> Inbound:
    intent, keyword, review = classify(words)
    return Inbound(request_key=sid, signals=[sms_signal(sid, phone, intent, keyword=keyword, review=review)])


class Held:
    """``ledger.record`` in a thread whose transaction is held open after its consent changes,
    before it takes the chain head, until ``finish()``."""

    def __init__(self, ledger, source, inbound: Inbound):
        self.inside, self.release, self.outcome, self.error = threading.Event(), threading.Event(), None, None
        self.released_in_time = None

        def then(_conn, _outcome, _now):
            self.inside.set()
            self.released_in_time = self.release.wait(WAIT)

        def run():
            try:
                self.outcome = ledger.record(source, inbound, b"Body", then=then)
            except Exception as exc:  # surfaced by the test
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.inside.wait(WAIT), "the held request never got past its consent changes"

    def finish(self):
        self.release.set()
        self.thread.join(WAIT)
        assert self.error is None, self.error
        assert self.released_in_time, "the held transaction was never released: the other writer waited on it"
        return self.outcome


def test_another_guest_of_the_tenant_is_stored_and_linked_while_the_first_transaction_is_open(
        ledger, engine, settings):
    twilio = settings.sources["twilio"]
    first = Held(ledger, twilio, sms("SM1", A))
    try:
        # With the head locked first (before issue #16) this waited for SM1's commit.
        second = ledger.record(twilio, sms("SM2", B), b"Body=STOP")
        first_open = first.thread.is_alive()  # SM1's transaction still open when SM2 came back
    finally:
        held = first.finish()

    assert (second.status, held.status, first_open) == (ACCEPTED, ACCEPTED, True)
    rows = list(chain.stream(engine))
    # SM1 took its id first but linked second: chain order is chain_seq, not id.
    assert [(r["event_id"], r["chain_seq"]) for r in rows] == [("SM2", 1), ("SM1", 2)]
    assert rows[1]["id"] < rows[0]["id"]
    assert verify(rows, settings.identity_key) is None
    assert chain.check(engine, settings.identity_key) == (2, None)
    assert chain.head(engine, "grand")["signal_id"] == rows[1]["id"]


def test_one_guest_s_start_waits_for_its_open_stop_then_lifts_it_in_chain_order(ledger, engine, settings):
    # Without the guest's lock the START would miss the STOP's uncommitted consent row, lift
    # nothing, and link after it: the chain would read STOP, START while the guest stayed opted out.
    twilio = settings.sources["twilio"]
    first = Held(ledger, twilio, sms("SM1", A))
    answers = {}
    start = threading.Thread(target=lambda: answers.update(start=ledger.record(twilio, sms("SM2", A, "START"), b"")))
    try:
        start.start()
        assert _waiting_on_a_guest(engine), "the START did not wait for the guest's open STOP"
    finally:
        stop = first.finish()
        start.join(WAIT)

    assert stop.changes == [{"phone": A, "states": [SMS_BAN]}]
    assert answers["start"].changes and answers["start"].changes[0]["removed"] == [SMS_BAN]
    with engine.connect() as conn:
        assert conn.execute(select(Consent.state).where(Consent.identity == A)).all() == []
        assert conn.execute(select(SignalRow.event_id).order_by(SignalRow.chain_seq)).scalars().all() == [
            "SM1", "SM2"]
    assert chain.check(engine, settings.identity_key) == (2, None)


def _waiting_on_a_guest(engine) -> bool:
    """Whether a session of this database waits on an advisory lock (polled: it gets there soon)."""
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                   "(SELECT oid FROM pg_database WHERE datname = current_database())")
    found = threading.Event()
    for _ in range(WAIT * 10):
        with engine.connect() as conn:
            if conn.execute(waiting).scalar():
                return True
        found.wait(0.1)
    return False
