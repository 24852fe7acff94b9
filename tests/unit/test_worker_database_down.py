"""The worker while its database fails (PostgreSQL restarting, connections cut: bench/chaos.py does it
for real): the loop goes on with a line in the log, and a unit cut off after its call loses nothing
and repeats nothing."""

import logging
import signal

from sqlalchemy.exc import OperationalError

from receiver.ledger.outbox import DONE, PENDING
from receiver.states import CRMTEXT
from tests.unit.test_worker import make_world, world  # noqa: F401 - fixtures


def database_down(rows, *args, **kwargs):
    """A Leases write while the database is gone (an empty one never reaches it)."""
    if rows:
        raise OperationalError("UPDATE deliveries", {}, Exception("server closed the connection unexpectedly"))
    return []


def test_a_unit_whose_database_fails_after_its_call_is_neither_lost_nor_called_twice(world, monkeypatch, caplog):  # noqa: F811
    world.stop(tenant="smsonly")
    worker = world.worker("w1")
    monkeypatch.setattr(worker.leases, "finish", database_down)  # the call's outcome cannot be stored
    monkeypatch.setattr(worker.leases, "postpone", database_down)  # nor the row handed back

    with caplog.at_level(logging.WARNING, logger="receiver.worker"):
        assert worker.run_once() == 1  # returns: the unit's thread ended, nothing is left in flight
    assert worker.held == set()
    assert "could not hand back 1 deliveries (OperationalError)" in caplog.text
    assert not any(r.exc_info for r in caplog.records)  # lines, not tracebacks

    row = world.delivery(CRMTEXT)
    assert (row.status, row.lease_owner) == (PENDING, "w1")  # still leased: nobody calls meanwhile
    assert world.outcomes(row.id) == ["started"]
    assert world.methods() == ["optoutcustomer"]

    # The database is back: once the lease has run out, another worker asks before calling again.
    world.expire_leases()
    world.settle_calls()
    assert world.worker("w2").run_once() == 1
    assert world.methods() == ["optoutcustomer", "getcustomerinfo"]
    assert world.get(row.id).status == DONE


def test_the_loop_goes_on_after_the_database_fails_with_a_line_not_a_traceback(world, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    worker = world.worker()
    claims = []

    def claim(look=True):
        claims.append(len(claims))
        if len(claims) == 1:
            raise OperationalError("SELECT deliveries", {}, Exception("connection refused"))
        worker.stop()
        return 0

    monkeypatch.setattr(worker, "claim", claim)
    with caplog.at_level(logging.WARNING, logger="receiver.worker"):
        worker.run()
    assert claims == [0, 1]  # tried again after the failure
    [line] = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert line.exc_info is None
