"""Leases compare on the database's clock, so a worker host whose clock runs ahead takes nothing over early."""

import time
from datetime import timedelta

from receiver.ledger.leases import Leases
from receiver.ledger.models import utcnow
from receiver.signals import OPT_OUT, Inbound
from receiver.sources.sms import sms_signal
from tests.helpers import pin_clock


def test_a_worker_whose_clock_runs_ahead_cannot_take_over_an_unexpired_lease(settings, engine, ledger,
                                                                              monkeypatch):
    # Review F2: with each host's own clock, a host an hour ahead saw every lease as run out.
    source = settings.sources["twilio"]
    outcome = ledger.record(source, Inbound("req-1", [sms_signal("SM1", "+15551234567", OPT_OUT, keyword="STOP")]),
                            b"evidence")
    assert outcome.status == "accepted"
    first = Leases(engine, "w1", settings.worker)
    held = first.claim()
    assert held

    pin_clock(monkeypatch, time.time() + 3600)
    ahead = Leases(engine, "w2", settings.worker)
    assert utcnow() - ahead.now() > timedelta(minutes=59)  # its settle waits read the database's clock
    assert ahead.claim() == []
    assert ahead.start(held[0]) is None
    assert first.start(held[0]) is not None
