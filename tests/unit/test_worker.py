"""The worker against the in-thread sandbox: deliveries, coalescing, batching, retries, dead letters,
unknown outcomes, leases and crash takeover, clean stops.

Every test drives ``Worker.run_once`` by hand (no polling loop, no sleeping for backoffs): a delivery
that must be retried is made due by moving its ``next_attempt_at`` into the past.
"""

import base64
import re
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import insert, select, update

from receiver.crm import lanes
from receiver.crm.crmtext import DONE_ANSWERS, CrmTextClient
from receiver.crm.delivery import Outcome, Report
from receiver.crm.errors import Retryable
from receiver.crm.experience import ExperienceClient, format_time
from receiver.crm.lanes import Lane
from receiver.ledger.leases import TAKEN_OVER
from receiver.ledger.models import Attempt, Consent, Delivery, utcnow
from receiver.ledger.outbox import DEAD, DONE, PENDING, SKIPPED, SUPERSEDED
from receiver.ledger.record import Ledger
from receiver.settings import CALL_MARGIN_SECONDS, SourceConfig
from receiver.signals import OPT_IN, OPT_OUT, Inbound, Signal
from receiver.sources.sms import sms_signal
from receiver.states import CRMTEXT, EXPERIENCE, MAIL_BAN, MARKETING_DECLINE
from receiver.worker import Worker
from tests.helpers import config_toml, make_settings

PHONE, TEN = "+15551234567", "5551234567"
EMAIL = "guest@example.com"
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
BASE, CAP = 0.2, 1.0  # config_toml's backoff_base_seconds and backoff_max_seconds
SLACK = timedelta(seconds=0.05)


class World:
    """Settings pointing at the sandbox, the ledger that records signals, and queries on the outcome."""

    def __init__(self, settings, engine, sandbox):
        self.settings, self.engine, self.sandbox = settings, engine, sandbox
        self.ledger = Ledger(engine, settings.tenants, settings.identity_key)
        self._n = 0

    def worker(self, owner: str = "w1") -> Worker:
        return Worker(self.settings, self.engine, owner=owner)

    def record(self, *signals: Signal, tenant: str = "grand") -> None:
        source = self.settings.sources["twilio"]
        if tenant != source.tenant:
            source = SourceConfig(name=f"sms-{tenant}", kind="twilio", tenant=tenant)
        self._n += 1
        outcome = self.ledger.record(source, Inbound(f"req-{self._n}", list(signals)), b"evidence")
        assert outcome.status == "accepted", outcome

    def stop(self, phone: str = PHONE, *, tenant: str = "grand", **extra) -> None:
        self._n += 1
        self.record(sms_signal(f"SM{self._n}", phone, OPT_OUT, keyword="STOP", **extra), tenant=tenant)

    def email_opt_out(self, email: str, *states: str, phone: str | None = None) -> None:
        self._n += 1
        self.record(Signal(event_id=f"evt-{self._n}", kind=OPT_OUT, email=email, phone=phone,
                           add=frozenset(states)))

    def deliveries(self, crm: str | None = None) -> list:
        query = select(Delivery).order_by(Delivery.id)
        if crm:
            query = query.where(Delivery.crm == crm)
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def delivery(self, crm: str) -> object:
        [row] = self.deliveries(crm)
        return row

    def get(self, delivery_id: int):
        with self.engine.connect() as conn:
            return conn.execute(select(Delivery).where(Delivery.id == delivery_id)).one()

    def attempts(self, delivery_id: int) -> list:
        with self.engine.connect() as conn:
            return conn.execute(select(Attempt).where(Attempt.delivery_id == delivery_id)
                                .order_by(Attempt.id)).all()

    def outcomes(self, delivery_id: int) -> list[str]:
        return [a.outcome for a in self.attempts(delivery_id)]

    def make_due(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(Delivery).where(Delivery.status == PENDING).values(
                next_attempt_at=utcnow() - timedelta(seconds=1)))

    def settle_calls(self) -> None:
        """Move every attempt an hour back: its call's deadline (and margin) is long past."""
        with self.engine.begin() as conn:
            conn.execute(update(Attempt).values(started_at=utcnow() - timedelta(hours=1)))

    def expire_leases(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(Delivery).where(Delivery.lease_owner.is_not(None)).values(
                lease_until=utcnow() - timedelta(seconds=1)))

    def methods(self) -> list[str]:
        return [c["method"] for c in self.sandbox.calls(CRMTEXT)]

    def experience_records(self) -> list[list[dict]]:
        return [c["records"] for c in self.sandbox.calls(EXPERIENCE) if c["method"] == "opt_out"]


