"""Migrations on data: each is run from the revision before it, on rows written the way that revision held them."""

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select

from receiver.ledger import queries
from receiver.ledger.db import HEAD, is_migrated, make_engine
from receiver.ledger.migrate import alembic_config, upgrade
from receiver.ledger.models import (
    Base,
    Consent,
    Delivery,
    IdentityLink,
    Operator,
    OperatorToken,
    RequestRecord,
    SignalRow,
)
from receiver.ledger.operators import disable_operator, issue_token, list_operators
from receiver.ledger.outbox import owed_states
from receiver.states import MAIL_BAN, MARKETING_DECLINE, SMS_BAN
from tests.helpers import drop_database, fresh_database

T1, T2, T3 = (datetime(2026, 11, day, 9, 0, tzinfo=UTC) for day in (1, 2, 3))
PHONE = "+15551234567"


@pytest.fixture
def migrated_to(tmp_path):
    """A database of its own (SQLite, or PostgreSQL under DATABASE_URL) taken down to a revision."""
    url = fresh_database(tmp_path)
    engines = []

    def at(revision: str):
        command.downgrade(alembic_config(url), revision)
        engines.append(make_engine(url))
        return url, engines[-1]

    yield at
    for engine in engines:
        engine.dispose()
    drop_database(url)


def signal(id_: int, tenant: str = "grand", email: str | None = None, phone: str | None = None) -> dict:
    return {"id": id_, "receipt_id": "rcpt_1", "source": "partner", "tenant": tenant, "event_id": f"evt_{id_}",
            "kind": "opt_out", "review": False, "email": email, "phone": phone, "received_at": T1,
            "evidence_sha256": "0" * 64, "changes": [{"email": email, "states": ["marketing_decline"]}],
            "detail": {}}


def delivery(id_: int, signal_id: int, identity: str, status: str, email: str | None) -> dict:
    return {"id": id_, "signal_id": signal_id, "tenant": "grand", "crm": "experience", "identity": identity,
            "payload": {"email": email, "phone": PHONE, "states": {}}, "status": status, "attempts": 0,
            "next_attempt_at": T1, "created_at": T1, "updated_at": T1}


def test_the_migrations_build_the_tables_the_models_describe(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_head_is_the_newest_migration_script():
    """/readyz compares the database with HEAD (the web process never loads alembic): adding a
    migration means moving HEAD to it, or every migrated database would read as not migrated."""
    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads() == [HEAD]


def test_a_database_one_migration_behind_is_not_migrated(migrated_to):
    url, engine = migrated_to("-1")
    assert not is_migrated(engine)

    upgrade(url)

    assert is_migrated(engine)


def test_consent_signal_id_is_indexed(migrated_to):
    url, engine = migrated_to("0005")
    assert "ix_consent_signal_id" not in {i["name"] for i in inspect(engine).get_indexes("consent")}

    upgrade(url)

    assert "ix_consent_signal_id" in {i["name"] for i in inspect(engine).get_indexes("consent")}
    if engine.dialect.name == "sqlite":  # the delivery claim's question is an index look-up
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN SELECT identity, state FROM consent "
                                        "WHERE signal_id IN (1, 2)").all()
        assert "ix_consent_signal_id" in str(plan)


def test_deliveries_signal_id_is_indexed(migrated_to):
    url, engine = migrated_to("0011")
    assert "ix_deliveries_signal_id" not in {i["name"] for i in inspect(engine).get_indexes("deliveries")}

    upgrade(url)

    assert {"ix_deliveries_signal_id", "ix_deliveries_tenant_identity"} <= {i["name"] for i in inspect(engine).get_indexes("deliveries")}
    if engine.dialect.name == "sqlite":  # honouring a signal's clocks asks for its unfinished deliveries by index
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN SELECT 1 FROM deliveries WHERE signal_id = 1 "
                                        "AND status NOT IN ('done', 'skipped')").all()
        assert "ix_deliveries_signal_id" in str(plan)


