"""Clocks and chain links written with each recorded signal (Ledger.record), read back from the ledger."""

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text, update

from receiver.compliance.chain import verify
from receiver.ledger import chain
from receiver.ledger.db import make_engine
from receiver.ledger.models import ClockRow, SignalRow
from receiver.ledger.record import Ledger
from receiver.links import Link
from receiver.signals import Inbound
from receiver.sources.email_link import one_click
from receiver.sources.sms import classify, sms_signal
from tests.helpers import config_toml, make_settings, pin_clock

PHONE = "+15551234567"
NEW_YORK = 'timezone = "America/New_York"'


def sms(sid: str, text: str = "STOP", phone: str = PHONE) -> Inbound:
    intent, keyword, review = classify(text)
    return Inbound(request_key=sid, signals=[sms_signal(sid, phone, intent, keyword=keyword, review=review)])


def clocks(engine) -> list[ClockRow]:
    with engine.connect() as conn:
        return list(conn.execute(select(ClockRow).order_by(ClockRow.id)).all())


@pytest.fixture
def new_york(tmp_path, database_url, settings):
    toml = config_toml().replace('display_name = "Grand Hotel"', f'display_name = "Grand Hotel"\n{NEW_YORK}')
    return make_settings(tmp_path, database_url, toml=toml)


def test_a_friday_evening_stop_before_a_monday_holiday_is_due_at_the_end_of_the_tenth_business_day(
        new_york, engine, monkeypatch):
    # Friday 2027-01-15, 19:00 in New York (Saturday 00:00 UTC); Monday 2027-01-18 is Martin Luther King Day.
    pin_clock(monkeypatch, datetime(2027, 1, 16, 0, 0, tzinfo=UTC).timestamp())
    ledger = Ledger(engine, new_york.tenants, new_york.identity_key)

    ledger.record(new_york.sources["twilio"], sms("SM1"), b"Body=STOP")

    [tcpa] = clocks(engine)  # a STOP adds sms_ban: TCPA's clock only (no email state, no one-click)
    assert (tcpa.regime, tcpa.states, tcpa.status, tcpa.honoured_at) == ("tcpa", ["sms_ban"], "pending", None)
    assert tcpa.started_at == datetime(2027, 1, 16, 0, 0, tzinfo=UTC)
    # Tuesday 19th is business day 1 ... Monday 1 February the 10th; its end in New York is 05:00 UTC on the 2nd.
    assert tcpa.honour_by == datetime(2027, 2, 2, 4, 59, 59, 999999, tzinfo=UTC)


def test_only_a_one_click_post_starts_the_gmail_yahoo_clock(ledger, engine, settings):
    link = Link(tenant="grand", email="guest@example.com", scope="marketing")

    ledger.record(settings.sources["twilio"], one_click(link), b"List-Unsubscribe=One-Click")

    assert {c.regime for c in clocks(engine)} == {"can-spam", "gmail-yahoo"}
    [gmail] = [c for c in clocks(engine) if c.regime == "gmail-yahoo"]
    assert gmail.honour_by - gmail.started_at == (datetime(2, 1, 3) - datetime(2, 1, 1))  # 48 hours


def test_a_state_already_in_force_starts_no_second_clock(ledger, engine, settings):
    ledger.record(settings.sources["twilio"], sms("SM1"), b"Body=STOP")
    ledger.record(settings.sources["twilio"], sms("SM2"), b"Body=STOP")

    assert len(clocks(engine)) == 1


def test_each_recorded_signal_is_linked_into_its_tenants_chain(ledger, engine, settings):
    for n in range(3):
        ledger.record(settings.sources["twilio"], sms(f"SM{n}", phone=f"+1555000000{n}"), b"Body=STOP")

    assert verify(chain.stream(engine), settings.identity_key) is None
    head = chain.head(engine, "grand")
    with engine.connect() as conn:
        last = conn.execute(select(SignalRow.id, SignalRow.chain_sha256).order_by(SignalRow.id.desc())).first()
    assert (head["signal_id"], head["chain_sha256"]) == tuple(last)


