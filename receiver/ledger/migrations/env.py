"""Alembic environment: runs migrations on the URL given by receiver.ledger.db.upgrade."""

from alembic import context

from receiver.ledger.db import make_engine
from receiver.ledger.models import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
