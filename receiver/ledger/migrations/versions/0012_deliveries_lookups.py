"""deliveries.signal_id and (tenant, identity) indexes: each recorded opt-out's clock asks whether its
signal still owes a delivery, and the proof, erasure and console look deliveries up by identity.
Without them each of those read every delivery: a backfill of 2,000 STOPs spent 15 s there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 20:40:00
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_deliveries_signal_id', 'deliveries', ['signal_id'], unique=False)
    op.create_index('ix_deliveries_tenant_identity', 'deliveries', ['tenant', 'identity'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_tenant_identity', table_name='deliveries')
    op.drop_index('ix_deliveries_signal_id', table_name='deliveries')
