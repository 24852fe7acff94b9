"""operators, their API tokens, review decisions; who replayed a delivery

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-25 19:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('operators',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tenants', sa.JSON(), nullable=True),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('disabled_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('operator_tokens',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('operator_id', BigId, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('review_decisions',
    sa.Column('signal_id', BigId, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('operator', sa.String(length=320), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('receipt_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['signal_id'], ['signals.id']),
    sa.PrimaryKeyConstraint('signal_id')
    )
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('replayed_by', sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('replayed_by')
    op.drop_table('review_decisions')
    op.drop_table('operator_tokens')
    op.drop_table('operators')
