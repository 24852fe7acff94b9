"""/metrics: the web's counters, the worker's counters and histogram, the queue gauges read from the
database, prometheus-client's multiprocess aggregation, and gunicorn's metrics directory hooks."""

import dataclasses
import json
import os
import runpy
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from receiver import metrics
from receiver.ledger.models import Delivery, utcnow
from receiver.ledger.outbox import DEAD
from receiver.ledger.record import Ledger
from receiver.signals import OPT_OUT, Inbound
from receiver.sources.sms import sms_signal
from receiver.states import CRMTEXT, EXPERIENCE
from receiver.worker import Worker
from tests.helpers import config_toml, make_settings, twilio_signature, twilio_sms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/x"


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post_stop(client, sid: str, phone: str = "+15551234567", signature: str | None = None):
    params = twilio_sms(sid=sid, phone=phone)
    signature = signature or twilio_signature("/hooks/twilio", params)
    return client.post("/hooks/twilio", data=params, headers={"X-Twilio-Signature": signature})


def test_signals_are_counted_by_source_kind_and_outcome(client):
    before = scrape(client)

    assert post_stop(client, "SM" + "1" * 32).status_code == 200
    assert post_stop(client, "SM" + "1" * 32).status_code == 200  # the redelivery
    help_params = twilio_sms(sid="SM" + "2" * 32, body="HELP")
    client.post("/hooks/twilio", data=help_params,
                headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", help_params)})
    after = scrape(client)

    name = "receiver_signals_received_total"
    for outcome in ("accepted", "duplicate", "ignored"):
        labels = {"source": "twilio", "kind": "twilio", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == 1, outcome


def test_signature_failures_are_counted_per_configured_source_only(client):
    name = "receiver_signature_failures_total"
    before = scrape(client)

    assert post_stop(client, "SM" + "3" * 32, signature="bm9wZQ==").status_code == 401
    assert client.post("/hooks/crmtext?token=guess", data={"msgID": "1", "message": "STOP"}).status_code == 401
    assert client.post("/hooks/nobody", data={"Body": "STOP"}).status_code == 404
    after = scrape(client)

    assert value(after, name, source="twilio") - value(before, name, source="twilio") == 1
    assert value(after, name, source="crmtext") - value(before, name, source="crmtext") == 1
    assert not any(key[0] == name and ("source", "nobody") in key[1] for key in after)


def test_queue_gauges_come_from_the_database(client, engine):
    post_stop(client, "SM" + "4" * 32)
    samples = scrape(client)

    assert value(samples, "receiver_database_up") == 1
    assert value(samples, "receiver_queue_depth") == 2  # Experience and CRM Text
    assert 0 <= value(samples, "receiver_queue_oldest_pending_age_seconds") < 60
    assert value(samples, "receiver_deliveries_dead") == 0

    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.crm == CRMTEXT).values(status=DEAD))
        conn.execute(update(Delivery).where(Delivery.crm == EXPERIENCE).values(
            created_at=utcnow() - timedelta(minutes=10)))
    samples = scrape(client)

    assert value(samples, "receiver_queue_depth") == 1
    assert value(samples, "receiver_queue_oldest_pending_age_seconds") >= 600
    assert value(samples, "receiver_deliveries_dead") == 1


def test_metrics_answer_without_a_database(settings):
    from receiver import create_app

    app = create_app(dataclasses.replace(settings, database_url=UNREACHABLE))
    try:
        samples = scrape(app.test_client())
    finally:
        app.extensions["receiver"].engine.dispose()

    assert value(samples, "receiver_database_up") == 0
    assert ("receiver_queue_depth", frozenset()) not in samples


# -- the worker ----------------------------------------------------------------------------------


@pytest.fixture
def sandboxed(tmp_path, database_url, settings, engine, sandbox):
    """Settings whose CRMs are the sandbox, and a function recording one STOP."""
    settings = make_settings(tmp_path, database_url, toml=config_toml(sandbox.url))
    ledger = Ledger(engine, settings.tenants, settings.identity_key)

    def stop(n: int, phone: str = "+15551234567"):
        signal = sms_signal(f"SM-metrics-{n}", phone, OPT_OUT, keyword="STOP")
        assert ledger.record(settings.sources["twilio"], Inbound(f"req-{n}", [signal]), b"x").status == "accepted"

    return settings, stop


def worker_samples() -> dict:
    return parse(metrics.exposition(_NoDatabase()).decode())


class _NoDatabase:
    """The worker's own counters only: the queue collector's query fails fast and is left out."""

    def connect(self):
        raise RuntimeError("no database in this test")


