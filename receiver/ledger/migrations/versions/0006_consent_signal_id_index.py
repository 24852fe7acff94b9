"""consent.signal_id index: every delivery claim asks which states its signal still holds

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 17:40:00
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_consent_signal_id', 'consent', ['signal_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_consent_signal_id', table_name='consent')
