"""Lanes under concurrency (issue 16): isolation of a slow tenant, each lane's cap, one confirmation
per opt-out with several workers and threads, wake-up on commit (PostgreSQL), SIGTERM draining.

Behaviour, not speed: each test asserts an order of events or a state, with generous deadlines
only so that a broken worker fails instead of hanging.
"""

import dataclasses
import threading
import time
from collections import Counter

import pytest

from receiver.ledger.outbox import DONE, PENDING
from receiver.states import CRMTEXT
from tests.unit.test_worker import World, make_world  # noqa: F401 (the fixture, used through world_maker)

DEADLINE = 20.0


def wait_until(predicate, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def start(worker):
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def stop(worker, thread) -> None:
    worker.stop()
    thread.join(timeout=DEADLINE)
    assert not thread.is_alive()


@pytest.fixture
def world_maker(request):
    """test_worker's make_world: a World whose tenants point at the sandbox."""
    return request.getfixturevalue("make_world")


@pytest.fixture
def no_signals(monkeypatch):
    """Worker.run installs signal handlers, which only the main thread may do."""
    import signal
    monkeypatch.setattr(signal, "signal", lambda *args: None)


def phones(n: int, prefix: str = "555222") -> list[str]:
    return [f"+1{prefix}{i:04d}" for i in range(n)]


def statuses(world: World, tenant: str) -> list[str]:
    return [d.status for d in world.deliveries(CRMTEXT) if d.tenant == tenant]


def test_a_slow_tenant_does_not_hold_up_another(world_maker, no_signals):
    world = world_maker(crmtext_timeout=6.0)  # grand's CRM Text answers in 4 s, within its deadline
    world.sandbox.latency(4.0, crm=CRMTEXT, account="GRAND")
    world.stop("+15553330000", tenant="grand")
    for phone in phones(3):
        world.stop(phone, tenant="smsonly")
    worker = world.worker()
    thread = start(worker)
    try:
        # B finishes every delivery while A's call (4 s) is under way: had B waited behind A, A's call
        # would be over by then. (A's thread may start its call a little after B's: threads race.)
        wait_until(lambda: statuses(world, "smsonly") == [DONE] * 3 and world.sandbox.under_way(CRMTEXT, "GRAND") == 1)
        [slow] = [d for d in world.deliveries(CRMTEXT) if d.tenant == "grand"]
        assert (slow.status, world.outcomes(slow.id)) == (PENDING, ["started"])
    finally:
        stop(worker, thread)
    assert statuses(world, "grand") == [DONE]  # and the slow call was finished, not dropped


def test_each_lane_keeps_to_its_concurrency(world_maker):
    world = world_maker(smsonly_concurrency=2)
    # Calls long enough that a lane's fourth call starts before its first ends, even on a loaded
    # machine where each call's STARTED transaction waits its turn (SQLite: one writer at a time).
    world.sandbox.latency(1.0, crm=CRMTEXT)
    for phone in phones(8):
        world.stop(phone, tenant="smsonly")
    for phone in phones(8, "555444"):
        world.stop(phone, tenant="grand")
    assert world.worker().run_once() == 8 + 8 * 2
    most = world.sandbox.concurrency()[CRMTEXT]
    assert most == {"SMALL": 2, "GRAND": 4}  # the setting, and the default
    assert set(statuses(world, "smsonly") + statuses(world, "grand")) == {DONE}


def test_several_workers_and_threads_confirm_each_opt_out_once(world_maker, no_signals):
    world = world_maker()
    world.sandbox.latency(0.02, crm=CRMTEXT)
    numbers = phones(12) + phones(12, "555666")
    for phone in numbers[:12]:
        world.stop(phone, tenant="smsonly")
    for phone in numbers[12:]:
        world.stop(phone, tenant="grand")
    workers = [world.worker(f"w{i}") for i in range(3)]
    threads = [start(worker) for worker in workers]
    try:
        wait_until(lambda: {d.status for d in world.deliveries()} == {DONE})
    finally:
        for worker, thread in zip(workers, threads, strict=True):
            stop(worker, thread)
    sent = Counter((c["keyword"], c["phone_number"]) for c in world.sandbox.calls(CRMTEXT)
                   if c["method"] == "optoutcustomer")
    assert len(sent) == 24 and set(sent.values()) == {1}


def test_sigterm_lets_calls_under_way_finish_and_hands_the_queue_back(world_maker, no_signals):
    world = world_maker(smsonly_concurrency=2)
    world.sandbox.latency(1.0, crm=CRMTEXT, account="SMALL")
    for phone in phones(5):
        world.stop(phone, tenant="smsonly")
    worker = world.worker()
    thread = start(worker)
    wait_until(lambda: world.sandbox.under_way(CRMTEXT, "SMALL") == 2)  # two calls under way, three queued
    stop(worker, thread)
    rows = [d for d in world.deliveries(CRMTEXT)]
    assert sorted(d.status for d in rows) == [DONE, DONE, PENDING, PENDING, PENDING]
    assert all(d.lease_owner is None for d in rows)
    assert [d.attempts for d in rows if d.status == PENDING] == [0, 0, 0]
    assert len(world.sandbox.calls(CRMTEXT)) == 2


def test_a_commit_wakes_a_worker_polling_rarely(world_maker, no_signals):
    world = world_maker()
    if world.engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite polls")
    settings = world.settings
    world.settings = dataclasses.replace(settings, worker=dataclasses.replace(settings.worker, poll_seconds=30.0))
    worker = world.worker()
    thread = start(worker)
    try:
        wait_until(lambda: worker.listener is not None and worker.listener.listening.is_set())
        time.sleep(0.2)  # the wake-up of the listener's connecting has been served: the loop sleeps 30 s
        world.stop(tenant="smsonly")
        # Delivered long before the next poll, which is 30 s away: the commit woke the worker.
        wait_until(lambda: statuses(world, "smsonly") == [DONE], deadline=15.0)
    finally:
        stop(worker, thread)
