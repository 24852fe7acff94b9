"""who managed operators: operators.created_by, operators.disabled_by, operator_tokens.issued_by

Issue #14: every write an operator makes carries their identity into the audit trail. Staff
opt-outs, review decisions, erasures and replays already name theirs; adding an operator,
disabling one and issuing an API token kept only the time. Each now keeps who did it: an
operator's email (the console), ``cli:<OS account>`` (``receiver operator …``), or
``bootstrap admin`` (``RECEIVER_ADMIN_TOKEN``), as the other audit fields do. Rows written
before this revision keep null: nobody recorded who made them, and nothing is guessed.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('disabled_by', sa.String(length=320), nullable=True))
    with op.batch_alter_table('operator_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_by', sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('operator_tokens', schema=None) as batch_op:
        batch_op.drop_column('issued_by')
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.drop_column('disabled_by')
        batch_op.drop_column('created_by')
