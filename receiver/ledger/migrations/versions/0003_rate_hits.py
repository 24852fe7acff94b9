"""rate hits for /forms/unsubscribe

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_hits',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('minute', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'minute')
    )
    op.create_index('ix_rate_hits_minute', 'rate_hits', ['minute'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_rate_hits_minute', table_name='rate_hits')
    op.drop_table('rate_hits')