@pytest.fixture
def make_world(settings, engine, database_url, tmp_path, sandbox):
    """A World whose tenants point at the sandbox; options tweak the tenant ``grand``."""

    def make(*, batch_size: int | None = None, crmtext_timeout: float | None = None, extra: str = "",
             smsonly_concurrency: int | None = None, experience_concurrency: int | None = None) -> World:
        toml = config_toml(sandbox.url, extra=extra)
        if smsonly_concurrency is not None:  # one call at a time: the lane's calls in a known order
            old = 'keyword = "SMALL", timeout = 2.0'
            assert old in toml
            toml = toml.replace(old, f"{old}, concurrency = {smsonly_concurrency}")
        if batch_size is not None:
            old = 'hotel_token = "grand-hotel"'
            assert old in toml
            toml = toml.replace(old, f"{old}, batch_size = {batch_size}")
        if experience_concurrency is not None:  # grand's Experience batches one at a time, in order
            old = 'hotel_token = "grand-hotel"'
            toml = toml.replace(old, f"{old}, concurrency = {experience_concurrency}")
        if crmtext_timeout is not None:
            old = 'keyword = "GRAND", timeout = 2.0'
            assert old in toml
            toml = toml.replace(old, f'keyword = "GRAND", timeout = {crmtext_timeout}')
        return World(make_settings(tmp_path, database_url, toml=toml), engine, sandbox)

    return make


@pytest.fixture
def world(make_world) -> World:
    return make_world()


def assert_backoff(row, attempts: int, before, after) -> None:
    """next_attempt_at is base * 2^(n-1), capped, times a jitter in [0.5, 1], after the attempt."""
    delay = min(CAP, BASE * 2 ** (attempts - 1))
    assert before + timedelta(seconds=delay * 0.5) - SLACK <= row.next_attempt_at
    assert row.next_attempt_at <= after + timedelta(seconds=delay) + SLACK


# -- plain deliveries --------------------------------------------------------------------------


def test_stop_is_delivered_to_both_crms(world):
    world.stop()
    assert world.worker().run_once() == 2

    crm, xp = world.delivery(CRMTEXT), world.delivery(EXPERIENCE)
    assert (crm.status, crm.attempts, crm.lease_owner, crm.last_error) == (DONE, 1, None, None)
    assert (xp.status, xp.attempts, xp.lease_owner) == (DONE, 1, None)

    [call] = world.sandbox.calls(CRMTEXT)
    assert (call["method"], call["phone_number"], call["keyword"]) == ("optoutcustomer", TEN, "GRAND")
    assert call["authorization"] == "Basic " + base64.b64encode(b"grand:secret:GRAND").decode()

    [[record]] = world.experience_records()
    assert record == {"phone": PHONE, "sms_ban": format_time(xp.created_at)}
    assert TIME.match(record["sms_ban"])
    [xp_call] = world.sandbox.calls(EXPERIENCE)
    assert xp_call["authorization"] == "Bearer partner:grand-hotel"

    assert world.outcomes(crm.id) == ["ok"]
    assert world.outcomes(xp.id) == ["ok"]
    [attempt] = world.attempts(crm.id)
    assert attempt.finished_at is not None and attempt.finished_at >= attempt.started_at

    # Nothing left to do: a second pass claims nothing and calls nobody.
    world.make_due()
    assert world.worker().run_once() == 0
    assert len(world.sandbox.calls(CRMTEXT)) == 1 and len(world.sandbox.calls(EXPERIENCE)) == 1


def test_states_of_one_email_are_coalesced_into_one_record(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE)
    world.email_opt_out(EMAIL, MAIL_BAN)
    first, second = world.deliveries(EXPERIENCE)
    assert world.worker().run_once() == 2

    [[record]] = world.experience_records()
    assert record == {"email": EMAIL, "marketing_decline": format_time(first.created_at),
                      "mail_ban": format_time(second.created_at)}
    assert [world.get(r.id).status for r in (first, second)] == [DONE, DONE]
    assert world.outcomes(first.id) == ["ok"] and world.outcomes(second.id) == ["ok"]
    assert world.sandbox.calls(CRMTEXT) == []


def test_linked_email_travels_with_a_later_sms_ban(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE, phone=PHONE)  # one signal with both: a link
    world.worker().run_once()
    [[first]] = world.experience_records()
    assert first["email"] == EMAIL and first["phone"] == PHONE and "sms_ban" not in first

    world.stop()
    assert world.worker().run_once() == 2
    records = world.experience_records()
    assert len(records) == 2
    [record] = records[1]
    assert record["email"] == EMAIL and record["phone"] == PHONE
    assert set(record) == {"email", "phone", "sms_ban"}
    assert [c["method"] for c in world.sandbox.calls(CRMTEXT)] == ["optoutcustomer"]


def test_linked_email_and_phone_states_merge_in_one_batch(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE, phone=PHONE)
    world.stop()
    world.worker().run_once()
    [[record]] = world.experience_records()
    assert set(record) == {"email", "phone", "marketing_decline", "sms_ban"}
    assert record["email"] == EMAIL


