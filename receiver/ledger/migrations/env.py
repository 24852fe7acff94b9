"""Alembic environment: runs migrations on the URL given by receiver.ledger.migrate.upgrade."""

from alembic import context

from receiver.ledger.db import make_engine
from receiver.ledger.models import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = make_engine(url)
# One write transaction for the whole upgrade, begun before alembic's first read: on SQLite a
# transaction begun by a read is a deferred one (see make_engine), which a concurrent writer
# could make fail when it turns into a write.
sqlite = url.startswith("sqlite")
with engine.connect() as connection:
    if sqlite:
        # Batch mode rebuilds a table by copying and dropping it: with keys on, dropping a table
        # other tables name counts their rows as violations (alembic's advice: keys off, outside
        # the transaction); every key is checked at the end instead.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    with connection.begin():
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
            raise RuntimeError("a migration left a row naming a missing row (PRAGMA foreign_key_check)")
    if sqlite:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
engine.dispose()
