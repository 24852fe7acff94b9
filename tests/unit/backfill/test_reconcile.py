"""`receiver reconcile` against the in-thread sandbox: paging, the CRM's times, idempotence, resuming,
retries and errors (the pass and wording every backfill shares), and which CRM deliveries a state read
from Experience owes.

Backoff sleeps are recorded instead of slept; a failure mid-way is injected by a response hook that
queues a sandbox fault once the first page has been answered.
"""

from datetime import UTC, datetime, timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from receiver.backfill.reconcile import SOURCE, Reconciler
from receiver.cli import cli
from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow, SyncCursor, utcnow
from receiver.ledger.outbox import PENDING, SKIPPED
from receiver.ledger.record import Ledger
from receiver.signals import OPT_IN, OPT_OUT, Inbound
from receiver.sources.experience_sync import event_id, parse_time
from receiver.sources.sms import sms_signal
from receiver.states import (
    CRMTEXT,
    EXPERIENCE,
    MAIL_BAN,
    MARKETING_DECLINE,
    MARKETING_DECLINE_SMS,
    SMS_BAN,
)
from receiver.worker import Worker
from tests.helpers import base_env, config_toml, make_settings

US_PHONE, FR_PHONE = "+15551230001", "+33612345678"
ANNEX = """
[tenants.annex]
experience = { base_url = "SANDBOX_URL/experience", partner_token = "partner", hotel_token = "annex-hotel" }
"""
# Five recipients, two a page: three pages.
RECORDS = [
    {"email": "ann@example.com", "mail_ban": "2022-01-01 10:10:09", "marketing_decline": "2021-12-26 15:04:06"},
    {"email": "bob@example.com", "phone": US_PHONE, "sms_ban": "2023-03-04 05:06:07"},
    {"phone": FR_PHONE, "sms_ban": "2023-05-06 07:08:09"},
    {"email": "cat@example.com", "marketing_decline_sms": "2024-02-29 23:59:59"},
    {"email": "Dan@Example.COM", "marketing_decline": "2025-07-01 00:00:00"},
]
EXPECTED = {
    ("ann@example.com", MAIL_BAN): datetime(2022, 1, 1, 10, 10, 9, tzinfo=UTC),
    ("ann@example.com", MARKETING_DECLINE): datetime(2021, 12, 26, 15, 4, 6, tzinfo=UTC),
    (US_PHONE, SMS_BAN): datetime(2023, 3, 4, 5, 6, 7, tzinfo=UTC),
    (FR_PHONE, SMS_BAN): datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC),
    ("cat@example.com", MARKETING_DECLINE_SMS): datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    ("dan@example.com", MARKETING_DECLINE): datetime(2025, 7, 1, tzinfo=UTC),
}


def seed(sandbox, records, page_size: int = 2) -> None:
    resp = requests.post(f"{sandbox.url}/_sandbox/experience/records",
                         json={"records": records, "page_size": page_size}, timeout=5)
    resp.raise_for_status()


@pytest.fixture
def xp_settings(settings, tmp_path, database_url, sandbox):
    return make_settings(tmp_path, database_url, config_toml(sandbox.url, extra=ANNEX))


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def reconciler(xp_settings, engine, sleeps) -> Reconciler:
    return Reconciler(xp_settings, engine, sleep=sleeps.append)


def retrieves(sandbox) -> list[dict]:
    return [c for c in sandbox.calls("experience") if c["method"] == "retrieve"]


def consent(engine) -> dict:
    with engine.connect() as conn:
        return {(r.identity, r.state): r.since for r in conn.execute(select(Consent))}


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def deliveries(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(Delivery).order_by(Delivery.id)).all()


def cursor(engine, tenant: str = "grand"):
    with engine.connect() as conn:
        return conn.execute(select(SyncCursor).where(SyncCursor.tenant == tenant)).first()


def test_three_pages_are_followed_and_states_keep_the_crm_time(reconciler, sandbox, engine):
    seed(sandbox, RECORDS)
    summary = reconciler.run("grand")
    assert summary.error is None
    assert (summary.pages, summary.recipients, summary.states, summary.new_signals, summary.changes) == (3, 5, 6, 6, 6)
    calls = retrieves(sandbox)
    # Pages 2 and 3 follow next_page_url, which lacks since: the client adds it (else the sandbox says 400).
    assert [c["since"] for c in calls] == ["1970-01-01"] * 3 and not any(c.get("fault") for c in calls)
    assert consent(engine) == EXPECTED
    with engine.connect() as conn:
        signals = conn.execute(select(SignalRow).order_by(SignalRow.id)).all()
    assert {s.source for s in signals} == {SOURCE} and {s.kind for s in signals} == {OPT_OUT}
    assert {(s.detail["state"], s.occurred_at) for s in signals} == {(state, at) for (_, state), at in EXPECTED.items()}
    assert signals[0].event_id == event_id("grand", "ann@example.com", MAIL_BAN, EXPECTED[("ann@example.com", MAIL_BAN)])
    assert summary.line() == ("grand: since 1970-01-01: 3 pages, 5 recipients, 6 states recorded (6 new), "
                              "6 new changes, 0 skipped; complete")


