"""deliveries.signal_id index: finishing a delivery asks whether its signal still owes any other
(clocks.honour); without it every finish read the whole outbox (bench/drain.py's profile)

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