def test_a_tampered_row_is_named_by_verify(ledger, engine, settings):
    for n in range(3):
        ledger.record(settings.sources["twilio"], sms(f"SM{n}", phone=f"+1555000000{n}"), b"Body=STOP")
    with engine.begin() as conn:
        second = conn.execute(select(SignalRow.id).order_by(SignalRow.id).offset(1)).scalar()
        conn.execute(update(SignalRow).where(SignalRow.id == second).values(kind="opt_in"))

    mismatch = verify(chain.stream(engine), settings.identity_key)

    assert mismatch is not None and mismatch.row_id == second


def test_concurrent_writers_of_one_tenant_make_one_linear_chain(ledger, engine, settings):
    # On PostgreSQL (DATABASE_URL) this is the per-tenant chain_heads lock at work; on SQLite its one writer.
    errors = []

    def write(worker: int):
        try:
            for n in range(10):
                ledger.record(settings.sources["twilio"], sms(f"SM{worker}-{n}", phone=f"+1555{worker:03d}{n:04d}"),
                              b"Body=STOP")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    rows = list(chain.stream(engine))
    assert len(rows) == 60
    assert verify(rows, settings.identity_key) is None
    assert chain.head(engine, "grand")["chain_sha256"] == rows[-1]["chain_sha256"]


def test_a_tenant_whose_chain_head_is_locked_does_not_hold_up_another_tenants_writers(tmp_path, database_url,
                                                                                     settings):
    # PostgreSQL only: SQLite has one writer for the whole file, whatever the tenant.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: per-tenant chain locks")
    small = make_settings(tmp_path, database_url, toml=config_toml(extra="""
[sources.twilio-small]
kind = "twilio"
tenant = "smsonly"
auth_token = "env:TWILIO_AUTH_TOKEN"
"""))
    engine = make_engine(database_url)
    ledger = Ledger(engine, small.tenants, small.identity_key)
    ledger.record(small.sources["twilio"], sms("SM-g0"), b"Body=STOP")
    ledger.record(small.sources["twilio-small"], sms("SM-s0"), b"Body=STOP")
    done, errors = [], []

    def write(source: str, sid: str, phone: str):
        try:
            ledger.record(small.sources[source], sms(sid, phone=phone), b"Body=STOP")
            done.append(sid)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    holder = engine.connect()
    try:
        holder.begin()  # a long transaction of grand's holds its chain head (what a recording one takes first)
        holder.execute(select(chain.heads.c.chain_sha256).where(chain.heads.c.tenant == "grand").with_for_update())
        grand = threading.Thread(target=write, args=("twilio", "SM-g1", "+15557654321"))
        grand.start()
        with engine.connect() as watcher:  # grand's writer is queued on that row lock...
            for _ in range(600):
                if watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()")).scalar():
                    break
                time.sleep(0.05)
            else:
                pytest.fail("grand's writer never waited on its chain head")
        other = threading.Thread(target=write, args=("twilio-small", "SM-s1", "+15557654321"))
        other.start()
        other.join(120)  # ...while the other tenant's writer records and commits
        assert done == ["SM-s1"] and errors == []
        assert grand.is_alive()
    finally:
        holder.rollback()
        holder.close()
    grand.join(120)
    assert sorted(done) == ["SM-g1", "SM-s1"] and errors == []
    rows = list(chain.stream(engine))
    assert [(row["tenant"], row["event_id"]) for row in rows] == [
        ("grand", "SM-g0"), ("grand", "SM-g1"), ("smsonly", "SM-s0"), ("smsonly", "SM-s1")]
    assert verify(rows, small.identity_key) is None
    engine.dispose()


def test_help_texts_stay_out_of_the_chain_so_pruning_them_keeps_it_whole(ledger, engine, settings):
    from datetime import timedelta

    from receiver.ledger.models import utcnow
    from receiver.ledger.retention import prune

    ledger.record(settings.sources["twilio"], sms("SM1"), b"Body=STOP")
    ledger.record(settings.sources["twilio"], sms("SM2", text="HELP"), b"Body=HELP")
    ledger.record(settings.sources["twilio"], sms("SM3", phone="+15557654321"), b"Body=STOP")

    assert [row["event_id"] for row in chain.stream(engine)] == ["SM1", "SM3"]
    assert prune(engine, settings.retention, now=utcnow() + timedelta(days=365))["ignored_signals"] == 1
    assert verify(chain.stream(engine), settings.identity_key) is None
