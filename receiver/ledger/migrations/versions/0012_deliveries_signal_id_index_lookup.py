"""deliveries.signal_id index: recording a signal asks whether its deliveries are all finished

Ledger.record starts a signal's compliance clocks and at once honours them if the signal owes no
unfinished delivery (ledger/clocks.py ``honour``: ``EXISTS (... deliveries WHERE signal_id = ...)``);
the worker asks the same each time it finishes a delivery. Without this index that question was a
sequential scan of every delivery ever owed (they are kept forever): 0.76 s at 1.5 million
deliveries, taken while the tenant's chain head is locked, so a tenant's STOPs queued behind it
(bench/lookup.py at 10 million signals). A plain CREATE INDEX: it holds writes to deliveries for
the minute or so it takes at tens of millions of rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 20:45:00
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_deliveries_signal_id', 'deliveries', ['signal_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_signal_id', table_name='deliveries')
