"""backfill.recovered / backfill.failed: raised once through the outbox's alerts lane, signed, or only logged.

The Twilio message seeded follows twilio-python's recorded Message, as in tests/unit/backfill/test_run.py.
"""

import json

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from receiver.backfill.run import Backfiller
from receiver.ledger.models import Delivery
from receiver.worker import Worker
from tests.helpers import TWILIO_TOKEN, config_toml, make_settings
from tests.unit.backfill.test_run import GUEST, OURS, SID, SOURCES, post, text
from tests.unit.compliance.test_alerts import SECRET, ops  # noqa: F401 (the operators' endpoint fixture)


def backfill_settings(tmp_path, database_url, sandbox, alerts: str = ""):
    toml = config_toml(sandbox.url, extra=SOURCES + alerts).replace(
        'help_text = "Grand', f'backfill = {{ account_sid = "{SID}", to = ["{OURS}"], base_url = "{sandbox.url}" }}\n'
                              'help_text = "Grand')
    post(sandbox, "credentials", {"twilio": {"auth_token": TWILIO_TOKEN}})
    return make_settings(tmp_path, database_url, toml)


@pytest.fixture
def alerting(settings, tmp_path, database_url, sandbox, ops):  # noqa: F811
    return backfill_settings(tmp_path, database_url, sandbox, f'\n[alerts]\nurl = "{ops[0]}"\nsecret = "{SECRET}"\n')


def alert_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(Delivery).where(Delivery.crm == "alerts").order_by(Delivery.id)).all()


def test_a_recovered_stop_raises_backfill_recovered_once_signed_and_masked(alerting, engine, sandbox, ops):  # noqa: F811
    url, got = ops
    text(sandbox, "STOP")

    first = Backfiller(alerting, engine, sleep=lambda s: None).run("twilio")
    second = Backfiller(alerting, engine, sleep=lambda s: None).run("twilio", since=first.since)

    assert first.recovered == 1 and second.error is None and second.recovered == 0
    [row] = alert_rows(engine)
    assert row.signal_id is None and row.payload["type"] == "backfill.recovered"
    Worker(alerting, engine, owner="w1").run_once()
    events = []
    for headers, body in got:
        Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})  # raises if not signed right
        events.append(json.loads(body))
    [event] = events
    assert event["type"] == "backfill.recovered" and event["tenant"] == "grand"
    assert event["data"]["source"] == "twilio" and event["data"]["count"] == 1
    assert event["data"]["recovered"][0]["states"] == ["sms_ban"]
    assert GUEST[-7:] not in json.dumps(event)  # masked
    assert [r.status for r in alert_rows(engine)] == ["done"]


def test_a_401_raises_backfill_failed_naming_the_source(alerting, engine, sandbox):
    post(sandbox, "credentials", {"sendgrid": {"api_key": "SG.another-key"}})

    summary = Backfiller(alerting, engine, sleep=lambda s: None).run("sendgrid")

    [row] = alert_rows(engine)
    assert row.payload["type"] == "backfill.failed" and row.signal_id is None
    assert row.payload["data"] == {"source": "sendgrid", "error": summary.error}
    assert "credentials refused (HTTP 401)" in summary.error


def test_without_an_alerts_url_backfill_alerts_are_only_logged(settings, tmp_path, database_url, sandbox, engine,
                                                              receiver_log):
    plain = backfill_settings(tmp_path, database_url, sandbox)
    text(sandbox, "STOP")
    post(sandbox, "credentials", {"sendgrid": {"api_key": "SG.another-key"}})

    Backfiller(plain, engine, sleep=lambda s: None).run("twilio")
    Backfiller(plain, engine, sleep=lambda s: None).run("sendgrid")

    assert alert_rows(engine) == []
    log = receiver_log()
    assert "alert backfill.recovered" in log and "alert backfill.failed" in log and GUEST not in log
