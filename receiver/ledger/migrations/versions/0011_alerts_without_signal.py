"""deliveries.signal_id nullable: an alert raised by no signal (backfill.recovered / backfill.failed)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 19:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.alter_column('signal_id', existing_type=BigId, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE signal_id IS NULL")  # only alerts have none
    with op.batch_alter_table('deliveries') as batch:
        batch.alter_column('signal_id', existing_type=BigId, nullable=False)
