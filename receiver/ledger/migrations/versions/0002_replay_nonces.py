"""replay nonces

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:19:04.731856
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replay_nonces',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=False),
    sa.Column('request_key', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'nonce')
    )
    with op.batch_alter_table('replay_nonces', schema=None) as batch_op:
        batch_op.create_index('ix_replay_nonces_expires_at', ['expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('replay_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_replay_nonces_expires_at')

    op.drop_table('replay_nonces')
