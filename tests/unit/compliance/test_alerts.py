"""[alerts]: clock.breached and delivery.dead raised once, POSTed through the outbox signed with Standard Webhooks."""

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from receiver.errors import ConfigError
from receiver.ledger.alerts import raise_alert
from receiver.ledger.models import ClockRow, Delivery, utcnow
from receiver.ledger.record import Ledger
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal
from receiver.states import EXPERIENCE
from receiver.worker import Worker
from tests.helpers import config_toml, make_settings, pin_clock

SECRET = "whsec_" + base64.b64encode(b"alerts-secret-of-32-bytes-long!!").decode()
ARRIVED = datetime(2027, 3, 3, 15, 0, tzinfo=UTC)


ops_status = [lambda: 204]  # what the endpoint answers next (a test may make it refuse)


@pytest.fixture
def ops():
    """The operators' alert endpoint: every POST it got (headers, body)."""
    got = []

    ops_status[0] = lambda: 204

    @Request.application
    def app(request):
        got.append((dict(request.headers), request.get_data()))
        return Response("", ops_status[0]())

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/receiver", got
    server.shutdown()
    server.server_close()


def stop(settings, engine) -> None:
    intent, keyword, review = classify("STOP")
    inbound = Inbound(request_key="SM1", signals=[sms_signal("SM1", "+15551234567", intent, keyword=keyword,
                                                              review=review)])
    Ledger(engine, settings.tenants, settings.identity_key).record(settings.sources["twilio"], inbound, b"Body=STOP")


def test_a_crm_outage_raises_clock_breached_and_delivery_dead_once_each_signed(
        tmp_path, database_url, settings, engine, sandbox, ops, monkeypatch):
    url, got = ops
    alerting = make_settings(tmp_path, database_url, toml=config_toml(
        sandbox.url, extra=f'[alerts]\nurl = "{url}"\nsecret = "{SECRET}"\n'))
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(alerting, engine)
    sandbox.fault(EXPERIENCE, "500", count=1000)
    with engine.connect() as conn:
        honour_by = conn.execute(select(ClockRow.honour_by)).scalar()
    pin_clock(monkeypatch, (honour_by + timedelta(seconds=1)).timestamp())

    for owner in ("w1", "w2", "w3"):  # each a fresh worker: its clock pass runs at once
        Worker(alerting, engine, owner=owner).run_once()

    events = []
    for headers, body in got:
        Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})  # raises if not signed right
        events.append(json.loads(body))
    assert sorted(e["type"] for e in events) == ["clock.breached", "delivery.dead"]
    breached = next(e for e in events if e["type"] == "clock.breached")
    assert breached["tenant"] == "grand" and breached["data"]["regime"] == "tcpa"
    dead = next(e for e in events if e["type"] == "delivery.dead")
    assert dead["data"]["crm"] == EXPERIENCE and "5551234567" not in json.dumps(dead)
    with engine.connect() as conn:
        assert set(conn.execute(select(Delivery.status).where(Delivery.crm == "alerts")).scalars()) == {"done"}


def test_without_an_alerts_url_an_alert_is_only_logged(sandboxed_settings, engine, sandbox, receiver_log,
                                                        monkeypatch):
    pin_clock(monkeypatch, ARRIVED.timestamp())
    stop(sandboxed_settings, engine)
    with engine.connect() as conn:
        honour_by = conn.execute(select(ClockRow.honour_by)).scalar()
    pin_clock(monkeypatch, (honour_by + timedelta(seconds=1)).timestamp())
    sandbox.fault(EXPERIENCE, "500", count=1000)

    Worker(sandboxed_settings, engine, owner="w1").run_once()

    assert "clock.breached" in receiver_log()
    with engine.connect() as conn:
        assert conn.execute(select(Delivery.id).where(Delivery.crm == "alerts")).first() is None


def test_an_alert_the_endpoint_refuses_is_retried_with_the_same_id_and_sent_once_it_is_taken(
        tmp_path, database_url, settings, engine, ops):
    url, got = ops
    refusals = [1]  # the operators' endpoint answers 503 once (a deploy), then takes it

    def answer():
        if refusals[0]:
            refusals[0] -= 1
            return 503
        return 204
    ops_status[0] = answer
    alerting = make_settings(tmp_path, database_url, toml=config_toml(
        extra=f'[alerts]\nurl = "{url}"\nsecret = "{SECRET}"\n'))
    with engine.begin() as conn:
        raise_alert(conn, alerting.alerts, "backfill.failed", "grand", None, {"source": "twilio"},
                    utcnow())

    worker = Worker(alerting, engine, owner="w1")
    for _ in range(100):  # bounded: the retry waits for the worker's backoff (0.2 s in the test config)
        worker.run_once()
        if len(got) == 2:
            break
        time.sleep(0.1)

    assert len(got) == 2
    ids = {headers.get("Webhook-Id") for headers, _ in got}
    assert len(ids) == 1  # a retry carries the first try's webhook-id: the receiver acts on it once
    for headers, body in got:
        Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})
    for _ in range(3):
        worker.run_once()
    assert len(got) == 2  # once taken, never sent again
    with engine.connect() as conn:
        [(status, attempts)] = conn.execute(select(Delivery.status, Delivery.attempts)
                                            .where(Delivery.crm == "alerts")).all()
    assert (status, attempts) == ("done", 2)


def test_an_unreachable_alerts_url_keeps_its_token_out_of_the_record_and_the_log(tmp_path, database_url, settings,
                                                                                  engine, receiver_log):
    # A Slack-style hook: the token is the url's path. Port 9 (discard) refuses the connection.
    alerting = make_settings(tmp_path, database_url, toml=config_toml(
        extra=f'[alerts]\nurl = "http://127.0.0.1:9/services/T000/B000/hooktoken123"\nsecret = "{SECRET}"\n'))
    with engine.begin() as conn:
        raise_alert(conn, alerting.alerts, "backfill.failed", "grand", None, {"source": "twilio"}, utcnow())

    Worker(alerting, engine, owner="w1").run_once()

    with engine.connect() as conn:
        [(last_error, attempts)] = conn.execute(select(Delivery.last_error, Delivery.attempts)
                                                .where(Delivery.crm == "alerts")).all()
        details = " ".join(str(row) for row in conn.execute(text("SELECT * FROM attempts")).all())
    assert attempts == 1 and "127.0.0.1" in last_error  # the failure is recorded, where it went too
    for seen in (last_error, details, receiver_log()):
        assert "hooktoken123" not in seen and "T000" not in seen


@pytest.fixture
def sandboxed_settings(tmp_path, database_url, settings, sandbox):
    return make_settings(tmp_path, database_url, toml=config_toml(sandbox.url))


@pytest.mark.parametrize(("alerts", "named"), [
    ('url = "https://ops.example.com/hooks"', "alerts.secret: required with alerts.url"),
    ('url = "https://ops.example.com/hooks"\nsecret = "whsec_!!!"', "alerts.secret: not a Standard Webhooks secret"),
    ('url = "not a url"', "alerts.url"),
])
def test_bad_alerts_settings_stop_start_up(tmp_path, alerts, named):
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, "sqlite:///unused.db", toml=config_toml(extra=f"[alerts]\n{alerts}\n"))

    assert named in str(caught.value)
