"""Operators' replays: dead or skipped deliveries back in the queue, once."""

import pytest
from sqlalchemy import select, update

from receiver.errors import Conflict
from receiver.ledger import actions
from receiver.ledger.models import Delivery
from receiver.ledger.outbox import NO_EMAIL, PENDING, SKIPPED, owed_states
from receiver.signals import OPT_OUT, Inbound
from receiver.sources.sms import sms_signal
from receiver.states import EXPERIENCE


def _experience_delivery(settings, engine, ledger, **values) -> int:
    stop = sms_signal("SM1", "+15551234567", OPT_OUT, keyword="STOP")
    assert ledger.record(settings.sources["twilio"], Inbound("req-1", [stop]), b"evidence").status == "accepted"
    with engine.begin() as conn:
        delivery_id = conn.execute(select(Delivery.id).where(Delivery.crm == EXPERIENCE)).scalar()
        conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
    return delivery_id


def test_a_skipped_delivery_is_put_back_in_the_queue(settings, engine, ledger):
    # Review F9: the contract's replay "puts a dead or skipped delivery back in the queue".
    delivery_id = _experience_delivery(settings, engine, ledger, status=SKIPPED, reason=NO_EMAIL)
    assert actions.replay_delivery(engine, delivery_id) == SKIPPED
    with engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.id == delivery_id)).one()
    assert (row.status, row.reason, row.attempts) == (PENDING, None, 0)


def test_of_two_concurrent_replays_one_is_refused(settings, engine, ledger, monkeypatch):
    # Review F10: both answered 200; the second's update matched no row and nobody looked.
    delivery_id = _experience_delivery(settings, engine, ledger, status="dead", attempts=10)

    def another_replay_first(conn, rows):
        # Another replay commits between this one's read and its update.
        conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(status=PENDING, attempts=0))
        return owed_states(conn, rows)

    monkeypatch.setattr(actions, "owed_states", another_replay_first)
    with pytest.raises(Conflict, match="moved meanwhile"):
        actions.replay_delivery(engine, delivery_id)