def test_a_second_run_changes_nothing(reconciler, sandbox, engine):
    seed(sandbox, RECORDS)
    started = utcnow()
    reconciler.run("grand")
    before = [count(engine, model) for model in (RequestRecord, SignalRow, Consent, Delivery)]
    again = reconciler.run("grand")
    assert again.error is None and (again.pages, again.states, again.new_signals, again.changes) == (3, 6, 0, 0)
    assert [count(engine, model) for model in (RequestRecord, SignalRow, Consent, Delivery)] == before
    # The second pass starts one day before the first one began; an explicit --since is taken as given.
    assert retrieves(sandbox)[-1]["since"] == (started - timedelta(days=1)).strftime("%Y-%m-%d")
    assert reconciler.run("grand", "2020-01-01").new_signals == 0
    assert retrieves(sandbox)[-1]["since"] == "2020-01-01"
    assert consent(engine) == EXPECTED


def test_no_write_back_to_experience_and_crmtext_gets_the_us_sms_ban(reconciler, sandbox, engine, xp_settings):
    seed(sandbox, RECORDS)
    reconciler.run("grand")
    rows = deliveries(engine)
    assert [r.crm for r in rows] == [CRMTEXT, CRMTEXT]
    by_phone = {r.identity: r for r in rows}
    assert by_phone[US_PHONE].status == PENDING and by_phone[US_PHONE].payload["ten_digits"] == "5551230001"
    assert by_phone[FR_PHONE].status == SKIPPED and "not a US" in by_phone[FR_PHONE].reason
    Worker(xp_settings, engine, owner="w1").run_once()
    assert [(c["method"], c["phone_number"]) for c in sandbox.calls("crmtext")] == [("optoutcustomer", "5551230001")]
    assert [c for c in sandbox.calls("experience") if c["method"] == "opt_out"] == []
    assert not any(r.crm == EXPERIENCE for r in deliveries(engine))


def test_a_stopped_pass_resumes_at_the_page_it_stopped_at(reconciler, sandbox, engine, xp_settings, sleeps):
    seed(sandbox, RECORDS)
    session, injected = requests.Session(), []

    def fail_the_next_call(resp, *args, **kwargs):
        if not injected:
            injected.append(resp.url)
            sandbox.fault("experience", "400")

    session.hooks["response"].append(fail_the_next_call)
    first = Reconciler(xp_settings, engine, session=session, sleep=sleeps.append).run("grand")
    assert first.pages == 1 and sleeps == []  # a 400 is not retried
    assert first.line().startswith("grand: since 1970-01-01: 1 pages, 2 recipients")
    assert "stopped: experience: HTTP 400 from" in first.line()
    assert first.line().endswith("; the next run resumes at this page")
    saved = cursor(engine)
    assert saved.since == "1970-01-01" and "cursor=2" in saved.next_url and saved.completed_at is None
    assert len(consent(engine)) == 3  # page 1: ann (two states) and bob

    second = reconciler.run("grand")
    assert second.error is None and second.resumed and second.pages == 2 and second.recipients == 3
    assert second.line().startswith("grand: resumed pass since 1970-01-01: 2 pages")
    assert consent(engine) == EXPECTED
    assert len(retrieves(sandbox)) == 4  # page 1, page 2 refused, then pages 2 and 3
    done = cursor(engine)
    assert done.next_url is None and done.completed_at is not None
    assert done.since == (saved.started_at - timedelta(days=1)).strftime("%Y-%m-%d")


def test_retryable_errors_back_off_and_honour_retry_after(reconciler, sandbox, engine, sleeps):
    seed(sandbox, RECORDS[:1])
    sandbox.fault("experience", "500", count=2)
    sandbox.fault("experience", "429", retry_after=7)
    summary = reconciler.run("grand")
    assert summary.error is None and summary.changes == 2
    assert len(retrieves(sandbox)) == 4
    # [worker] of the test config: base 0.2 s, cap 1 s, jitter in [0.5, 1]; Retry-After wins when longer.
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4 and sleeps[2] == 7


def test_retries_are_bounded(reconciler, sandbox, engine, sleeps):
    seed(sandbox, RECORDS)
    sandbox.fault("experience", "500", count=10)
    summary = reconciler.run("grand")
    assert summary.error == "experience: HTTP 500, gave up after 4 attempts; the next run resumes at this page"
    assert len(retrieves(sandbox)) == 4 and len(sleeps) == 3
    assert cursor(engine) is None and consent(engine) == {}


@pytest.mark.parametrize("mode, error", [
    ("400", "experience: HTTP 400 from SANDBOX_URL/experience/api/xp-unsubscribe/retrieve-opt-out"),
    ("malformed", "experience: unexpected answer: not JSON (HTTP 200, 10 bytes)"),
    ("truncated", "experience: unexpected answer: not JSON (HTTP 200, 20 bytes)"),
    ("answer", "experience: unexpected answer: no recipients list"),
])
def test_a_refused_or_garbled_page_stops_the_tenant_at_once(reconciler, sandbox, engine, sleeps, mode, error):
    """Like every backfill's: a page that is not the documented one is not retried; the next run resumes there."""
    seed(sandbox, RECORDS)
    sandbox.fault("experience", mode, body='{"recipients": "none"}')
    summary = reconciler.run("grand")
    assert summary.error == error.replace("SANDBOX_URL", sandbox.url) + "; the next run resumes at this page"
    assert summary.pages == 0 and len(retrieves(sandbox)) == 1 and sleeps == []
    assert cursor(engine) is None and consent(engine) == {}


