"""Each CRM's delivery protocol on its own, no database and no worker: against the in-thread sandbox
(answering in the vendors' documented shapes, see tests/security/test_crm_answers.py), with the
ledger's books kept in memory."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from receiver.crm.crmtext import CrmTextDelivery
from receiver.crm.delivery import Outcome, Started
from receiver.crm.errors import OutcomeUnknown, Permanent, Retryable
from receiver.crm.experience import ExperienceDelivery
from receiver.settings import CALL_MARGIN_SECONDS, CrmTextConfig, ExperienceConfig

TEN = "5551234567"


class MemoryBooks:
    """The ``Books`` a protocol is handed, in memory: earlier attempts, rows held no more, what was asked."""

    def __init__(self, attempts: dict | None = None, gone: set | None = None):
        self.attempts = attempts or {}  # row id -> [(outcome, started_at)]
        self.gone = gone or set()  # ids of rows no longer ours, or owed no more
        self.started: list[int] = []
        self.postponed: list[tuple[list[int], datetime]] = []

    def now(self) -> datetime:
        return datetime.now(UTC)

    def renew(self, rows: list) -> list:
        return [row for row in rows if row.id not in self.gone]

    def start(self, row, unless=()) -> Started | None:
        if row.id in self.gone:
            return None
        earlier = tuple(SimpleNamespace(outcome=o, started_at=at) for o, at in self.attempts.get(row.id, [])
                        if o in unless)
        if earlier:
            return Started(None, self.now(), earlier)
        self.started.append(row.id)
        return Started(len(self.started), self.now())

    def postpone(self, rows: list, until: datetime, why: str) -> None:
        self.postponed.append(([row.id for row in rows], until))


def crmtext(sandbox) -> CrmTextDelivery:
    return CrmTextDelivery(CrmTextConfig(base_url=f"{sandbox.url}/crmtext/smapi/rest", user="u", password="p",
                                         keyword="GRAND", timeout=2.0))


def experience(sandbox, batch_size: int) -> ExperienceDelivery:
    return ExperienceDelivery(ExperienceConfig(base_url=f"{sandbox.url}/experience", partner_token="part",
                                               hotel_token="hotel", timeout=2.0, batch_size=batch_size))


def sms_row(row_id: int, ten: str = TEN):
    return SimpleNamespace(id=row_id, payload={"phone": f"+1{ten}", "ten_digits": ten})


def email_row(row_id: int, email: str):
    return SimpleNamespace(id=row_id, payload={"email": email, "phone": None,
                                               "states": {"marketing_decline": "2026-11-22T10:15:00+00:00"}})


def methods(sandbox) -> list[str]:
    return [c["method"] for c in sandbox.calls("crmtext")]


def test_outcomes_of_failed_calls():
    assert Outcome.of(Permanent("refused")) == Outcome.PERMANENT
    assert Outcome.of(OutcomeUnknown("timed out")) == Outcome.UNKNOWN
    assert Outcome.of(Retryable("429")) == Outcome.RETRY


def test_crmtext_reports_one_call_per_row_with_its_started_attempt(sandbox):
    books, protocol = MemoryBooks(), crmtext(sandbox)
    steps = [protocol.deliver([sms_row(1)], books), protocol.deliver([sms_row(2, "5559876543")], books)]
    assert [[(r.row.id, r.outcome, r.attempt_id) for r in step] for step in steps] == [
        [(1, Outcome.OK, 1)], [(2, Outcome.OK, 2)]]
    assert books.started == [1, 2] and methods(sandbox) == ["optoutcustomer", "optoutcustomer"]


def test_crmtext_does_not_call_for_a_row_it_holds_no_more(sandbox):
    books = MemoryBooks(gone={1})
    assert crmtext(sandbox).deliver([sms_row(1)], books) == []
    assert methods(sandbox) == [] and books.started == []


def test_crmtext_waits_for_an_unknown_call_to_settle_without_calling(sandbox):
    started = datetime.now(UTC)
    books = MemoryBooks(attempts={1: [(Outcome.UNKNOWN, started)]})
    assert crmtext(sandbox).deliver([sms_row(1)], books) == []
    assert books.postponed == [([1], started + timedelta(seconds=2.0 + CALL_MARGIN_SECONDS))]
    assert methods(sandbox) == []


def test_crmtext_asks_before_repeating_a_settled_unknown_call(sandbox):
    protocol = crmtext(sandbox)
    protocol.client.opt_out(TEN)  # the unknown call did land
    books = MemoryBooks(attempts={1: [(Outcome.UNKNOWN, datetime.now(UTC) - timedelta(hours=1))]})
    [report] = protocol.deliver([sms_row(1)], books)
    assert (report.outcome, report.attempt_id) == (Outcome.ALREADY, None) and report.started is not None
    assert methods(sandbox) == ["optoutcustomer", "getcustomerinfo"] and books.started == []


def test_crmtext_reports_a_failed_call_with_its_error(sandbox):
    sandbox.fault("crmtext", "429", retry_after=30)
    [report] = crmtext(sandbox).deliver([sms_row(1)], MemoryBooks())
    assert report.outcome == Outcome.RETRY and report.error is not None
    assert (report.http_status, report.error.retry_after, report.attempt_id) == (429, 30.0, 1)


def test_experience_sends_one_call_per_unit_of_at_most_a_batch(sandbox):
    rows = [email_row(i, f"guest{i}@example.com") for i in range(3)]
    protocol, books = experience(sandbox, batch_size=2), MemoryBooks()
    with pytest.raises(ValueError):
        protocol.deliver(rows, books)
    steps = [protocol.deliver(rows[:2], books), protocol.deliver(rows[2:], books)]
    assert [[(r.row.id, r.outcome, r.http_status) for r in step] for step in steps] == [
        [(0, Outcome.OK, 200), (1, Outcome.OK, 200)], [(2, Outcome.OK, 200)]]
    assert [len(c["records"]) for c in sandbox.calls("experience") if c["method"] == "opt_out"] == [2, 1]


def test_experience_sends_only_what_the_ledger_still_gives(sandbox):
    rows = [email_row(1, "a@example.com"), email_row(2, "b@example.com")]
    step = experience(sandbox, batch_size=5).deliver(rows, MemoryBooks(gone={1}))
    assert [r.row.id for r in step] == [2]
    [call] = [c for c in sandbox.calls("experience") if c["method"] == "opt_out"]
    assert [r["email"] for r in call["records"]] == ["b@example.com"]


def test_experience_failed_call_reports_every_row_of_the_batch(sandbox):
    sandbox.fault("experience", "500")
    rows = [email_row(1, "a@example.com"), email_row(2, "b@example.com")]
    step = experience(sandbox, batch_size=5).deliver(rows, MemoryBooks())
    assert [(r.row.id, r.outcome, r.http_status) for r in step] == [(1, Outcome.RETRY, 500), (2, Outcome.RETRY, 500)]
    assert all(r.error is not None for r in step)
