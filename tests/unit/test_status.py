"""The queue's health, one query behind /readyz, /metrics and `receiver status`."""

import dataclasses
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import insert

from receiver import create_app
from receiver.cli import cli
from receiver.ledger.health import queue_health
from receiver.ledger.models import Delivery, RequestRecord, SignalRow, utcnow
from receiver.ledger.outbox import DEAD, DONE, PENDING, SKIPPED
from tests.helpers import base_env

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/x"


def add_deliveries(engine, *rows: tuple[str, timedelta]) -> None:
    """Deliveries of the given statuses, created the given time ago."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(RequestRecord).values(id="rcpt_status", source="twilio", tenant="grand", request_key="k",
                                            status="accepted", received_at=now, evidence_sha256="0" * 64))
        signal_id = conn.execute(insert(SignalRow).values(
            receipt_id="rcpt_status", source="twilio", tenant="grand", event_id="e", kind="opt_out",
            received_at=now, evidence_sha256="0" * 64).returning(SignalRow.id)).scalar()
        conn.execute(insert(Delivery), [
            {"signal_id": signal_id, "tenant": "grand", "crm": "crmtext", "identity": f"+1555000{i:04d}",
             "payload": {}, "status": status, "attempts": 0, "next_attempt_at": now, "created_at": now - age,
             "updated_at": now} for i, (status, age) in enumerate(rows)])


def test_queue_health_counts_pending_and_dead_and_ages_the_oldest(engine):
    add_deliveries(engine, (PENDING, timedelta(minutes=5)), (PENDING, timedelta(seconds=1)),
                   (DEAD, timedelta(hours=2)), (DONE, timedelta(hours=3)), (SKIPPED, timedelta(0)))

    health = queue_health(engine)
    full = queue_health(engine, by_status=True)

    assert (health.queue_depth, health.dead, health.by_status) == (2, 1, {})
    assert 300 <= health.oldest_pending_age_seconds < 360
    assert full.by_status == {PENDING: 2, DONE: 1, SKIPPED: 1, DEAD: 1}
    assert full.queue_depth == 2 and full.dead == 1


def test_an_empty_queue_is_zero_everywhere(engine):
    health = queue_health(engine, by_status=True)

    assert (health.queue_depth, health.oldest_pending_age_seconds, health.dead) == (0, 0.0, 0)
    assert health.by_status == {PENDING: 0, DONE: 0, SKIPPED: 0, DEAD: 0}


def test_readyz_reports_the_queue(client, engine):
    add_deliveries(engine, (PENDING, timedelta(seconds=90)), (DONE, timedelta(0)))

    body = client.get("/readyz").get_json()

    assert body["status"] == "ready" and body["queue_depth"] == 1
    assert 90 <= body["oldest_pending_age_seconds"] < 150


def test_readyz_without_a_database_has_no_queue(settings):
    app = create_app(dataclasses.replace(settings, database_url=UNREACHABLE))
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["receiver"].engine.dispose()

    assert response.status_code == 503 and "queue_depth" not in response.get_json()


def env_for(settings, database_url: str) -> dict[str, str]:
    return base_env(database_url, settings.instance_path.parent / "receiver.toml")


def test_status_prints_the_queue_and_the_counts(settings, engine, database_url):
    add_deliveries(engine, (PENDING, timedelta(seconds=30)), (DEAD, timedelta(0)), (DONE, timedelta(0)))

    result = CliRunner().invoke(cli, ["status"], env=env_for(settings, database_url))

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "database: ok" and lines[1] == "queue_depth: 1"
    assert 30 <= float(lines[2].removeprefix("oldest_pending_age_seconds: ")) < 90
    assert lines[3] == "deliveries: pending=1 done=1 skipped=0 dead=1"


def test_status_without_a_database_exits_1_with_one_line(settings, tmp_path):
    for url in (UNREACHABLE, f"sqlite:///{tmp_path / 'not-migrated.db'}"):
        result = CliRunner().invoke(cli, ["status"], env=env_for(settings, url))

        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("receiver: database unreachable"), result.output
        assert "Traceback" not in result.output