def test_emails_that_differ_only_by_case_become_one_identity(migrated_to):
    url, engine = migrated_to("0006")
    with engine.begin() as conn:  # as 0006 stored them: only the domain lower-cased
        conn.execute(insert(RequestRecord), [{
            "id": "rcpt_1", "source": "partner", "tenant": "grand", "request_key": "r1", "status": "accepted",
            "received_at": T1, "evidence_sha256": "0" * 64, "event_ids": [],
            "changes": [{"email": "Guest@example.com", "states": ["marketing_decline"]}]}])
        conn.execute(insert(SignalRow), [
            signal(1, email="Guest@example.com"), signal(2, email="guest@example.com"),
            signal(3, email="GUEST@example.com", phone=PHONE), signal(4, tenant="smsonly", email="Guest@example.com"),
            signal(5, phone=PHONE)])
        conn.execute(insert(Consent), [
            {"tenant": "grand", "identity": "guest@example.com", "state": MARKETING_DECLINE, "since": T2,
             "signal_id": 2},
            {"tenant": "grand", "identity": "Guest@example.com", "state": MARKETING_DECLINE, "since": T1,
             "signal_id": 1},
            {"tenant": "grand", "identity": "GUEST@example.com", "state": MAIL_BAN, "since": T3, "signal_id": 3},
            {"tenant": "smsonly", "identity": "Guest@example.com", "state": MARKETING_DECLINE, "since": T2,
             "signal_id": 4},
            {"tenant": "grand", "identity": PHONE, "state": SMS_BAN, "since": T1, "signal_id": 5}])
        conn.execute(insert(IdentityLink), [
            {"tenant": "grand", "email": "Guest@example.com", "phone": PHONE, "created_at": T1},
            {"tenant": "grand", "email": "guest@example.com", "phone": PHONE, "created_at": T3},
            {"tenant": "grand", "email": "GUEST@example.com", "phone": "+15559990000", "created_at": T2}])
        conn.execute(insert(Delivery), [
            delivery(1, 1, "Guest@example.com", "done", "Guest@example.com"),
            delivery(2, 2, "guest@example.com", "pending", "guest@example.com"),
            delivery(3, 5, PHONE, "pending", "GUEST@example.com"),
            delivery(4, 3, "GUEST@example.com", "dead", "GUEST@example.com")])

    upgrade(url)

    with engine.connect() as conn:
        assert set(conn.execute(select(Consent.tenant, Consent.identity, Consent.state, Consent.since,
                                       Consent.signal_id))) == {
            # The earliest of the two holds, under the signal whose delivery (2) is still pending.
            ("grand", "guest@example.com", MARKETING_DECLINE, T1, 2),
            ("grand", "guest@example.com", MAIL_BAN, T3, 3),
            ("smsonly", "guest@example.com", MARKETING_DECLINE, T2, 4),  # tenants stay apart
            ("grand", PHONE, SMS_BAN, T1, 5)}
        assert set(conn.execute(select(IdentityLink.email, IdentityLink.phone, IdentityLink.created_at))) == {
            ("guest@example.com", PHONE, T3), ("guest@example.com", "+15559990000", T2)}
        assert {row.id: row.email for row in conn.execute(select(SignalRow.id, SignalRow.email))} == {
            1: "guest@example.com", 2: "guest@example.com", 3: "guest@example.com", 4: "guest@example.com",
            5: None}
        assert conn.execute(select(SignalRow.changes).where(SignalRow.id == 1)).scalar() == [  # reconcile reads it
            {"email": "guest@example.com", "states": ["marketing_decline"]}]
        assert conn.execute(select(RequestRecord.changes)).scalar() == [  # a signed answer stays as answered
            {"email": "Guest@example.com", "states": ["marketing_decline"]}]
        assert {d.id: (d.identity, d.payload["email"]) for d in conn.execute(select(Delivery))} == {
            1: ("guest@example.com", "Guest@example.com"),  # sent: its payload is history
            2: ("guest@example.com", "guest@example.com"),
            3: (PHONE, "guest@example.com"),
            4: ("guest@example.com", "guest@example.com")}  # dead: a replay sends it again
    assert queries.guest_states(engine, "grand", "guest@example.com") == {MARKETING_DECLINE: T1, MAIL_BAN: T3}


