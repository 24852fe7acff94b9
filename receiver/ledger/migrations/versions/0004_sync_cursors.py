"""sync cursors for receiver reconcile

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sync_cursors',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('since', sa.String(length=10), nullable=False),
    sa.Column('next_url', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'source')
    )


def downgrade() -> None:
    op.drop_table('sync_cursors')
