"""deliveries.replayed_at: a replayed delivery's age limit counts from its replay

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replayed_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('replayed_at')
