"""the ledger's references to signals and receipts checked at commit (DEFERRABLE INITIALLY DEFERRED)

Recording a request inserts each row once, complete (issue #16: ingest cost): a signal's consent,
deliveries and clocks go in before the signal row that carries their outcome, and the receipt row
last. Both databases then check these keys at commit. SQLite cannot alter a key in place: its
four tables are rebuilt (alembic's batch mode; env.py runs SQLite's migrations with its keys off
and checks them all at the end).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 20:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

REFERENCES = (("signals", "receipt_id", "receipts"), ("consent", "signal_id", "signals"),
              ("deliveries", "signal_id", "signals"), ("clocks", "signal_id", "signals"))
# SQLite's keys have no names: batch mode names them by this convention to drop them.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _alter(deferred: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        inspector = sa.inspect(bind)
        for table, column, _ in REFERENCES:
            for key in inspector.get_foreign_keys(table):
                if key["constrained_columns"] == [column]:
                    timing = "DEFERRABLE INITIALLY DEFERRED" if deferred else "NOT DEFERRABLE"
                    op.execute(f'ALTER TABLE {table} ALTER CONSTRAINT "{key["name"]}" {timing}')
        return
    timing = {"deferrable": True, "initially": "DEFERRED"} if deferred else {}
    for table, column, referent in REFERENCES:
        name = f"fk_{table}_{column}_{referent}"
        with op.batch_alter_table(table, naming_convention=NAMES) as batch:
            batch.drop_constraint(name, type_="foreignkey")
            batch.create_foreign_key(name, referent, [column], ["id"], **timing)


def upgrade() -> None:
    _alter(deferred=True)


def downgrade() -> None:
    _alter(deferred=False)
