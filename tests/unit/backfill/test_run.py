"""`receiver backfill` against the sandbox's fake provider list APIs, on the test database: each provider's
items through its source's rules, idempotence, resuming, a 401 stopping one source, and webhook + backfill
of one STOP being one signal and one CRM Text call.

Seeded entries follow the providers' published samples (twilio-python's recorded Message; SendGrid's
"Retrieve all global unsubscribes" / spam reports / group suppressions examples; Mailgun's "List all
unsubscribes" sample; Postmark's "Suppression dump" example), as tests/unit/backfill/test_sandbox_providers.py.
"""

import time

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from receiver import create_app
from receiver.backfill.run import Backfiller
from receiver.cli import cli
from receiver.dev.provider_store import DEFAULT_CREDENTIALS
from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow, SyncCursor
from receiver.metrics import BACKFILL_RECOVERED
from receiver.states import CRMTEXT, MAIL_BAN, MARKETING_DECLINE, SMS_BAN
from receiver.worker import Worker
from tests.helpers import (
    TWILIO_TOKEN,
    base_env,
    config_toml,
    make_settings,
    pin_clock,
    twilio_signature,
    twilio_sms,
)

SID = DEFAULT_CREDENTIALS["twilio"]["account_sid"]
OURS = "+15550001111"
GUEST, OTHER_GUEST = "+15551230001", "+15551230002"
SOURCES = f"""
[sources.sendgrid]
kind = "sendgrid"
tenant = "grand"
public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
backfill = {{ api_key = "{DEFAULT_CREDENTIALS['sendgrid']['api_key']}", base_url = "SANDBOX_URL" }}

[sources.mailgun]
kind = "mailgun"
tenant = "grand"
signing_key = "k"
complaint = "mail_ban"
backfill = {{ api_key = "{DEFAULT_CREDENTIALS['mailgun']['api_key']}", domain = "mg.example.com", base_url = "SANDBOX_URL" }}

[sources.postmark]
kind = "postmark"
tenant = "grand"
basic_auth = "u:p"
backfill = {{ server_token = "{DEFAULT_CREDENTIALS['postmark']['server_token']}", stream = "broadcast", base_url = "SANDBOX_URL" }}
"""


@pytest.fixture
def bf_settings(settings, tmp_path, database_url, sandbox):
    toml = config_toml(sandbox.url, extra=SOURCES).replace(
        'help_text = "Grand', f'backfill = {{ account_sid = "{SID}", to = ["{OURS}"], base_url = "{sandbox.url}" }}\n'
                              'help_text = "Grand')
    # The sandbox's Twilio account answers to the source's own auth token, as Twilio's does.
    post(sandbox, "credentials", {"twilio": {"auth_token": TWILIO_TOKEN}})
    return make_settings(tmp_path, database_url, toml)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def backfiller(bf_settings, engine, sleeps) -> Backfiller:
    return Backfiller(bf_settings, engine, sleep=sleeps.append)


def post(sandbox, path: str, body) -> None:
    requests.post(f"{sandbox.url}/_sandbox/providers/{path}", json=body, timeout=5).raise_for_status()


def text(sandbox, body: str, phone: str = GUEST, **extra) -> None:
    post(sandbox, "twilio/messages", {"from": phone, "to": OURS, "body": body, **extra})


def consent(engine) -> set:
    with engine.connect() as conn:
        return {(r.identity, r.state) for r in conn.execute(select(Consent))}


def signals(engine, source: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(SignalRow).where(SignalRow.source == source).order_by(SignalRow.id)).all()


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def recovered(source: str) -> float:
    return BACKFILL_RECOVERED.labels(source)._value.get()


def test_twilio_missed_stop_is_recovered_through_the_keyword_rules(backfiller, sandbox, engine, receiver_log):
    text(sandbox, "Stop")
    text(sandbox, "stop by the pool at 5", phone=OTHER_GUEST)  # an opt-out word, not an opt-out: review
    text(sandbox, "START", phone=OTHER_GUEST)
    post(sandbox, "twilio/messages", {"from": OURS, "to": GUEST, "body": "You are unsubscribed", "direction": "outbound-api"})
    before = recovered("twilio")

    summary = backfiller.run("twilio")

    assert summary.error is None, summary.error
    assert (summary.pages, summary.items, summary.new_signals, summary.recovered) == (1, 3, 3, 1)
    assert summary.line().endswith("3 items recorded (3 new), 1 recovered, 0 skipped; complete")
    assert consent(engine) == {(GUEST, SMS_BAN)}
    rows = {r.phone + ":" + (r.keyword or ""): r for r in signals(engine, "twilio")}
    stop = rows[GUEST + ":stop"]
    assert stop.kind == "opt_out" and stop.detail["via"] == "backfill" and stop.event_id.startswith("SM")
    assert [r.review for r in rows.values() if r.phone == OTHER_GUEST and r.kind == "other"] == [True]
    start = next(r for r in rows.values() if r.kind == "opt_in")
    assert start.detail["via"] == "backfill"  # OTHER_GUEST held no ban: the START had nothing to lift
    with engine.connect() as conn:
        assert CRMTEXT in {d.crm for d in conn.execute(select(Delivery))}
    assert recovered("twilio") == before + 1
    log = receiver_log()
    assert "backfill twilio recovered sms_ban" in log and GUEST not in log


