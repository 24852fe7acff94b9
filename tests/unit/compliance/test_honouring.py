"""Clocks honoured by the worker's deliveries (sandbox CRMs), moved on to at_risk / breached by its pass, gauged."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from receiver.ledger import clocks as ledger_clocks
from receiver.ledger.models import ClockRow, Delivery
from receiver.ledger.record import Ledger
from receiver.metrics import exposition
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal
from receiver.states import CRMTEXT, EXPERIENCE
from receiver.worker import Worker
from tests.helpers import config_toml, make_settings, pin_clock

PHONE = "+15551234567"
# Wednesday 2027-03-03 15:00 UTC: ten business days (US, UTC) end with Wednesday 17 March.
ARRIVED = datetime(2027, 3, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def sandboxed(tmp_path, database_url, settings, sandbox):
    return make_settings(tmp_path, database_url, toml=config_toml(sandbox.url))


def stop(settings, engine, sid: str = "SM1") -> None:
    intent, keyword, review = classify("STOP")
    inbound = Inbound(request_key=sid, signals=[sms_signal(sid, PHONE, intent, keyword=keyword, review=review)])
    Ledger(engine, settings.tenants, settings.identity_key).record(settings.sources["twilio"], inbound, b"Body=STOP")


def the_clock(engine) -> ClockRow:
    with engine.connect() as conn:
        [row] = conn.execute(select(ClockRow)).all()
    return row


def test_a_stops_clock_is_met_once_the_worker_has_delivered_it_to_both_crms(sandboxed, engine, monkeypatch):
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed, engine)
    assert the_clock(engine).status == "pending"
    later = ARRIVED + timedelta(minutes=5)
    pin_clock(monkeypatch, later.timestamp())

    assert Worker(sandboxed, engine, owner="w1").run_once() == 2

    clock = the_clock(engine)
    assert (clock.regime, clock.status, clock.honoured_at) == ("tcpa", "met", later)


def test_one_crm_done_and_the_other_still_owed_leaves_the_clock_open(sandboxed, engine, sandbox, monkeypatch):
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed, engine)
    sandbox.fault(EXPERIENCE, "500")

    Worker(sandboxed, engine, owner="w1").run_once()

    with engine.connect() as conn:
        statuses = dict(conn.execute(select(Delivery.crm, Delivery.status)).all())
    assert statuses == {CRMTEXT: "done", EXPERIENCE: "pending"}
    assert (the_clock(engine).status, the_clock(engine).honoured_at) == ("pending", None)


def test_a_crm_outage_breaches_the_clock_and_a_late_delivery_keeps_it_breached(sandboxed, engine, sandbox,
                                                                               monkeypatch):
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed, engine)
    sandbox.fault(EXPERIENCE, "500", count=1000)
    clock = the_clock(engine)
    assert clock.honour_by == datetime(2027, 3, 17, 23, 59, 59, 999999, tzinfo=UTC)

    pin_clock(monkeypatch, (clock.at_risk_from + timedelta(seconds=1)).timestamp())
    Worker(sandboxed, engine, owner="w1").run_once()
    assert the_clock(engine).status == "at_risk"

    pin_clock(monkeypatch, (clock.honour_by + timedelta(seconds=1)).timestamp())
    Worker(sandboxed, engine, owner="w2").run_once()
    assert (the_clock(engine).status, the_clock(engine).honoured_at) == ("breached", None)
    samples = exposition(engine).decode()
    assert 'receiver_clocks{regime="tcpa",status="breached",tenant="grand"} 1.0' in samples

    sandbox.reset()  # the CRM is back and the dead delivery is replayed: it lands, late
    with engine.begin() as conn:
        conn.execute(Delivery.__table__.update().where(Delivery.crm == EXPERIENCE).values(
            status="pending", next_attempt_at=ARRIVED, attempts=0, replayed_at=clock.honour_by,
            lease_owner=None, lease_until=None))
    Worker(sandboxed, engine, owner="w3").run_once()
    late = the_clock(engine)
    assert late.status == "breached" and late.honoured_at == clock.honour_by + timedelta(seconds=1)


def test_the_status_pass_moves_only_open_clocks_past_their_instants(sandboxed, engine, monkeypatch):
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed, engine)
    clock = the_clock(engine)

    assert ledger_clocks.advance(engine, clock.at_risk_from - timedelta(microseconds=1)) == {
        "breached": 0, "at_risk": 0}
    assert ledger_clocks.advance(engine, clock.at_risk_from) == {"breached": 0, "at_risk": 1}
    assert ledger_clocks.advance(engine, clock.honour_by) == {"breached": 0, "at_risk": 0}
    assert ledger_clocks.advance(engine, clock.honour_by + timedelta(microseconds=1)) == {
        "breached": 1, "at_risk": 0}


def test_two_lanes_finishing_one_signals_deliveries_at_once_honour_its_clock(sandboxed, engine, monkeypatch):
    # Each lane's finish saw the other's delivery still owed (not committed yet), and neither honoured.
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed, engine)
    with engine.connect() as conn:
        deliveries = conn.execute(select(Delivery.id, Delivery.signal_id).order_by(Delivery.id)).all()
    assert len(deliveries) == 2  # Experience and CRM Text
    later = ARRIVED + timedelta(minutes=5)

    def finish(conn, delivery) -> None:
        conn.execute(update(Delivery).where(Delivery.id == delivery.id).values(status="done"))
        ledger_clocks.honour(conn, [delivery.signal_id], later)

    first = engine.connect()
    first.begin()
    finish(first, deliveries[0])
    second = threading.Thread(target=lambda: finish_in_own_transaction(engine, finish, deliveries[1]))
    second.start()
    second.join(timeout=1.0)  # had it not waited for the first, it would have read its delivery owed
    first.commit()
    first.close()
    second.join(timeout=30)
    assert not second.is_alive()
    assert (the_clock(engine).status, the_clock(engine).honoured_at) == ("met", later)


def finish_in_own_transaction(engine, finish, delivery) -> None:
    with engine.begin() as conn:
        finish(conn, delivery)