def test_existing_signals_get_their_clocks_and_are_chained(migrated_to):
    from receiver.compliance.chain import verify
    from receiver.ledger import chain
    from receiver.ledger.models import ClockRow

    url, engine = migrated_to("0007")
    with engine.begin() as conn:  # as 0007 stored them: no clocks, no chain
        conn.execute(insert(RequestRecord), [{
            "id": "rcpt_1", "source": "partner", "tenant": "grand", "request_key": "r1", "status": "accepted",
            "received_at": T1, "evidence_sha256": "0" * 64, "event_ids": [], "changes": []}])
        conn.execute(insert(SignalRow), [signal(1, email="guest@example.com"), signal(2, tenant="smsonly", email="a@b.c"),
                                         {**signal(3, email="guest@example.com"), "changes": []}])
        conn.execute(insert(Delivery), [delivery(1, 1, "guest@example.com", "done", "guest@example.com")])
    key = b"test-identity-key-of-at-least-32-bytes"

    upgrade(url, key)

    with engine.connect() as conn:
        clocks = {(c.signal_id, c.regime): (c.status, c.honoured_at) for c in conn.execute(select(ClockRow))}
    # marketing_decline: CAN-SPAM's clock; signal 1's delivery is done (met at its finish), 2's owes none.
    assert clocks == {(1, "can-spam"): ("met", T1), (2, "can-spam"): ("met", T1)}
    rows = list(chain.stream(engine))
    assert [r["id"] for r in rows] == [1, 3, 2] and all(r["chain_sha256"] for r in rows)
    assert rows[0]["add"] == ["marketing_decline"] and rows[1]["add"] == []
    assert verify(rows, key) is None
    assert chain.head(engine, "grand") == {"tenant": "grand", "signal_id": 3, "chain_sha256": rows[1]["chain_sha256"]}
    # 0014: chain order gets its own column, numbered in the id order the rows were chained in.
    assert [(r["id"], r["chain_seq"]) for r in rows] == [(1, 1), (3, 2), (2, 1)]
    with engine.connect() as conn:
        assert dict(conn.execute(select(chain.heads.c.tenant, chain.heads.c.seq)).all()) == {"grand": 2, "smsonly": 1}


def test_chained_rows_get_their_place_in_id_order_and_the_next_one_follows(migrated_to, tmp_path):
    from receiver.compliance.chain import verify
    from receiver.ledger import chain
    from receiver.ledger.record import Ledger
    from receiver.signals import Inbound, Signal
    from tests.helpers import make_settings

    url, engine = migrated_to("0013")
    key = b"test-identity-key-of-at-least-32-bytes"
    rows, previous = [], None
    for row in (signal(5, email="a@example.com"), {**signal(7), "kind": "help"}, signal(9, phone=PHONE)):
        row = {**row, "occurred_at": None, "add_states": [], "remove_states": [], **chain.hashes(key, row["email"], row["phone"]),
               "chain_sha256": None}
        if row["kind"] != "help":
            row["chain_sha256"] = previous = chain.next_link(previous, row)
        rows.append(row)
    with engine.begin() as conn:  # as 0013 stored them: chained in id order, no chain_seq
        conn.execute(insert(RequestRecord), [{
            "id": "rcpt_1", "source": "partner", "tenant": "grand", "request_key": "r1", "status": "accepted",
            "received_at": T1, "evidence_sha256": "0" * 64, "event_ids": [], "changes": []}])
        conn.execute(insert(SignalRow.__table__).values(rows))
        conn.execute(insert(chain.heads).values(tenant="grand", signal_id=9, chain_sha256=previous))

    upgrade(url, key)

    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.id, SignalRow.chain_seq).order_by(SignalRow.id)).all() == [
            (5, 1), (7, None), (9, 2)]
    settings = make_settings(tmp_path, url)
    ledger = Ledger(engine, settings.tenants, key)
    ledger.record(settings.sources["twilio"], Inbound(request_key="SM1", signals=[
        Signal(event_id="SM1", kind="opt_out", phone="+15550001111", add=frozenset({SMS_BAN}))]), b"")
    chained = list(chain.stream(engine, "grand"))
    assert [r["chain_seq"] for r in chained] == [1, 2, 3]
    assert verify(chained, key) is None
    assert chain.check(engine, key) == (3, None)


