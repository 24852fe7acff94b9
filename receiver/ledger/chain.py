"""The hash chain's SQL: linking a request's signals under the tenant's head, streaming a chain to verify, filling old rows.

One linear chain per tenant without serialising tenants, and without serialising one tenant's
whole transactions either (issue #16): recording does its work first (ids reserved from the
sequence, consent changed, deliveries and clocks inserted, the receipt), then locks the tenant's
``chain_heads`` row (``SELECT … FOR UPDATE`` on PostgreSQL), links its signals after the head,
inserts them and moves the head, and commits: the lock is held for those few statements only.
Writers of one tenant queue on that row in turn, so each links after the last one committed;
other tenants' writers never touch it. SQLite's one writer (``BEGIN IMMEDIATE``) serialises anyway.

Chain order is ``chain_seq`` order within a tenant (1, 2, …; the head keeps the last in ``seq``),
not ``id`` order: ids are taken before the lock, so a later id may link first. A unique index on
(tenant, chain_seq) keeps two rows off one position. Rows chained before migration 0014 were
numbered in id order, the order they had been chained in.

Chained: the signals kept forever (opt-outs, opt-ins, anything flagged for review). HELP and other
texts are not: ``receiver prune`` forgets them after ``[retention]`` days, which would break a chain.
"""

import hashlib
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy import JSON, Connection, Engine, select

from ..compliance.chain import canonical, identity_hash, link, verify
from ..identities import fold_email
from ..signals import HELP, OTHER
from .models import UTCDateTime

# Written out here (not the models) so migration 0010 fills rows with the same code at its revision.
signals = sa.table(
    "signals", sa.column("id"), sa.column("tenant"), sa.column("source"), sa.column("event_id"),
    sa.column("kind"), sa.column("review"), sa.column("receipt_id"), sa.column("evidence_sha256"), sa.column("email"),
    sa.column("phone"), sa.column("occurred_at", UTCDateTime()), sa.column("received_at", UTCDateTime()),
    sa.column("detail", JSON), sa.column("changes", JSON), sa.column("add_states", JSON),
    sa.column("remove_states", JSON), sa.column("email_hash"), sa.column("phone_hash"), sa.column("chain_sha256"),
    sa.column("chain_seq"))
heads = sa.table("chain_heads", sa.column("tenant"), sa.column("signal_id"), sa.column("chain_sha256"),
                 sa.column("seq"))
# What migration 0010 had (no chain_seq yet): fill() reads these.
_FILLED = [column for column in signals.c if column.name != "chain_seq"]
STREAM_BATCH = 1000
CHAINED = sa.or_(signals.c.kind.not_in((HELP, OTHER)), signals.c.review.is_(True))


def is_chained(kind: str, review: bool) -> bool:
    """Whether a signal is linked into the chain (the same rule as CHAINED, in Python)."""
    return kind not in (HELP, OTHER) or bool(review)


def hashes(key: bytes, email: str | None, phone: str | None) -> dict:
    return {"email_hash": identity_hash(key, email) if email else None,
            "phone_hash": identity_hash(key, phone) if phone else None}


def fields_of(row) -> dict:
    """The canonical form's fields of a stored (or about to be stored) signal row."""
    return {"tenant": row["tenant"], "source": row["source"], "event_id": row["event_id"], "kind": row["kind"],
            "add": row["add_states"] or [], "remove": row["remove_states"] or [],
            "occurred_at": row["occurred_at"], "received_at": row["received_at"],
            "evidence_sha256": row["evidence_sha256"], "receipt_id": row["receipt_id"],
            "operator": (row["detail"] or {}).get("operator"),
            "email_hash": row["email_hash"], "phone_hash": row["phone_hash"]}


def next_link(previous: str | None, row) -> str:
    return link(previous, canonical(fields_of(row)))


def lock_head(conn: Connection, insert, tenant: str) -> tuple[str | None, int]:
    """Lock ``tenant``'s head row until commit (made on first use): its hash (None for a new chain)
    and position. Taken last, just before the signals go in (see the module's docstring)."""
    locked = select(heads.c.chain_sha256, heads.c.seq).where(heads.c.tenant == tenant).with_for_update()
    row = conn.execute(locked).first()
    if row is None:  # the tenant's first signal: one statement more, once
        conn.execute(insert(heads).values(tenant=tenant, signal_id=None, chain_sha256=None, seq=0)
                     .on_conflict_do_nothing())
        row = conn.execute(locked).first()
    return row.chain_sha256, row.seq


def link_rows(conn: Connection, insert, add_signals, tenant: str, rows: list[dict]) -> None:
    """Lock the head, link the chained ``rows`` after it (in their order), insert them all with
    ``add_signals`` (one statement), move the head: what a recording does last, before commit."""
    previous, seq = lock_head(conn, insert, tenant)
    last = None
    for row in rows:
        if is_chained(row["kind"], row["review"]):
            seq += 1
            previous = row["chain_sha256"] = next_link(previous, row)
            row["chain_seq"], last = seq, row["id"]
    conn.execute(add_signals, rows)
    if last is not None:
        conn.execute(sa.update(heads).where(heads.c.tenant == tenant).values(
            signal_id=last, chain_sha256=previous, seq=seq))


_LOCK_GUESTS = sa.text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k")