def test_experience_batches_hold_at_most_batch_size_records(make_world):
    world = make_world(batch_size=2)
    emails = [f"guest{i}@example.com" for i in range(5)]
    for email in emails:
        world.email_opt_out(email, MARKETING_DECLINE)
    assert world.worker().run_once() == 5

    batches = world.experience_records()
    assert sorted(len(b) for b in batches) == [1, 2, 2]  # batches run concurrently: in any order
    assert sorted(r["email"] for b in batches for r in b) == emails
    assert {d.status for d in world.deliveries()} == {DONE}


def test_a_refused_record_is_retried_alone(world):
    world.email_opt_out("a@example.com", MARKETING_DECLINE)
    world.email_opt_out("b@example.com", MARKETING_DECLINE)
    good = world.deliveries(EXPERIENCE)
    now = utcnow()
    with world.engine.begin() as conn:  # a record with neither email nor phone: the CRM refuses it
        bad_id = conn.execute(insert(Delivery).values(
            signal_id=good[0].signal_id, tenant="grand", crm=EXPERIENCE, identity="nobody",
            payload={"email": None, "phone": None, "states": {MARKETING_DECLINE: now.isoformat()}},
            status=PENDING, attempts=0, next_attempt_at=now, created_at=now, updated_at=now,
        ).returning(Delivery.id)).scalar()
        conn.execute(insert(Consent).values(tenant="grand", identity="nobody", state=MARKETING_DECLINE,
                                            since=now, signal_id=good[0].signal_id))  # still owed

    before = utcnow()
    assert world.worker().run_once() == 3
    after = utcnow()

    [batch] = world.experience_records()
    assert len(batch) == 3 and {"email", "phone"}.isdisjoint(batch[2])
    # The sandbox stored the two good records only.
    stored = requests.get(f"{world.sandbox.url}/experience/api/xp-unsubscribe/retrieve-opt-out",
                          params={"since": "2000-01-01"}, headers={"Authorization": "Bearer a:b"},
                          timeout=5).json()["recipients"]
    assert sorted(r["email"] for r in stored) == ["a@example.com", "b@example.com"]

    bad = world.get(bad_id)
    assert (bad.status, bad.attempts) == (PENDING, 1)
    assert "email or phone is required" in bad.last_error
    assert_backoff(bad, 1, before, after)
    assert world.outcomes(bad_id) == ["retry"]
    for row in good:
        assert world.get(row.id).status == DONE and world.outcomes(row.id) == ["ok"]

    world.make_due()
    assert world.worker().run_once() == 1  # only the refused one comes back
    assert [len(b) for b in world.experience_records()] == [3, 1]


# -- retries, backoff, dead letters ------------------------------------------------------------


def test_server_error_is_retried_with_backoff(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE)
    world.sandbox.fault(EXPERIENCE, "500")
    before = utcnow()
    assert world.worker().run_once() == 1
    after = utcnow()

    row = world.delivery(EXPERIENCE)
    assert (row.status, row.attempts, row.lease_owner, row.lease_until) == (PENDING, 1, None, None)
    assert row.last_error and "internal error" in row.last_error
    assert_backoff(row, 1, before, after)
    [attempt] = world.attempts(row.id)
    assert (attempt.outcome, attempt.http_status) == ("retry", 500)

    # Not due yet: nothing is claimed before next_attempt_at.
    assert world.worker().run_once() == 0

    world.make_due()
    assert world.worker().run_once() == 1
    row = world.get(row.id)
    assert (row.status, row.attempts, row.last_error) == (DONE, 2, None)
    assert world.outcomes(row.id) == ["retry", "ok"]
    assert len(world.experience_records()) == 2


def test_crmtext_server_error_is_an_unknown_outcome_checked_before_calling_again(world):
    # Issue 11.3: a 5xx or an HTML page from in front of CRM Text can hide a call that applied.
    world.stop(tenant="smsonly")
    world.sandbox.fault(CRMTEXT, "502_html")  # applies the call, then answers a gateway's 502 page
    world.worker().run_once()
    row = world.delivery(CRMTEXT)
    [attempt] = world.attempts(row.id)
    assert (row.status, attempt.outcome, attempt.http_status) == (PENDING, "unknown", 502)

    world.settle_calls()
    world.make_due()
    world.worker().run_once()
    assert world.methods() == ["optoutcustomer", "getcustomerinfo"]  # one confirmation text
    assert world.get(row.id).status == DONE and world.outcomes(row.id) == ["unknown", "already"]


def test_backoff_doubles_and_is_capped(world):
    leases = world.worker().leases
    for attempts in (1, 2, 3, 4, 10):
        delay = leases.backoff(attempts, None).total_seconds()
        expected = min(CAP, BASE * 2 ** (attempts - 1))
        assert expected * 0.5 <= delay <= expected
    assert leases.backoff(1, 30.0) == timedelta(seconds=30)


