"""`receiver verify`: the chains recomputed from the database; a tampered row named, exit 1."""

from click.testing import CliRunner
from sqlalchemy import delete, select, update

from receiver.cli import cli
from receiver.ledger.models import ClockRow, Consent, Delivery, SignalRow
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal
from tests.helpers import base_env


def env_for(settings, database_url) -> dict:
    return base_env(database_url, settings.config_file)


def stops(ledger, settings, count: int) -> None:
    for n in range(count):
        intent, keyword, review = classify("STOP")
        ledger.record(settings.sources["twilio"], Inbound(request_key=f"SM{n}", signals=[
            sms_signal(f"SM{n}", f"+1555000{n:04d}", intent, keyword=keyword, review=review)]), b"Body=STOP")


def ids(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(SignalRow.id).order_by(SignalRow.id)).scalars())


def run(settings, database_url, *args):
    return CliRunner().invoke(cli, ["verify", *args], env=env_for(settings, database_url))


def test_an_intact_ledger_verifies(ledger, settings, database_url):
    stops(ledger, settings, 3)

    result = run(settings, database_url)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "chain ok: 3 signals"


def test_a_row_edited_in_the_database_is_named(ledger, settings, engine, database_url):
    stops(ledger, settings, 3)
    second = ids(engine)[1]
    with engine.begin() as conn:  # someone swaps the evidence the opt-out was recorded with
        conn.execute(update(SignalRow).where(SignalRow.id == second).values(evidence_sha256="f" * 64))

    result = run(settings, database_url, "--tenant", "grand")

    assert result.exit_code == 1
    assert f"row {second} (tenant grand)" in result.output and "+1555" not in result.output


def test_a_phone_swapped_in_place_is_named(ledger, settings, engine, database_url):
    stops(ledger, settings, 2)
    first = ids(engine)[0]
    with engine.begin() as conn:
        conn.execute(update(SignalRow).where(SignalRow.id == first).values(phone="+15559999999"))

    result = run(settings, database_url)

    assert result.exit_code == 1 and f"row {first} (tenant grand): phone does not match phone_hash" in result.output


def test_a_deleted_row_shows_at_the_next_and_a_cut_off_end_at_the_head(ledger, settings, engine, database_url):
    stops(ledger, settings, 3)
    first, second, third = ids(engine)

    def forget(signal_id):
        with engine.begin() as conn:
            for model in (ClockRow, Delivery):
                conn.execute(delete(model).where(model.signal_id == signal_id))
            conn.execute(delete(Consent).where(Consent.signal_id == signal_id))
            conn.execute(delete(SignalRow).where(SignalRow.id == signal_id))

    forget(third)
    end = run(settings, database_url)
    assert end.exit_code == 1 and "tenant grand: its last row is not the head" in end.output

    forget(first)
    assert f"row {second} (tenant grand)" in run(settings, database_url).output


def test_an_unknown_tenant_is_refused(settings, database_url):
    result = run(settings, database_url, "--tenant", "nobody")

    assert result.exit_code == 2 and "unknown tenant 'nobody'" in result.output