def test_sendgrid_lists_follow_the_unsubscribe_and_complaint_rules(backfiller, sandbox, engine):
    post(sandbox, "sendgrid/unsubscribes", [{"email": "brian12@example.net", "created": 1443651141},
                                            {"email": "not-an-address", "created": 1443651142}])
    post(sandbox, "sendgrid/group_unsubscribes", {"email": "test1@example.com", "group_id": 1,
                                                  "created_at": 1443651150})
    post(sandbox, "sendgrid/spam_reports", {"email": "example1@example.com", "created": 1443651154})

    summary = backfiller.run("sendgrid", since="2015-01-01")

    assert summary.error is None and (summary.items, summary.recovered, summary.skipped) == (4, 3, 1)
    assert consent(engine) == {("brian12@example.net", MARKETING_DECLINE), ("test1@example.com", MARKETING_DECLINE),
                               ("example1@example.com", MARKETING_DECLINE)}  # complaint = marketing_decline (default)
    [skipped] = [r for r in signals(engine, "sendgrid") if r.kind == "other"]
    assert skipped.detail["skipped"] == "no valid email address" and skipped.email is None


def test_mailgun_complaint_follows_the_source_s_complaint_option(backfiller, sandbox, engine):
    post(sandbox, "mailgun/unsubscribes", {"address": "alice@example.com", "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"})
    post(sandbox, "mailgun/complaints", {"address": "bob@example.com", "created_at": "Fri, 18 Oct 2024 18:30:00 UTC"})

    summary = backfiller.run("mailgun", since="2024-01-01")

    assert summary.error is None and summary.recovered == 2
    assert consent(engine) == {("alice@example.com", MARKETING_DECLINE), ("bob@example.com", MAIL_BAN)}


def test_postmark_hard_bounce_is_ignored_and_an_unknown_reason_skipped(backfiller, sandbox, engine):
    post(sandbox, "postmark/broadcast", [
        {"email": "address@wildbit.com", "reason": "ManualSuppression"},
        {"email": "bounce.address@wildbit.com", "reason": "HardBounce"},
        {"email": "spam.complaint.address@wildbit.com", "reason": "SpamComplaint"},
        {"email": "odd@wildbit.com", "reason": "SomethingNew"},
    ])

    summary = backfiller.run("postmark")

    assert summary.error is None and (summary.items, summary.recovered, summary.skipped) == (4, 2, 1)
    assert consent(engine) == {("address@wildbit.com", MARKETING_DECLINE),
                               ("spam.complaint.address@wildbit.com", MARKETING_DECLINE)}
    kinds = {r.email: (r.kind, r.detail.get("skipped")) for r in signals(engine, "postmark")}
    assert kinds["bounce.address@wildbit.com"] == ("other", None)
    assert kinds["odd@wildbit.com"][1].startswith("unknown suppression reason")


def test_a_second_run_records_nothing_new(backfiller, sandbox, engine):
    text(sandbox, "STOP")
    post(sandbox, "sendgrid/unsubscribes", {"email": "brian12@example.net"})
    assert backfiller.run("twilio").new_signals == 1 and backfiller.run("sendgrid").new_signals == 1
    receipts, signal_count = count(engine, RequestRecord), count(engine, SignalRow)

    again = [backfiller.run("twilio"), backfiller.run("sendgrid")]

    assert [(s.error, s.new_signals, s.recovered) for s in again] == [(None, 0, 0), (None, 0, 0)]
    assert (count(engine, RequestRecord), count(engine, SignalRow)) == (receipts, signal_count)