def test_retry_after_is_honoured_over_a_shorter_backoff(world):
    world.stop(tenant="smsonly")
    world.sandbox.fault(CRMTEXT, "429", retry_after=30)
    before = utcnow()
    world.worker().run_once()
    after = utcnow()
    row = world.delivery(CRMTEXT)
    assert (row.status, row.attempts) == (PENDING, 1)
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= after + timedelta(seconds=30) + SLACK
    assert world.attempts(row.id)[0].http_status == 429


def test_experience_retry_after_is_honoured(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE)
    world.sandbox.fault(EXPERIENCE, "429", retry_after=30)
    before = utcnow()
    world.worker().run_once()
    row = world.delivery(EXPERIENCE)
    assert (row.status, row.attempts) == (PENDING, 1)
    assert row.next_attempt_at >= before + timedelta(seconds=30)


@pytest.mark.parametrize("message", ["Store not found for keyword", "User not found", "Customer not active"])
def test_a_misleading_crmtext_4xx_is_retried_then_dead_never_done(world, message):
    # Issue 11.1: a wrong keyword or password answers 4xx with "not found"; counting that as done lost
    # every opt-out. The vendor's error shape: <response op=".." status="4xx" message="reason for Error">.
    body = f'<response op="optoutcustomer" status="401" message="{message}"></response>'
    world.stop(tenant="smsonly")
    world.sandbox.fault(CRMTEXT, "answer", body=body, count=10)
    row = world.delivery(CRMTEXT)
    for _ in range(4):  # max_attempts
        assert world.worker().run_once() == 1
        world.make_due()
    row = world.get(row.id)
    assert (row.status, row.attempts) == (DEAD, 4)
    assert message in row.last_error
    assert world.outcomes(row.id) == ["retry"] * 4
    assert world.methods() == ["optoutcustomer"] * 4


@pytest.mark.parametrize("message", sorted(DONE_ANSWERS))
def test_the_named_crmtext_answers_count_as_done(world, message):
    body = f'<response op="optoutcustomer" status="400" message="{message.capitalize()}."></response>'
    world.stop(tenant="smsonly")
    world.sandbox.fault(CRMTEXT, "answer", body=body)
    world.worker().run_once()
    row = world.delivery(CRMTEXT)
    assert row.status == DONE and world.outcomes(row.id) == ["already"]


def test_experience_permanent_refusal_kills_the_batch(world):
    world.email_opt_out("a@example.com", MARKETING_DECLINE)
    world.email_opt_out("b@example.com", MARKETING_DECLINE)
    world.sandbox.fault(EXPERIENCE, "400")
    world.worker().run_once()
    rows = world.deliveries(EXPERIENCE)
    assert [(r.status, r.attempts) for r in rows] == [(DEAD, 1), (DEAD, 1)]
    assert all("bad request (sandbox fault)" in r.last_error for r in rows)


def test_repeated_server_errors_end_dead_after_max_attempts(world):
    world.email_opt_out(EMAIL, MARKETING_DECLINE)
    world.sandbox.fault(EXPERIENCE, "500", count=10)
    row = world.delivery(EXPERIENCE)
    for attempt in range(1, 5):
        before = utcnow()
        assert world.worker().run_once() == 1
        after = utcnow()
        row = world.get(row.id)
        assert row.attempts == attempt and row.last_error
        if attempt < 4:
            assert row.status == PENDING
            assert_backoff(row, attempt, before, after)
            world.make_due()
    assert row.status == DEAD
    assert world.outcomes(row.id) == ["retry"] * 4
    world.make_due()
    assert world.worker().run_once() == 0
    assert len(world.experience_records()) == 4


def test_too_old_delivery_is_dead_on_its_next_failure(world):
    world.stop(tenant="smsonly")
    row = world.delivery(CRMTEXT)
    with world.engine.begin() as conn:  # max_age_hours defaults to 72
        conn.execute(update(Delivery).where(Delivery.id == row.id).values(
            created_at=utcnow() - timedelta(hours=73)))
    world.sandbox.fault(CRMTEXT, "429")
    world.worker().run_once()
    row = world.get(row.id)
    assert (row.status, row.attempts) == (DEAD, 1)
    assert "Too Many Requests" in row.last_error


def test_a_replayed_old_delivery_gets_its_attempts_and_age_back(world):
    from receiver.ledger.actions import replay_delivery

    world.stop(tenant="smsonly")
    row = world.delivery(CRMTEXT)
    with world.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.id == row.id).values(
            status=DEAD, attempts=10, created_at=utcnow() - timedelta(hours=100)))
    assert replay_delivery(world.engine, row.id) == DEAD
    world.sandbox.fault(CRMTEXT, "429", retry_after=0)
    world.worker().run_once()
    row = world.get(row.id)
    assert (row.status, row.attempts) == (PENDING, 1)  # retried, not dead: the age counts from the replay
    world.make_due()
    world.worker().run_once()
    assert world.get(row.id).status == DONE