def lock_guests(conn: Connection, tenant: str, identities: Iterable[str]) -> None:
    """PostgreSQL: lock a request's guests (its signals' emails and phones) until commit, in one
    statement, in one order (sorted keys), before their consent is read or changed.

    With the head taken last, these locks are what keeps one guest's changes in turn: a STOP
    racing a START for one phone, or an identity link racing an email-only tenant's SMS STOP
    (which it must owe the held-back Experience delivery of) run one after the other, and link
    into the chain in that order, as under the former whole-transaction head lock, while requests
    about different guests run side by side. Transaction advisory locks keyed by 64 bits of
    SHA-256 of (tenant, identity): a collision only makes two guests wait for each other.
    SQLite's one writer serialises anyway.
    """
    if conn.dialect.name != "postgresql":
        return
    keys = sorted({int.from_bytes(hashlib.sha256(f"{tenant}\n{fold_email(i) if '@' in i else i}".encode()).digest()[:8],
                                  "big", signed=True) for i in identities})
    if keys:
        conn.execute(_LOCK_GUESTS, {"keys": keys})


def reserve(conn: Connection, source: str, event_ids: list[str]) -> tuple[set[str], list[int]]:
    """In one statement, without the head lock: which of ``event_ids`` the source has already
    recorded, and an id for each, so rows go in once, complete.

    PostgreSQL takes the ids from the table's sequence (chain order is ``chain_seq``, not id);
    SQLite's one writer holds the write lock (``BEGIN IMMEDIATE``), so the ids after the largest
    are free until it commits.
    """
    seen = select(signals.c.event_id, sa.cast(sa.null(), sa.BigInteger)).where(
        signals.c.source == source, signals.c.event_id.in_(event_ids))
    if conn.dialect.name == "postgresql":
        ids = select(sa.null(), sa.func.nextval(sa.func.pg_get_serial_sequence("signals", "id"))).select_from(
            sa.func.generate_series(1, len(event_ids)))
    else:
        ids = select(sa.null(), sa.func.coalesce(sa.func.max(signals.c.id), 0) + 1)
    found, taken = set(), []
    for event_id, signal_id in conn.execute(seen.union_all(ids)):
        if signal_id is None:
            found.add(event_id)
        else:
            taken.append(signal_id)
    if conn.dialect.name != "postgresql":
        taken = list(range(taken[0], taken[0] + len(event_ids)))
    return found, sorted(taken)


def head(engine: Engine, tenant: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(heads.c.signal_id, heads.c.chain_sha256).where(heads.c.tenant == tenant)).first()
    return {"tenant": tenant, "signal_id": row.signal_id if row else None,
            "chain_sha256": row.chain_sha256 if row else None}


def stream(engine: Engine, tenant: str | None = None) -> Iterator[dict]:
    """Every signal in chain order (tenant, chain_seq), read with a server-side cursor in batches: bounded memory."""
    query = select(signals).where(CHAINED).order_by(signals.c.tenant, signals.c.chain_seq, signals.c.id)
    if tenant is not None:
        query = query.where(signals.c.tenant == tenant)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(query)
        for row in result.mappings():
            yield {**fields_of(row), "id": row["id"], "chain_sha256": row["chain_sha256"], "chain_seq": row["chain_seq"],
                   "email": row["email"], "phone": row["phone"]}


def fill(conn: Connection, key: bytes) -> int:
    """Chain every row of an unchained ledger (migration 0010), in id order per tenant; the number chained.

    Id order: at 0010 chain order was id order, and ``chain_seq`` (migration 0014, which numbers
    these rows in the same order) does not exist yet; so this reads 0010's columns only.
    """
    done = 0
    tenants = conn.execute(select(signals.c.tenant).where(CHAINED, signals.c.chain_sha256.is_(None))
                           .distinct()).scalars()
    for tenant in list(tenants):
        previous, last = None, 0
        while True:  # in batches: a large ledger is not read into memory at once
            rows = conn.execute(select(*_FILLED).where(signals.c.tenant == tenant, signals.c.id > last, CHAINED)
                                .order_by(signals.c.id).limit(STREAM_BATCH)).mappings().all()
            if not rows:
                break
            for row in rows:
                values = {**hashes(key, row["email"], row["phone"]),
                          "add_states": _asked(row, "add_states", "states"),
                          "remove_states": _asked(row, "remove_states", "removed")}
                values["chain_sha256"] = previous = next_link(previous, {**row, **values})
                conn.execute(sa.update(signals).where(signals.c.id == row["id"]).values(**values))
                last, done = row["id"], done + 1
        conn.execute(sa.delete(heads).where(heads.c.tenant == tenant))
        conn.execute(sa.insert(heads).values(tenant=tenant, signal_id=last, chain_sha256=previous))
    return done


def _asked(row, column: str, key: str) -> list[str]:
    """What an older row asked, as far as it shows: the states its changes record."""
    if row[column] is not None:
        return row[column]
    return sorted({state for change in row["changes"] or () for state in change.get(key, ())})


def check(engine: Engine, key: bytes, tenant: str | None = None) -> tuple[int, str | None]:
    """``receiver verify``: rows checked, and the first problem as one line (None when the chain holds).

    Streams every chain (bounded memory), then compares each tenant's last row with its
    ``chain_heads`` row, which a row deleted off the end leaves behind.
    """
    counted, last = 0, {}

    def rows():
        nonlocal counted
        for row in stream(engine, tenant):
            counted += 1
            last[row["tenant"]] = (row["id"], row["chain_sha256"])
            yield row

    mismatch = verify(rows(), key)
    if mismatch is not None:
        return counted, str(mismatch)
    with engine.connect() as conn:
        query = select(heads.c.tenant, heads.c.signal_id, heads.c.chain_sha256)
        for name, signal_id, sha256 in conn.execute(query if tenant is None else query.where(heads.c.tenant == tenant)):
            if sha256 is not None and last.get(name) != (signal_id, sha256):
                return counted, f"tenant {name}: its last row is not the head recorded in chain_heads (row {signal_id})"
    return counted, None