def test_refused_credentials_stop_the_tenant_with_one_line_naming_it(reconciler, sandbox, engine, sleeps):
    seed(sandbox, RECORDS)
    sandbox.fault("experience", "answer", http_status=401, body='"unauthenticated"')
    summary = reconciler.run("grand")
    assert summary.line() == ("grand: since 1970-01-01: 0 pages, 0 recipients, 0 states recorded (0 new), "
                              "0 new changes, 0 skipped; stopped: experience: credentials refused (HTTP 401): "
                              "check the tenant's experience partner_token and hotel_token")
    assert len(retrieves(sandbox)) == 1 and sleeps == [] and consent(engine) == {}


def test_a_state_set_before_a_later_re_consent_is_not_applied_again(reconciler, sandbox, engine, xp_settings):
    ledger = Ledger(engine, xp_settings.tenants, xp_settings.identity_key)
    twilio = xp_settings.sources["twilio"]
    ledger.record(twilio, _inbound("SM1", OPT_OUT), b"stop")
    ledger.record(twilio, _inbound("SM2", OPT_IN), b"start")
    assert consent(engine) == {}
    old = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    seed(sandbox, [{"phone": US_PHONE, "sms_ban": old}])
    summary = reconciler.run("grand")
    assert (summary.states, summary.new_signals, summary.changes) == (1, 1, 0)
    assert consent(engine) == {}
    with engine.connect() as conn:
        ignored = conn.execute(select(SignalRow).where(SignalRow.source == SOURCE)).one()
    assert ignored.kind == "other" and "re-consent" in ignored.detail["ignored"]

    later = (utcnow() + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    seed(sandbox, [{"phone": US_PHONE, "sms_ban": later}])
    assert reconciler.run("grand").changes == 1
    assert set(consent(engine)) == {(US_PHONE, SMS_BAN)}


def _inbound(sid: str, intent: str) -> Inbound:
    return Inbound(sid, [sms_signal(sid, US_PHONE, intent)])


def test_unusable_records_and_times_are_skipped(reconciler, sandbox, engine):
    seed(sandbox, [{"email": "not an email", "mail_ban": "2022-01-01 00:00:00"},
                   {"email": "eve@example.com", "mail_ban": "01/02/2022", "marketing_decline": "2022-01-01 00:00:00",
                    "unknown_state": "2022-01-01 00:00:00"}])
    summary = reconciler.run("grand")
    assert (summary.recipients, summary.states, summary.skipped) == (2, 1, 2)
    assert set(consent(engine)) == {("eve@example.com", MARKETING_DECLINE)}
    assert parse_time("2022-01-01 10:10:09") == datetime(2022, 1, 1, 10, 10, 9, tzinfo=UTC)
    assert parse_time(None) is None and parse_time("2022-01-01T10:10:09Z") is None


def test_cli_prints_a_line_per_tenant_and_a_failing_tenant_does_not_stop_the_others(
        xp_settings, sandbox, engine, database_url, tmp_path):
    seed(sandbox, RECORDS)
    sandbox.fault("experience", "400")  # the first tenant's first call: grand
    env = base_env(database_url, tmp_path / "receiver.toml")
    result = CliRunner().invoke(cli, ["reconcile"], env=env)
    assert result.exit_code == 1, result.output
    [failed] = [line for line in result.stderr.splitlines() if line.startswith("grand:")]  # logs go there too
    assert failed.startswith("grand: since 1970-01-01: 0 pages") and "stopped: experience: HTTP 400 from" in failed
    assert result.stdout.strip() == ("annex: since 1970-01-01: 3 pages, 5 recipients, 6 states recorded (6 new), "
                                     "6 new changes, 0 skipped; complete")

    again = CliRunner().invoke(cli, ["reconcile", "--tenant", "grand", "--since", "2021-01-01"], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("grand: since 2021-01-01: 3 pages") and "(6 new), 6 new changes" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--tenant", "nowhere"], "unknown tenant 'nowhere'"),
    (["--tenant", "smsonly"], "has no experience settings"),
    (["--since", "yesterday"], "does not match the format '%Y-%m-%d'"),
])
def test_cli_refuses_bad_options(xp_settings, database_url, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["reconcile", *args], env=base_env(database_url, tmp_path / "receiver.toml"))
    assert result.exit_code == 2 and message in result.output


def test_sandbox_seed_call_checks_its_body(sandbox):
    for body in ({"records": "x"}, {"records": [1]}, {"records": [], "page_size": 0}):
        assert requests.post(f"{sandbox.url}/_sandbox/experience/records", json=body, timeout=5).status_code == 400