def test_a_stop_lifted_by_start_before_delivery_is_not_delivered(world):
    world.stop()
    world._n += 1
    world.record(sms_signal(f"SM{world._n}", PHONE, OPT_IN, keyword="START"))
    assert world.worker().run_once() == 2
    assert world.methods() == [] and world.experience_records() == []
    assert {(d.crm, d.status, d.reason) for d in world.deliveries()} == {
        (CRMTEXT, SKIPPED, SUPERSEDED), (EXPERIENCE, SKIPPED, SUPERSEDED)}


def test_stop_start_stop_before_delivery_texts_once(world):
    world.stop()
    world._n += 1
    world.record(sms_signal(f"SM{world._n}", PHONE, OPT_IN, keyword="START"))
    world.stop()
    world.worker().run_once()
    assert world.methods() == ["optoutcustomer"]  # the later STOP's delivery; the first is superseded
    assert [d.status for d in world.deliveries(CRMTEXT)] == [SKIPPED, DONE]


def start(world: World, phone: str = PHONE, tenant: str = "grand") -> None:
    world._n += 1
    world.record(sms_signal(f"SM{world._n}", phone, OPT_IN, keyword="START"), tenant=tenant)


def test_a_start_committed_mid_batch_stops_the_opt_out_that_follows(make_world, monkeypatch):
    # Issue 10.11: owed-ness was checked once per claim, so this STOP was still sent after START.
    world = make_world(smsonly_concurrency=1)
    first, second = "+15551110001", "+15551110002"
    world.stop(first, tenant="smsonly")
    world.stop(second, tenant="smsonly")
    real_opt_out = CrmTextClient.opt_out

    def opt_out_while_the_guest_texts_start(client, ten_digits):
        if ten_digits == first[2:]:
            start(world, second, tenant="smsonly")  # committed while the worker is on the first call
        return real_opt_out(client, ten_digits)

    monkeypatch.setattr(CrmTextClient, "opt_out", opt_out_while_the_guest_texts_start)
    assert world.worker().run_once() == 2
    assert [c["phone_number"] for c in world.sandbox.calls(CRMTEXT)] == [first[2:]]
    one, two = world.deliveries(CRMTEXT)
    assert world.get(one.id).status == DONE
    assert (world.get(two.id).status, world.get(two.id).reason) == (SKIPPED, SUPERSEDED)
    assert world.attempts(two.id) == []


def test_a_start_committed_between_experience_batches_trims_the_next_batch(make_world, monkeypatch):
    world = make_world(batch_size=1, experience_concurrency=1)
    first, second = "+15551110001", "+15551110002"
    world.stop(first, tenant="grand")
    world.stop(second, tenant="grand")
    real_opt_out = ExperienceClient.opt_out

    def opt_out_while_the_guest_texts_start(client, records):
        if records[0]["phone"] == first:
            start(world, second)
        return real_opt_out(client, records)

    monkeypatch.setattr(ExperienceClient, "opt_out", opt_out_while_the_guest_texts_start)
    worker = world.worker()
    worker.deliver(Lane(EXPERIENCE, "grand"), [row for row in worker.leases.claim() if row.crm == EXPERIENCE])
    assert [[r["phone"] for r in batch] for batch in world.experience_records()] == [[first]]
    assert [world.get(d.id).status for d in world.deliveries(EXPERIENCE)] == [DONE, SKIPPED]


def test_an_email_linked_to_two_phones_sends_both_phones_states(world):
    # Issue 10.8: records were coalesced by email alone, so only one phone's sms_ban reached Experience
    # while both deliveries were marked done.
    other = "+15559990000"
    world.email_opt_out(EMAIL, MARKETING_DECLINE, phone=PHONE)  # link tokens carrying each phone
    world.email_opt_out(EMAIL, MARKETING_DECLINE, phone=other)
    world.worker().run_once()
    world.stop(PHONE)
    world.stop(other)
    world.worker().run_once()
    [batch] = world.experience_records()[1:]
    assert sorted((r["email"], r["phone"], "sms_ban" in r) for r in batch) == [
        (EMAIL, PHONE, True), (EMAIL, other, True)]
    assert {d.status for d in world.deliveries(EXPERIENCE)} == {DONE}


def test_an_experience_answer_it_cannot_read_is_never_a_success(world):
    # Issue 10.9: an `errors` body of an unknown shape counted as success for the whole batch.
    world.email_opt_out("a@example.com", MARKETING_DECLINE)
    world.email_opt_out("b@example.com", MARKETING_DECLINE)
    world.sandbox.fault(EXPERIENCE, "answer", body='{"successes": {}, "errors": "batch refused"}')
    world.worker().run_once()
    rows = world.deliveries(EXPERIENCE)
    assert [(r.status, r.attempts) for r in rows] == [(PENDING, 1), (PENDING, 1)]
    assert all(world.outcomes(r.id) == ["unknown"] for r in rows)
    world.make_due()
    world.worker().run_once()
    assert {r.status for r in world.deliveries(EXPERIENCE)} == {DONE}


