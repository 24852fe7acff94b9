"""Fill a migrated PostgreSQL ledger with N opt-out signals fast, for benchmarks at production size.

Why this way: inserting 10 million signals through Ledger.record would take hours, and inserting
them row by row into indexed tables nearly as long. So the rows are generated inside PostgreSQL
(``INSERT ... SELECT ... FROM generate_series``) into the migrated tables with their keys and
indexes set aside, then the very same constraints and indexes are put back from their catalog
definitions (``pg_get_constraintdef``, ``pg_indexes``) and the tables vacuumed and analysed, as
autovacuum would have left a ledger of that age. The indexes measured are the migrations' own.

What a signal n (1..N, its id) is, consistent with what Ledger.record stores for it:
  - odd n: a Twilio STOP from ``phone(n)`` (``+16`` and 9 digits): sms_ban, every third also
    marketing_decline_sms; owes an Experience and a CRM Text delivery; a TCPA clock.
  - even n: a SendGrid unsubscribe from ``email(n)``: marketing_decline, every third also
    mail_ban; owes an Experience delivery; a CAN-SPAM clock.
  - its own receipt (``rcpt_`` + n zero-padded: older than any new ULID receipt id), random
    request keys and event ids (md5), received over the last two years in id order, every
    delivery done and every clock met. All of tenant ``grand``. The chain hashes are random
    stand-ins (same size; ``receiver verify`` would not pass: bench/verify.py chains them for real), and no attempts rows are kept.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg

TABLES = ("receipts", "signals", "consent", "deliveries", "clocks")
CHUNK = 500_000
SPAN = timedelta(days=730)


def phone(n: int) -> str:
    return f"+16{n:09d}"


def email(n: int) -> str:
    return f"guest{n}@example.com"


def identity(n: int) -> str:
    """The identity of signal ``n`` (as stored and as /v1/consent is asked for it)."""
    return phone(n) if n % 2 else email(n)


# One row of generate_series(lo, hi) AS n, with what every table derives from it.
SOURCE = """
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n,
LATERAL (SELECT n %% 2 = 1 AS ph,
                CASE WHEN n %% 2 = 1 THEN '+16' || lpad(n::text, 9, '0') ELSE 'guest' || n || '@example.com' END AS who,
                %(start)s::timestamp + (n * %(step)s::float8) * interval '1 second' AS at,
                'rcpt_' || lpad(n::text, 26, '0') AS rid) AS v
"""

FILL = {
    "receipts": """
INSERT INTO receipts (id, source, tenant, request_key, status, received_at, evidence_sha256, event_ids, changes)
SELECT rid, CASE WHEN ph THEN 'twilio' ELSE 'sendgrid' END, 'grand', 'SM' || md5('k' || n), 'accepted', at,
       md5('e' || n) || md5('f' || n), json_build_array('SM' || md5('k' || n)),
       json_build_array(json_build_object(CASE WHEN ph THEN 'phone' ELSE 'email' END, who, 'states', s.states))
""",
    "signals": """
INSERT INTO signals (id, receipt_id, source, tenant, event_id, kind, keyword, review, phone, email, changes,
                     received_at, occurred_at, evidence_sha256, detail, add_states, remove_states,
                     email_hash, phone_hash, chain_sha256, chain_seq)
SELECT n, rid, CASE WHEN ph THEN 'twilio' ELSE 'sendgrid' END, 'grand', 'SM' || md5('k' || n), 'opt_out',
       CASE WHEN ph THEN 'STOP' END, false, CASE WHEN ph THEN who END, CASE WHEN ph THEN NULL ELSE who END,
       json_build_array(json_build_object(CASE WHEN ph THEN 'phone' ELSE 'email' END, who, 'states', s.states)),
       at, at, md5('e' || n) || md5('f' || n), '{}'::json, s.states,
       '[]'::json, CASE WHEN ph THEN NULL ELSE md5('h' || n) || md5('i' || n) END,
       CASE WHEN ph THEN md5('h' || n) || md5('i' || n) END, md5('c' || n) || md5('d' || n), n
""",
    "consent": """
INSERT INTO consent (tenant, identity, state, since, signal_id)
SELECT 'grand', who, st, at, n
""",
    "deliveries": """
INSERT INTO deliveries (signal_id, tenant, crm, identity, payload, status, attempts, next_attempt_at,
                        created_at, updated_at)
SELECT n, 'grand', crm, who,
       CASE WHEN crm = 'crmtext' THEN json_build_object('phone', who, 'ten_digits', substr(who, 3))
            ELSE json_build_object('email', CASE WHEN ph THEN NULL ELSE who END,
                                   'phone', CASE WHEN ph THEN who END, 'states', s.since) END,
       'done', 1, at, at, at + interval '2 seconds'
""",
    "clocks": """
INSERT INTO clocks (signal_id, tenant, regime, states, started_at, honour_by, at_risk_from, honoured_at,
                    status, updated_at)
SELECT n, 'grand', CASE WHEN ph THEN 'tcpa' ELSE 'can-spam' END, s.states, at, at + interval '10 days',
       at + interval '7 days', at + interval '2 seconds', 'met', at + interval '2 seconds'
