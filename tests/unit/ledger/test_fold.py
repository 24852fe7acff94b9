"""The worker's sweep folds emails that processes older than migration 0007 stored as typed."""

import threading
import time

from sqlalchemy import select, update

from receiver.ledger import fold, queries
from receiver.ledger.models import Consent, Delivery, SignalRow
from receiver.signals import OPT_OUT, Inbound, Signal
from receiver.states import MARKETING_DECLINE
from receiver.worker import Worker

TYPED = "Guest@Example.com"


def _stored_as_an_old_process_would(settings, engine, ledger) -> None:
    opt_out = Signal(event_id="evt-1", kind=OPT_OUT, email="guest@example.com", add=frozenset({MARKETING_DECLINE}))
    assert ledger.record(settings.sources["twilio"], Inbound("req-1", [opt_out]), b"evidence").status == "accepted"
    with engine.begin() as conn:  # an old web process, during a rolling deploy, kept the case as typed
        conn.execute(update(Consent).values(identity=TYPED))
        conn.execute(update(SignalRow).values(email=TYPED))
        [(delivery_id, payload)] = conn.execute(select(Delivery.id, Delivery.payload)).all()
        conn.execute(update(Delivery).values(identity=TYPED, payload={**payload, "email": TYPED}))
    assert queries.guest_states(engine, "grand", "guest@example.com") == {}  # a folded look-up misses it


def _folded(engine) -> bool:
    with engine.connect() as conn:
        return (conn.execute(select(Consent.identity)).scalars().all() == ["guest@example.com"]
                and conn.execute(select(SignalRow.email)).scalars().all() == ["guest@example.com"]
                and [(d.identity, d.payload["email"]) for d in conn.execute(select(Delivery))]
                == [("guest@example.com", "guest@example.com")])


def test_the_sweep_folds_identities_stored_with_upper_case_and_is_idempotent(settings, engine, ledger):
    # Review F3.
    _stored_as_an_old_process_would(settings, engine, ledger)
    stopping = threading.Event()
    stopping.set()  # one sweep, then stop
    fold.sweep(engine, stopping)
    assert _folded(engine)
    assert MARKETING_DECLINE in queries.guest_states(engine, "grand", "guest@example.com")
    fold.sweep(engine, stopping)
    assert _folded(engine)


def test_the_worker_sweeps_when_it_starts(settings, engine, ledger, monkeypatch):
    monkeypatch.setattr("receiver.worker.signal.signal", lambda *_: None)  # keep pytest's own handlers
    _stored_as_an_old_process_would(settings, engine, ledger)
    worker = Worker(settings, engine, owner="w1")
    worker.stopping.set()  # run() starts, sweeps once in the background, and stops
    worker.run()
    deadline = time.monotonic() + 5
    while not _folded(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _folded(engine)