# -- unknown outcomes and leases ---------------------------------------------------------------


def wait_until_opted_out(world: World, tenant: str = "grand", timeout: float = 5.0) -> None:
    """Wait until the sandbox has applied a slow call (it sleeps, then applies it)."""
    client = CrmTextClient(world.settings.tenants[tenant].crmtext)
    deadline = time.monotonic() + timeout
    while client.customer_status(TEN) != 5:
        assert time.monotonic() < deadline, "the sandbox never applied the slow opt-out"
        time.sleep(0.05)


def test_unknown_outcome_is_checked_before_calling_again(make_world):
    world = make_world(crmtext_timeout=0.5)
    world.stop()
    world.sandbox.fault(CRMTEXT, "slow", delay=1.0)
    world.worker().run_once()

    row = world.delivery(CRMTEXT)
    assert (row.status, row.attempts) == (PENDING, 1)
    assert row.last_error
    assert world.outcomes(row.id) == ["unknown"]
    assert world.delivery(EXPERIENCE).status == DONE

    wait_until_opted_out(world)  # the call timed out for us but happened at the CRM
    seen = len(world.sandbox.calls(CRMTEXT))
    world.settle_calls()
    world.make_due()
    assert world.worker().run_once() == 1

    assert world.methods()[seen:] == ["getcustomerinfo"]
    assert world.methods().count("optoutcustomer") == 1
    row = world.get(row.id)
    assert (row.status, row.attempts, row.last_error) == (DONE, 2, None)
    assert world.outcomes(row.id) == ["unknown", "already"]


def test_unknown_outcome_that_did_not_happen_is_sent_again(make_world):
    world = make_world(crmtext_timeout=0.5)
    world.stop(tenant="grand")
    row = world.delivery(CRMTEXT)
    with world.engine.begin() as conn:  # an earlier attempt timed out, the CRM never saw it
        conn.execute(insert(Attempt).values(delivery_id=row.id, started_at=utcnow() - timedelta(minutes=1),
                                            outcome="unknown"))
    world.worker().run_once()
    assert world.methods() == ["getcustomerinfo", "optoutcustomer"]
    assert world.get(row.id).status == DONE


def test_the_status_is_not_asked_before_the_unknown_call_s_deadline_has_passed(make_world):
    # Issue 11.4: asked too soon, getcustomerinfo raced the first call still being applied,
    # read "not opted out", and a second optoutcustomer texted the guest again.
    world = make_world(crmtext_timeout=0.5)
    world.stop(tenant="grand")
    world.sandbox.fault(CRMTEXT, "slow", delay=1.0)
    world.worker().run_once()
    row = world.delivery(CRMTEXT)
    [attempt] = world.attempts(row.id)
    settled = attempt.started_at + timedelta(seconds=0.5 + CALL_MARGIN_SECONDS)
    assert world.get(row.id).next_attempt_at >= settled

    world.make_due()  # due at once, as after a crash or a short backoff
    assert world.worker().run_once() == 1
    assert world.methods() == ["optoutcustomer"]  # no status asked yet
    later = world.get(row.id)
    assert (later.status, later.attempts, later.lease_owner) == (PENDING, 1, None)
    assert later.next_attempt_at >= settled
    assert world.outcomes(row.id) == ["unknown"]

    wait_until_opted_out(world)  # the slow call lands
    seen = len(world.methods())
    world.settle_calls()
    world.make_due()
    world.worker().run_once()
    assert world.methods()[seen:] == ["getcustomerinfo"]
    assert world.methods().count("optoutcustomer") == 1
    assert world.get(row.id).status == DONE


def test_crash_takeover_waits_for_the_lease_then_checks_first(world):
    world.stop()
    dead = world.worker("dead")
    claimed = dead.leases.claim()
    assert len(claimed) == 2 and all(r.lease_owner == "dead" for r in claimed)
    row = world.delivery(CRMTEXT)
    with world.engine.begin() as conn:  # it wrote its attempt as started, then died mid-call
        conn.execute(insert(Attempt).values(delivery_id=row.id, started_at=utcnow() - timedelta(seconds=5),
                                            outcome="started"))

    w2 = world.worker("w2")
    assert w2.run_once() == 0
    assert world.sandbox.calls(CRMTEXT) == [] and world.sandbox.calls(EXPERIENCE) == []
    assert {d.lease_owner for d in world.deliveries()} == {"dead"}

    world.expire_leases()
    assert w2.run_once() == 2
    assert world.methods() == ["getcustomerinfo", "optoutcustomer"]
    assert [c["phone_number"] for c in world.sandbox.calls(CRMTEXT)] == [TEN, TEN]
    assert {(d.status, d.lease_owner) for d in world.deliveries()} == {(DONE, None)}
    assert world.outcomes(row.id) == ["started", "ok"]


