"""The worker's backfill schedule: due every ``[backfill] every_minutes``, claimed by one worker at a time."""

import time

from receiver.backfill.schedule import Schedule
from receiver.worker import Worker
from tests.helpers import make_settings, pin_clock

from .test_run import GUEST, bf_settings, consent, sleeps, text  # noqa: F401 (fixtures)


def test_one_of_two_workers_claims_a_due_run_and_it_is_due_again_after_every_minutes(
        bf_settings, engine, monkeypatch):  # noqa: F811
    now = [time.time()]
    pin_clock(monkeypatch, lambda: now[0])
    first, second = Schedule(bf_settings, engine), Schedule(bf_settings, engine)

    assert (first.claim(), second.claim()) == (True, False)
    now[0] += 14 * 60
    assert (first.claim(), second.claim()) == (False, False)
    now[0] += 61  # 15 minutes, the default, have passed
    assert (second.claim(), first.claim()) == (True, False)


def test_the_worker_runs_a_due_backfill_on_its_own_thread(bf_settings, engine, sandbox):  # noqa: F811
    text(sandbox, "STOP")
    worker = Worker(bf_settings, engine, owner="w1")

    thread = worker.backfill.tick()

    assert thread is not None
    thread.join(timeout=30)
    assert (GUEST, "sms_ban") in consent(engine)
    assert worker.backfill.tick() is None  # checked again only after CHECK_SECONDS


def test_every_minutes_0_turns_the_schedule_off(bf_settings, engine, tmp_path, database_url):  # noqa: F811
    toml = (tmp_path / "receiver.toml").read_text() + "\n[backfill]\nevery_minutes = 0\n"
    schedule = Schedule(make_settings(tmp_path, database_url, toml), engine)
    assert schedule.sources == [] and schedule.tick() is None
