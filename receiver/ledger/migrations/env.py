"""Alembic environment: runs migrations on the URL given by receiver.ledger.db.upgrade."""

from alembic import context

from receiver.ledger.db import make_engine
from receiver.ledger.models import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = make_engine(url)
# One write transaction for the whole upgrade, begun before alembic's first read: on SQLite a
# transaction begun by a read is a deferred one (see make_engine), which a concurrent writer
# could make fail when it turns into a write.
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