class Died(BaseException):
    """The process dying mid-call: nothing of the worker's own code runs after it."""


def test_a_worker_that_dies_after_its_call_is_taken_over_without_a_second_call(world, monkeypatch):
    world.stop(tenant="smsonly")
    real_opt_out = CrmTextClient.opt_out

    def opt_out_then_die(client, ten_digits):
        real_opt_out(client, ten_digits)
        raise Died

    monkeypatch.setattr(CrmTextClient, "opt_out", opt_out_then_die)
    with pytest.raises(Died):
        world.worker("dead").run_once()
    monkeypatch.setattr(CrmTextClient, "opt_out", real_opt_out)

    row = world.delivery(CRMTEXT)
    assert (row.status, row.attempts, row.lease_owner) == (PENDING, 0, "dead")
    assert world.outcomes(row.id) == ["started"]  # written before the call, so a successor knows

    w2 = world.worker("w2")
    assert w2.run_once() == 0
    world.expire_leases()
    world.settle_calls()  # the lease outlasts the call's deadline and margin (settings enforce it)
    assert w2.run_once() == 1
    assert world.methods() == ["optoutcustomer", "getcustomerinfo"]
    row = world.get(row.id)
    assert (row.status, row.attempts, row.lease_owner) == (DONE, 1, None)
    assert world.outcomes(row.id) == ["started", "already"]


def test_a_taken_over_lease_is_left_to_its_new_owner(world):
    world.stop(tenant="smsonly")
    a, b = world.worker("A"), world.worker("B")
    [row_a] = a.leases.claim()
    world.expire_leases()
    [row_b] = b.leases.claim()
    taken = world.get(row_b.id)
    assert taken.lease_owner == "B"

    assert a.leases.renew([row_a]) == []
    # A's late failure must not reschedule B's row
    assert [f.status for f in a.leases.finish([Report(row_a, Outcome.RETRY, detail="late failure of A")])] == [
        TAKEN_OVER]
    a.deliver(Lane(CRMTEXT, "smsonly"), [row_a])  # A does not call for a row it lost
    a.leases.release()

    after = world.get(row_b.id)
    assert (after.status, after.attempts, after.lease_owner, after.lease_until, after.next_attempt_at,
            after.last_error) == (PENDING, 0, "B", taken.lease_until, taken.next_attempt_at, None)
    assert world.sandbox.calls(CRMTEXT) == []

    b.deliver(Lane(CRMTEXT, "smsonly"), [row_b])
    assert world.get(row_b.id).status == DONE
    assert world.methods() == ["optoutcustomer"]


def test_a_call_that_succeeded_after_its_lease_was_lost_is_not_repeated(world):
    world.stop(tenant="smsonly")
    a, b = world.worker("A"), world.worker("B")
    [row_a] = a.leases.claim()
    # what CRM Text's protocol does just before calling: renew, then write the attempt as started
    assert [r.id for r in a.leases.renew([row_a])] == [row_a.id]
    started = a.leases.start(row_a)
    assert started is not None and world.outcomes(row_a.id) == ["started"]
    world.expire_leases()  # A stalls mid-call, its lease runs out and B claims the row
    [row_b] = b.leases.claim()
    CrmTextClient(world.settings.tenants["smsonly"].crmtext).opt_out(TEN)  # A's call lands
    a.leases.finish([Report(row_a, Outcome.OK, attempt_id=started.attempt_id, detail="ok")])
    assert world.get(row_a.id).lease_owner == "B"

    b.deliver(Lane(CRMTEXT, "smsonly"), [row_b])
    # The guest got one confirmation text; A's recorded success is proof enough, no need to ask.
    assert world.methods() == ["optoutcustomer"]
    assert world.get(row_b.id).status == DONE
    assert world.outcomes(row_b.id) == ["ok", "already"]


# -- claims ------------------------------------------------------------------------------------


def test_default_owner_fits_the_lease_column(world, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "receiver-worker-" + "x" * 80)
    one, two = Worker(world.settings, world.engine), Worker(world.settings, world.engine)
    assert len(one.owner) <= 64 and len(two.owner) <= 64  # deliveries.lease_owner is String(64)
    assert one.owner != two.owner
    world.stop(tenant="smsonly")
    assert one.run_once() == 1
    assert world.delivery(CRMTEXT).status == DONE