def test_worker_counts_attempts_latency_and_dead_letters(sandboxed, engine, sandbox):
    settings, stop = sandboxed
    before = worker_samples()
    started = time.time()
    stop(1)

    Worker(settings, engine, owner="w-metrics").run_once()
    elapsed = time.time() - started
    after = worker_samples()

    attempts = "receiver_delivery_attempts_total"
    for crm in (CRMTEXT, EXPERIENCE):
        assert value(after, attempts, crm=crm, outcome="ok") - value(before, attempts, crm=crm, outcome="ok") == 1
        count = "receiver_delivery_latency_seconds_count"
        assert value(after, count, crm=crm) - value(before, count, crm=crm) == 1
        assert value(after, "receiver_delivery_latency_seconds_sum", crm=crm) >= 0
        # This delivery's latency: from its recording to its delivery, within the test (seconds, not ms).
        latency = "receiver_delivery_latency_seconds_sum"
        assert 0 <= value(after, latency, crm=crm) - value(before, latency, crm=crm) <= elapsed + 0.001

    sandbox.fault(EXPERIENCE, "400")  # Experience's 4xx is permanent (CRM Text's is retried first)
    stop(2, phone="+15557654321")
    Worker(settings, engine, owner="w-metrics").run_once()
    dead = worker_samples()

    assert value(dead, "receiver_dead_letters_total", crm=EXPERIENCE) - value(
        after, "receiver_dead_letters_total", crm=EXPERIENCE) == 1
    assert (value(dead, attempts, crm=EXPERIENCE, outcome="permanent")
            - value(after, attempts, crm=EXPERIENCE, outcome="permanent")) == 1


def test_worker_logs_one_masked_json_line_per_attempt(sandboxed, engine, receiver_log):
    settings, stop = sandboxed
    stop(3)

    started = time.time()
    Worker(settings, engine, owner="w-log").run_once()
    elapsed_ms = (time.time() - started) * 1000

    lines = [json.loads(line) for line in receiver_log().splitlines() if line.startswith("{")]
    attempts = [line for line in lines if line.get("event") == "delivery attempt"]
    assert sorted(line["crm"] for line in attempts) == [CRMTEXT, EXPERIENCE]
    for line in attempts:
        assert line["level"] == "INFO" and line["logger"] == "receiver.worker"
        assert line["tenant"] == "grand" and line["outcome"] == "ok" and line["status"] == "done"
        assert line["attempt"] == 1 and isinstance(line["delivery_id"], int)
        assert line["duration_ms"] >= 0 and line["http_status"] in (200, None)
        assert line["duration_ms"] <= elapsed_ms + 0.1  # the call's own milliseconds, within the run
        assert line["identity"] == "+1555***4567"
    assert "5551234567" not in receiver_log()


# -- multiprocess mode ---------------------------------------------------------------------------

_COUNT_IN_A_CHILD = """
from receiver import metrics
metrics.SIGNALS_RECEIVED.labels("twilio", "twilio", "accepted").inc()
metrics.DELIVERY_LATENCY.labels("crmtext").observe(3)
"""

_SCRAPE = """
import sys
from receiver import metrics
class NoDatabase:
    def connect(self):
        raise RuntimeError
sys.stdout.write(metrics.exposition(NoDatabase()).decode())
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}  # made on first use
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _COUNT_IN_A_CHILD], env=env, cwd=ROOT, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", _SCRAPE], env=env, cwd=ROOT, check=True, timeout=60,
                         capture_output=True, text=True).stdout
    samples = parse(out)

    assert value(samples, "receiver_signals_received_total", source="twilio", kind="twilio", outcome="accepted") == 2
    assert value(samples, "receiver_delivery_latency_seconds_count", crm="crmtext") == 2
    assert value(samples, "receiver_delivery_latency_seconds_bucket", crm="crmtext", le="5.0") == 2
    assert value(samples, "receiver_database_up") == 0


# -- gunicorn.conf.py ----------------------------------------------------------------------------


@pytest.fixture
def gunicorn_conf(monkeypatch, tmp_path, database_url):
    """gunicorn.conf.py loaded as gunicorn loads it, with a valid environment."""
    from tests.helpers import base_env

    (tmp_path / "receiver.toml").write_text(config_toml())
    for name, setting in base_env(database_url, tmp_path / "receiver.toml").items():
        monkeypatch.setenv(name, setting)

    def load(multiproc_dir: str | None):
        # Set through monkeypatch even when "unset" (empty), so what gunicorn.conf.py sets is undone.
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", multiproc_dir or "")
        return runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))

    return load


def test_gunicorn_makes_a_fresh_directory_when_none_is_given(gunicorn_conf):
    config = gunicorn_conf(None)
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        assert path and os.path.isdir(path) and os.listdir(path) == []
        assert config["accesslog"] is None  # the app's JSON request line replaces it
    finally:
        os.rmdir(path)


def test_gunicorn_start_drops_the_files_of_processes_that_are_gone(gunicorn_conf, tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [directory / f"counter_{gone.pid}.db", directory / f"histogram_{gone.pid}.db"]
    live = directory / f"counter_{os.getpid()}.db"  # e.g. a receiver worker sharing the directory
    for path in [*stale, live]:
        path.write_bytes(b"")
    config = gunicorn_conf(str(directory))

    config["on_starting"](None)

    assert sorted(p.name for p in directory.iterdir()) == [live.name]
    (directory / f"gauge_livesum_{gone.pid}.db").write_bytes(b"")
    config["child_exit"](None, type("GunicornWorker", (), {"pid": gone.pid})())
    assert sorted(p.name for p in directory.iterdir()) == [live.name]
