"""Engines and migrations: SQLite (WAL, one writer at a time) in development, PostgreSQL in production."""

import weakref
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url

# The newest migration: a migrated database's alembic_version holds it. Kept here so /readyz need
# not load alembic (see migrate.py); a unit test asserts it is the head of the migration scripts.
HEAD = "0015"


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine that connects lazily, so the web process starts without a database.

    ``pool_size``: connections kept open; a worker passes its thread count (each lane's call writes
    through its own connection), plus 5 more may open under a burst.

    ``hide_parameters``: a database error's text never carries the statement's values (emails,
    phone numbers) into a log line or a traceback.
    """
    if not url.startswith("sqlite"):
        # No pre-ping (a round trip per checkout); a dropped connection fails one request with 503.
        return create_engine(url, pool_recycle=300, pool_size=pool_size, max_overflow=5, hide_parameters=True)
    database = make_url(url).database
    pool: dict = {}
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        pool = {"pool_size": pool_size, "max_overflow": 10}
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **pool)
    # Connections whose transaction is being begun by a statement (engine.connect()'s autobegin),
    # as opposed to an explicit begin (engine.begin()).
    autobegun: weakref.WeakSet = weakref.WeakSet()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transactions into our own hands (pysqlite's would start them late and deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: WAL is synced at every commit, so an acknowledged opt-out survives power loss,
        # not only a process kill (NORMAL); what it costs is measured in the README.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "before_execute")
    def _before_execute(connection, *_args):
        if not connection.in_transaction():
            autobegun.add(connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if connection in autobegun:
            # A read (engine.connect()): deferred, so in WAL mode it reads a snapshot and never
            # holds up a writer, however long it streams (contract: readers never block writers).
            autobegun.discard(connection)
            connection.exec_driver_sql("BEGIN")
        else:
            # A write (engine.begin()): the write lock is taken up front, so two writers queue
            # instead of one failing when its read snapshot goes stale before it writes.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def dialect_insert(engine: Engine):
    """The engine's own ``insert`` (PostgreSQL's or SQLite's), which has ON CONFLICT clauses."""
    # Imported here, so a process loads only its own database's dialect (the other costs up to 2 MB).
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def is_migrated(engine: Engine) -> bool:
    """True when the database answers and is at the newest migration (``HEAD``), as alembic records it."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars()) == {HEAD}


def db_now(conn) -> datetime:
    """The database's clock: lease and settle decisions compare on it, whatever each host's clock says."""
    if conn.dialect.name == "sqlite":
        # SQLite's CURRENT_TIMESTAMP keeps whole seconds (a row made due now would wait a second):
        # the same clock to the millisecond, as text.
        text = conn.execute(select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return conn.execute(select(func.current_timestamp())).scalar().astimezone(UTC)
