"""Stopping and killing the receiver's processes, end to end: nothing acknowledged is lost, nothing is
texted twice, and the queue reports what waits while the worker is stopped. These tests stop, kill
and restart processes, so this module has a stack of its own."""

import time

import requests

from tests.e2e.stack import wait_until
from tests.e2e.test_operations import scrape, value
from tests.e2e.test_sms import new_phone, new_sid, ten

OWN_STACK = True


def test_readyz_reports_the_queue(stack):
    """With the worker stopped, /readyz and /metrics count exactly the deliveries waiting."""
    stack.idle()
    stack.kill("worker", 15)
    try:
        first_sent = time.time()
        phones = [new_phone() for _ in range(3)]
        for phone in phones:
            assert stack.sms("STOP", phone, new_sid()).status_code == 200
        body = requests.get(stack.web_url + "/readyz", timeout=5).json()
        elapsed = time.time() - first_sent
        samples = scrape(stack)
    finally:
        stack.start_worker()

    assert body["status"] == "ready"
    assert isinstance(body["queue_depth"], int) and body["queue_depth"] == 2 * len(phones)  # CRM Text + Experience
    assert 0 < body["oldest_pending_age_seconds"] <= elapsed
    assert value(samples, "receiver_queue_depth") == 2 * len(phones)
    assert 0 < value(samples, "receiver_queue_oldest_pending_age_seconds") <= time.time() - first_sent
    for phone in phones:
        assert all(r.status == "done" for r in stack.settled(phone))
    assert requests.get(stack.web_url + "/readyz", timeout=5).json()["queue_depth"] == 0


def test_stopped_web_answers_quickly_after_restart_and_nothing_acknowledged_is_lost(stack):
    phones = [new_phone() for _ in range(5)]
    answers = [stack.sms("STOP", phone, new_sid()) for phone in phones]
    assert all(a.status_code == 200 for a in answers)
    stack.kill("web")  # kill -9 right after the 200s
    stack.start_web()
    for phone in phones:
        assert len([r for r in stack.settled(phone) if r.status == "done"]) == 2
    assert all(len(stack.opt_out_calls(ten(p))) == 1 for p in phones)


def test_worker_killed_mid_batch_loses_nothing_and_texts_once(stack):
    stack.kill("worker", 15)  # stop the normal worker cleanly first
    phones = [new_phone() for _ in range(3)]
    stack.fault("crmtext", "slow", count=1, delay=2.5)  # the first call hangs, yet CRM Text applies it
    for phone in phones:
        assert stack.sms("STOP", phone, new_sid()).status_code == 200
    stack.start_worker("doomed")
    wait_until(lambda: any(c.get("fault") == "slow" for c in stack.calls("crmtext")), message="the slow call")
    stack.kill("doomed")  # kill -9 in the middle of the call
    stack.start_worker()
    for phone in phones:
        assert all(r.status == "done" for r in stack.settled(phone, timeout=60))
    # the number whose call was cut off was checked with getcustomerinfo, not texted twice
    assert all(len(stack.opt_out_calls(ten(p))) == 1 for p in phones)
    assert any(c.get("method") == "getcustomerinfo" for c in stack.calls("crmtext"))