def test_a_garbage_page_stops_the_source_and_the_next_run_resumes_there(bf_settings, engine, sandbox, sleeps):
    post(sandbox, "mailgun/unsubscribes", {"address": "alice@example.com"})
    post(sandbox, "mailgun/complaints", {"address": "bob@example.com"})
    session, injected = requests.Session(), []

    def garbage_after_the_first_page(resp, *args, **kwargs):
        if not injected:
            injected.append(resp.url)
            post(sandbox, "faults", {"provider": "mailgun", "mode": "garbage"})

    session.hooks["response"].append(garbage_after_the_first_page)
    first = Backfiller(bf_settings, engine, session=session, sleep=sleeps.append).run("mailgun")

    assert first.pages == 1 and "not JSON" in first.error and first.error.endswith("resumes at this page")
    assert consent(engine) == {("alice@example.com", MARKETING_DECLINE)}
    with engine.connect() as conn:
        saved = conn.execute(select(SyncCursor).where(SyncCursor.source == "mailgun")).one()
    assert saved.next_url.startswith("unsubscribes http") and saved.completed_at is None

    second = Backfiller(bf_settings, engine, sleep=sleeps.append).run("mailgun")

    assert second.error is None and second.resumed and second.recovered == 1
    assert consent(engine) == {("alice@example.com", MARKETING_DECLINE), ("bob@example.com", MAIL_BAN)}


def test_a_401_stops_that_source_only_and_the_command_exits_1(bf_settings, sandbox, database_url, tmp_path, engine):
    text(sandbox, "STOP")
    post(sandbox, "credentials", {"sendgrid": {"api_key": "SG.another-key"}})
    result = CliRunner().invoke(cli, ["backfill"], env=base_env(database_url, tmp_path / "receiver.toml"))

    assert result.exit_code == 1, result.output
    [refused] = [line for line in result.stderr.splitlines() if line.startswith("sendgrid:")]
    assert refused.endswith("stopped: sendgrid: credentials refused (HTTP 401): check the source's backfill credentials")
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["twilio", "mailgun", "postmark"]
    assert all(line.endswith("complete") for line in lines)
    assert (GUEST, SMS_BAN) in consent(engine)


def test_webhook_and_backfill_of_one_stop_are_one_signal_and_one_crmtext_call(bf_settings, backfiller, sandbox, engine):
    sid = "SM" + "5" * 32
    params = twilio_sms(sid=sid, phone=GUEST)
    app = create_app(bf_settings)
    answer = app.test_client().post("/hooks/twilio", data=params,
                                    headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    app.extensions["receiver"].engine.dispose()
    assert answer.status_code == 200
    text(sandbox, "STOP", sid=sid)  # the same message in Twilio's log

    summary = backfiller.run("twilio")
    Worker(bf_settings, engine, owner="w1").run_once()

    assert summary.error is None and (summary.items, summary.new_signals, summary.recovered) == (1, 0, 0)
    assert len(signals(engine, "twilio")) == 1
    assert [c["method"] for c in sandbox.calls("crmtext")] == ["optoutcustomer"]


def test_a_start_read_back_lifts_only_a_ban_older_than_itself(bf_settings, backfiller, sandbox, engine,
                                                              monkeypatch):
    """A START Twilio logged before a STOP that came by webhook must not undo it; one sent after does
    what its webhook would have (contract: "the same mapping as its webhooks")."""
    stopped_at = time.time() - 2 * 3600
    pin_clock(monkeypatch, stopped_at)
    params = twilio_sms(sid="SM" + "6" * 32, phone=GUEST)
    app = create_app(bf_settings)
    assert app.test_client().post("/hooks/twilio", data=params, headers={
        "X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200
    app.extensions["receiver"].engine.dispose()
    monkeypatch.undo()
    assert consent(engine) == {(GUEST, SMS_BAN)}

    text(sandbox, "START", date_sent=int(stopped_at - 3600))  # sent an hour before the STOP
    assert backfiller.run("twilio").error is None
    assert consent(engine) == {(GUEST, SMS_BAN)}

    text(sandbox, "UNSTOP", date_sent=int(stopped_at + 3600))  # sent an hour after it
    summary = backfiller.run("twilio")
    assert summary.error is None and summary.new_signals == 1
    assert consent(engine) == set()
    lifted = [r for r in signals(engine, "twilio") if r.keyword == "unstop"]
    assert len(lifted) == 1 and lifted[0].detail["via"] == "backfill"


def test_a_stop_and_a_later_start_both_lost_end_as_the_start(backfiller, sandbox, engine):
    """Both webhooks lost: the backfill reads Twilio's log (newest first) and must end where the guest did."""
    now = time.time()
    text(sandbox, "STOP", date_sent=int(now - 2 * 3600))
    text(sandbox, "START", date_sent=int(now - 3600))

    summary = backfiller.run("twilio")

    assert summary.error is None and summary.new_signals == 2
    assert consent(engine) == set()


def test_cli_refuses_a_source_without_backfill(bf_settings, database_url, tmp_path):
    result = CliRunner().invoke(cli, ["backfill", "--source", "crmtext"],
                                env=base_env(database_url, tmp_path / "receiver.toml"))
    assert result.exit_code == 2 and "has no backfill option" in result.output