@pytest.mark.parametrize("earliest_status", ["dead", "done"])
def test_merged_consent_keeps_the_signal_whose_delivery_is_still_owed(migrated_to, earliest_status):
    # Review F4: keeping the earliest row's signal_id skipped the later signal's pending delivery as
    # superseded, so with the earliest one dead nothing reached Experience.
    url, engine = migrated_to("0006")
    states = {MARKETING_DECLINE: T1.isoformat()}
    with engine.begin() as conn:
        conn.execute(insert(RequestRecord), [{
            "id": "rcpt_1", "source": "partner", "tenant": "grand", "request_key": "r1", "status": "accepted",
            "received_at": T1, "evidence_sha256": "0" * 64, "event_ids": [], "changes": []}])
        conn.execute(insert(SignalRow), [signal(1, email="Guest@example.com"), signal(2, email="guest@example.com")])
        conn.execute(insert(Consent), [
            {"tenant": "grand", "identity": "Guest@example.com", "state": MARKETING_DECLINE, "since": T1,
             "signal_id": 1},
            {"tenant": "grand", "identity": "guest@example.com", "state": MARKETING_DECLINE, "since": T2,
             "signal_id": 2}])
        conn.execute(insert(Delivery), [
            {**delivery(1, 1, "Guest@example.com", earliest_status, "Guest@example.com"),
             "payload": {"email": "Guest@example.com", "phone": None, "states": states}},
            {**delivery(2, 2, "guest@example.com", "pending", "guest@example.com"),
             "payload": {"email": "guest@example.com", "phone": None, "states": states}}])

    upgrade(url)

    with engine.connect() as conn:
        # The state has held since the earliest signal, under the signal still to be delivered.
        assert conn.execute(select(Consent.identity, Consent.since, Consent.signal_id)).all() == [
            ("guest@example.com", T1, 2)]
        pending = conn.execute(select(Delivery).where(Delivery.id == 2)).all()
        assert owed_states(conn, pending) == {2: [MARKETING_DECLINE]}


def test_0011_lets_an_alert_row_have_no_signal(migrated_to):
    url, engine = migrated_to("0010")
    assert not next(c for c in inspect(engine).get_columns("deliveries") if c["name"] == "signal_id")["nullable"]
    with engine.begin() as conn:
        conn.execute(insert(RequestRecord), [{
            "id": "rcpt_1", "source": "partner", "tenant": "grand", "request_key": "r1", "status": "accepted",
            "received_at": T1, "evidence_sha256": "0" * 64, "event_ids": [], "changes": []}])
        conn.execute(insert(SignalRow), [signal(1, email="guest@example.com")])
        conn.execute(insert(Delivery), [delivery(1, 1, "guest@example.com", "pending", "guest@example.com")])

    upgrade(url)

    assert next(c for c in inspect(engine).get_columns("deliveries") if c["name"] == "signal_id")["nullable"]
    alert = {"type": "backfill.failed", "tenant": "grand", "at": "2026-11-01T09:00:00Z", "data": {}}
    with engine.begin() as conn:
        conn.execute(insert(Delivery), [{**delivery(2, None, "backfill.failed", "pending", None), "crm": "alerts",
                                         "payload": alert}])
        rows = conn.execute(select(Delivery).order_by(Delivery.id)).all()
        # the alert owes its own sending, never a state; the CRM delivery still owes its signal's
        assert owed_states(conn, rows)[2] == ["backfill.failed"]
    assert [r.signal_id for r in rows] == [1, None]


def test_0015_keeps_who_managed_operators_and_leaves_earlier_rows_unattributed(migrated_to):
    url, engine = migrated_to("0014")
    assert "created_by" not in {c["name"] for c in inspect(engine).get_columns("operators")}
    with engine.begin() as conn:  # as 0014 stored them: an operator and its token, nobody named
        conn.execute(insert(Operator.__table__).values(
            id=1, email="desk@grand.example", role="agent", tenants=["grand"], created_at=T1))
        conn.execute(insert(OperatorToken.__table__).values(operator_id=1, token_hash="a" * 64, created_at=T1))

    upgrade(url)

    columns = {(table, c["name"]): c["nullable"] for table in ("operators", "operator_tokens")
               for c in inspect(engine).get_columns(table)}
    assert columns[("operators", "created_by")] and columns[("operators", "disabled_by")]
    assert columns[("operator_tokens", "issued_by")]
    [before] = list_operators(engine)  # nothing guessed for what nobody recorded
    assert (before.created_at, before.created_by, before.tokens, before.last_token_by) == (T1, None, 1, None)
    issue_token(engine, "desk@grand.example", by="cli:root")
    assert disable_operator(engine, "desk@grand.example", by="boss@grand.example")
    [after] = list_operators(engine)
    assert (after.tokens, after.last_token_by, after.disabled_by) == (2, "cli:root", "boss@grand.example")