def test_release_hands_claims_back(world):
    world.stop()
    w1, w2 = world.worker("w1"), world.worker("w2")
    assert len(w1.leases.claim()) == 2
    assert {d.lease_owner for d in world.deliveries()} == {"w1"}
    w1.leases.release()
    assert {(d.status, d.lease_owner, d.lease_until) for d in world.deliveries()} == {(PENDING, None, None)}

    assert len(w2.leases.claim()) == 2  # at once, without waiting for a lease to run out
    w1.leases.release()  # only its own claims
    assert {d.lease_owner for d in world.deliveries()} == {"w2"}


def test_skipped_deliveries_are_never_claimed(world):
    world.stop("+447911123456")  # not a NANP number: no CRM Text
    world.stop("+15550001111", reported_by=CRMTEXT)  # CRM Text reported it itself
    skipped = [d for d in world.deliveries(CRMTEXT)]
    assert [d.status for d in skipped] == [SKIPPED, SKIPPED]
    with world.engine.begin() as conn:
        conn.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(hours=1)))

    assert world.worker().run_once() == 2  # the two Experience deliveries only
    assert world.sandbox.calls(CRMTEXT) == []
    for d in skipped:
        now = world.get(d.id)
        assert (now.status, now.attempts, now.lease_owner) == (SKIPPED, 0, None)
        assert world.attempts(d.id) == []
    assert {d.status for d in world.deliveries(EXPERIENCE)} == {DONE}


def test_sigterm_stops_the_loop_and_releases_claims(make_world, monkeypatch):
    world = make_world(smsonly_concurrency=1)  # the second call waits behind the first
    handlers = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.__setitem__(signum, handler))
    world.stop("+15551110001", tenant="smsonly")
    world.stop("+15551110002", tenant="smsonly")
    first, second = world.deliveries(CRMTEXT)
    world.sandbox.fault(CRMTEXT, "slow", delay=0.5)

    worker = world.worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not world.sandbox.calls(CRMTEXT):  # the first call is under way
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert set(handlers) == {signal.SIGTERM, signal.SIGINT}
        handlers[signal.SIGTERM](signal.SIGTERM, None)
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        worker.stopping.set()
        thread.join(timeout=5)

    # The call under way was finished and recorded; the next one was handed back, not made.
    assert world.get(first.id).status == DONE
    left = world.get(second.id)
    assert (left.status, left.attempts, left.lease_owner, left.lease_until) == (PENDING, 0, None, None)
    assert world.methods() == ["optoutcustomer"]
    assert world.worker("w2").run_once() == 1  # another worker picks it up at once
    assert world.get(second.id).status == DONE


def test_deliveries_of_a_tenant_that_left_the_config_are_dead_lettered_not_blocking(settings, engine, ledger):
    import dataclasses

    from receiver.ledger.models import Delivery
    from receiver.signals import Inbound
    from receiver.sources.sms import sms_signal

    ledger.record(settings.sources["twilio"], Inbound("SMgone", [sms_signal("SMgone", "+15550007777", "opt_out")]),
                  b"x")
    shrunk = dataclasses.replace(settings, tenants={})
    assert Worker(shrunk, engine, owner="w1").run_once() == 2
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.status, Delivery.last_error)).all()
    assert {r.status for r in rows} == {"dead"}
    assert all("no experience" in r.last_error or "no crmtext" in r.last_error for r in rows)


def test_the_worker_finishes_each_unit_and_stops_the_lane_on_a_failed_call(world, monkeypatch):
    # Issues 12.2 and 16: the worker only loops; a lane's protocol (crm/) makes one call per unit and
    # returns its reports, which the worker finishes (once the call slot is free for the lane's next
    # unit); after a failed call the lane pauses and its queued rows are handed back, never called.
    phones = ["+15551110001", "+15551110002", "+15551110003"]
    for phone in phones:
        world.stop(phone, tenant="smsonly")
    called = []

    class Scripted:
        unit, concurrency, max_per_second = 1, 1, None  # one call at a time: the third waits for the second

        def deliver(self, unit, books):
            [row] = unit
            called.append(row.id)
            if len(called) == 1:
                return [Report(row, Outcome.OK, started=books.now())]
            if len(called) == 2:
                return [Report(row, Outcome.RETRY, error=Retryable("unavailable", status=503))]
            raise AssertionError("called after its CRM failed a call")

    monkeypatch.setitem(lanes.PROTOCOLS, CRMTEXT, lambda config: Scripted())
    before = utcnow()
    assert world.worker().run_once() == 3
    first, second, third = world.deliveries(CRMTEXT)
    assert called == [first.id, second.id]
    assert world.get(first.id).status == DONE
    assert (world.get(second.id).status, world.outcomes(second.id)) == (PENDING, ["retry"])
    rest = world.get(third.id)
    assert (rest.status, rest.attempts, rest.lease_owner) == (PENDING, 0, None)
    assert rest.next_attempt_at > before and world.sandbox.calls(CRMTEXT) == []