""",
}
# The states a signal adds, as JSON text (cheaper than aggregating), and their since as a delivery carries it.
STATES = """,
LATERAL (SELECT CASE WHEN ph AND n %% 3 = 0 THEN '["marketing_decline_sms", "sms_ban"]'
                     WHEN ph THEN '["sms_ban"]'
                     WHEN n %% 3 = 0 THEN '["mail_ban", "marketing_decline"]'
                     ELSE '["marketing_decline"]' END::json AS states,
                CASE WHEN ph AND n %% 3 = 0 THEN json_build_object('sms_ban', at, 'marketing_decline_sms', at)
                     WHEN ph THEN json_build_object('sms_ban', at)
                     WHEN n %% 3 = 0 THEN json_build_object('mail_ban', at, 'marketing_decline', at)
                     ELSE json_build_object('marketing_decline', at) END AS since) AS s
"""
FANOUT = {  # tables with several rows per signal: one more LATERAL
    "consent": """,
LATERAL unnest(CASE WHEN ph THEN ARRAY['sms_ban'] || CASE WHEN n %% 3 = 0 THEN ARRAY['marketing_decline_sms']
                                                          ELSE '{}'::text[] END
                  ELSE ARRAY['marketing_decline'] || CASE WHEN n %% 3 = 0 THEN ARRAY['mail_ban']
                                                          ELSE '{}'::text[] END END) AS st
""",
    "deliveries": """,
LATERAL unnest(CASE WHEN ph THEN ARRAY['experience', 'crmtext'] ELSE ARRAY['experience'] END) AS crm
""",
}


def _set_aside(cur) -> list[str]:
    """Drop the tables' foreign keys, keys and indexes; the statements that put them back, in order."""
    names = list(TABLES)
    cur.execute("""SELECT contype, conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE contype IN ('p', 'u', 'f')
                     AND (conrelid::regclass::text = ANY(%s) OR confrelid::regclass::text = ANY(%s))""", (names, names))
    constraints = cur.fetchall()
    cur.execute("""SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)
                   AND indexname NOT IN (SELECT conname FROM pg_constraint)""", (names,))
    indexes = cur.fetchall()
    foreign = [c for c in constraints if c[0] == "f"]
    keys = [c for c in constraints if c[0] != "f"]
    for _, table, name, _ in foreign + keys:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return ([f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {d}' for _, table, name, d in keys]
            + [d for _, d in indexes]
            + [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {d}' for _, table, name, d in foreign])


def _connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    # This session only: bulk loading and index builds; the shared server's settings are untouched.
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    return conn


def _run_all(url: str, statements: list, workers: int, progress, started: float, what: str) -> None:
    """Run (sql, params) statements over ``workers`` connections, in any order; progress every tenth."""
    pending, done, lock = list(reversed(statements)), [0], threading.Lock()

    def work():
        with _connect(url) as conn:
            while True:
                with lock:
                    if not pending:
                        return
                    sql, params = pending.pop()
                conn.execute(sql, params)
                with lock:
                    done[0] += 1
                    if done[0] * 10 // len(statements) != (done[0] - 1) * 10 // len(statements):
                        progress(f"  {what}: {done[0]}/{len(statements)} at {time.perf_counter() - started:.0f} s")

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()


def fill(url: str, signals: int, workers: int = 3, progress=print) -> float:
    """Fill the (migrated, empty) ledger at ``url`` with ``signals`` signals; seconds taken.

    ``workers`` connections load chunks (and later build indexes) at once: the machine is shared,
    and one backend would get a small share of it.
    """
    started = time.perf_counter()
    now = datetime.now(UTC).replace(tzinfo=None)
    params = {"start": now - SPAN, "step": SPAN.total_seconds() / max(signals, 1)}
    with _connect(url) as conn:
        with conn.transaction():
            restore = _set_aside(conn.cursor())
        loads = [(FILL[table] + SOURCE + STATES + FANOUT.get(table, ""),
                  {**params, "lo": lo, "hi": min(signals, lo + CHUNK - 1)})
                 for table in TABLES for lo in range(1, signals + 1, CHUNK)]
        _run_all(url, loads, workers, progress, started, "rows")
        keys = [s for s in restore if "FOREIGN KEY" not in s]
        _run_all(url, [(s, None) for s in keys], workers, progress, started, "keys and indexes")
        for statement in restore[len(keys):]:  # foreign keys last: they need the keys they point at
            conn.execute(statement)
        progress(f"  foreign keys checked: {time.perf_counter() - started:.0f} s")
        for table in ("signals", "deliveries", "clocks"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.execute("INSERT INTO chain_heads (tenant, signal_id, chain_sha256, seq) SELECT 'grand', max(id), "
                     "md5('head') || md5('head'), max(chain_seq) FROM signals HAVING max(id) IS NOT NULL")
        _run_all(url, [(f"VACUUM (ANALYZE) {table}", None) for table in TABLES], workers, progress, started,
                 "vacuum")
    return time.perf_counter() - started


def sizes(url: str) -> dict[str, tuple[int, int]]:
    """{table: (rows, bytes with indexes)} of the filled tables."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return {t: conn.execute(f"SELECT (SELECT count(*) FROM {t}), pg_total_relation_size('{t}')").fetchone()
                for t in TABLES}
