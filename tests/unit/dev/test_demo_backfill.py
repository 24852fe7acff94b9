"""The quick start's missed STOP: `receiver demo sms --missed` seeds the sandbox's Twilio message log (no
webhook), and `receiver demo backfill` with make run's example config records it and owes CRM Text the opt-out."""

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from receiver.cli import cli
from receiver.dev.run import DEMO_SECRETS
from receiver.ledger.models import Consent, Delivery, SignalRow
from receiver.worker import Worker
from tests.helpers import base_env, make_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "receiver.example.toml"
PHONE = "+15551234568"


def test_a_missed_stop_seeded_by_the_demo_is_found_by_the_demo_backfill(settings, sandbox, database_url, tmp_path,
                                                                         engine):
    config = tmp_path / "example.toml"
    config.write_text(EXAMPLE.read_text().replace("http://127.0.0.1:9000", sandbox.url))
    env = {**base_env(database_url, config), "TWILIO_AUTH_TOKEN": "demo-twilio-auth-token"}
    env.pop("XP_PARTNER_TOKEN")  # make run's demo values (DEMO_SECRETS) fill in the rest

    seeded = CliRunner().invoke(cli, ["demo", "sms", "--missed", "STOP", PHONE], env=env)
    assert seeded.exit_code == 0, seeded.output
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow)).all() == []  # no webhook was sent

    found = CliRunner().invoke(cli, ["demo", "backfill"], env=env)

    assert found.exit_code == 0, found.output
    assert found.stdout.startswith("twilio: since ") and "1 items recorded (1 new), 1 recovered" in found.stdout
    with engine.connect() as conn:
        assert [(r.identity, r.state) for r in conn.execute(select(Consent))] == [(PHONE, "sms_ban")]
        assert "crmtext" in {r.crm for r in conn.execute(select(Delivery))}
    demo_env = {k: v for k, v in DEMO_SECRETS.items() if k != "RECEIVER_CONFIG_FILE"}
    demo = make_settings(tmp_path, database_url, config.read_text(), **demo_env)
    Worker(demo, engine, owner="w1").run_once()
    assert [c["method"] for c in sandbox.calls("crmtext")] == ["optoutcustomer"]
