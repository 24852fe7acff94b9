"""compliance clocks and the hash chain: a clocks table, chain_heads, chain columns on signals, filled

- ``clocks`` for the existing signals that added states, with the default regimes and calendar
  (tcpa, can-spam, gmail-yahoo; US, UTC: a migration does not read the tenants' settings),
  honoured at their last delivery's finish when all are done or skipped.
- ``signals``: ``add_states``/``remove_states`` (older rows: the states their changes record),
  ``email_hash``/``phone_hash`` and ``chain_sha256``, chained in id order per tenant when the
  identity key is given (``receiver db upgrade`` passes RECEIVER_IDENTITY_KEY); without it the
  rows stay unchained and ``receiver verify`` names the first.

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-25 19:00:00
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from receiver.compliance.clocks import DEFAULT_REGIMES, Calendar, clocks_for, status
from receiver.ledger import chain
from receiver.ledger.models import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

signals = sa.table('signals', sa.column('id'), sa.column('tenant'), sa.column('keyword'),
                   sa.column('changes', sa.JSON), sa.column('occurred_at', UTCDateTime()),
                   sa.column('received_at', UTCDateTime()))
deliveries = sa.table('deliveries', sa.column('signal_id'), sa.column('status'),
                      sa.column('updated_at', UTCDateTime()))
CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('add_states', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('remove_states', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('phone_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('chain_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_signals_tenant_id', ['tenant', 'id'], unique=False)
        batch_op.create_index('ix_signals_tenant_email_hash', ['tenant', 'email_hash'], unique=False)
        batch_op.create_index('ix_signals_tenant_phone_hash', ['tenant', 'phone_hash'], unique=False)
    op.create_table(
        'chain_heads',
        sa.Column('tenant', sa.String(length=64), nullable=False),
        sa.Column('signal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('chain_sha256', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('tenant'))
    clocks = op.create_table(
        'clocks',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('signal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('tenant', sa.String(length=64), nullable=False),
        sa.Column('regime', sa.String(length=16), nullable=False),
        sa.Column('states', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('honour_by', sa.DateTime(), nullable=False),
        sa.Column('at_risk_from', sa.DateTime(), nullable=False),
        sa.Column('honoured_at', sa.DateTime(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['signal_id'], ['signals.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_clocks_signal_id', 'clocks', ['signal_id'])
    op.create_index('ix_clocks_tenant_status_honour_by', 'clocks', ['tenant', 'status', 'honour_by'])
    op.create_index('ix_clocks_status_at_risk_from', 'clocks', ['status', 'at_risk_from'])
    op.create_index('ix_clocks_status_honour_by', 'clocks', ['status', 'honour_by'])
    conn = op.get_bind()
    _start_clocks(conn, sa.table('clocks', *(sa.column(c.name, c.type) for c in clocks.columns)))
    key = op.get_context().config.attributes.get('identity_key') if op.get_context().config else None
    if key:
        chain.fill(conn, key)


def _start_clocks(conn, clocks) -> None:
    calendar, now, last = Calendar('US'), datetime.now(UTC), 0
    while True:
        rows = conn.execute(sa.select(signals).where(signals.c.id > last).order_by(signals.c.id).limit(CHUNK)).all()
        if not rows:
            return
        last = rows[-1].id
        for row in rows:
            added = {state for change in row.changes or () for state in change.get('states', ())}
            made = clocks_for(added, row.keyword == 'link:one-click', DEFAULT_REGIMES,
                              row.occurred_at or row.received_at, calendar)
            if not made:
                continue
            owed = conn.execute(sa.select(deliveries.c.status, deliveries.c.updated_at)
                                .where(deliveries.c.signal_id == row.id)).all()
            finished = all(d.status in ('done', 'skipped') for d in owed)
            honoured_at = max((d.updated_at for d in owed), default=row.received_at) if finished else None
            conn.execute(sa.insert(clocks), [{
                'signal_id': row.id, 'tenant': row.tenant, 'regime': clock.regime.value,
                'states': sorted(clock.states), 'started_at': clock.started_at, 'honour_by': clock.honour_by,
                'at_risk_from': clock.at_risk_from, 'honoured_at': honoured_at, 'updated_at': now,
                'status': status(clock.honoured(honoured_at) if honoured_at else clock, now).value,
            } for clock in made])


def downgrade() -> None:
    op.drop_table('clocks')
    op.drop_table('chain_heads')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        for index in ('ix_signals_tenant_phone_hash', 'ix_signals_tenant_email_hash', 'ix_signals_tenant_id'):
            batch_op.drop_index(index)
        for column in ('chain_sha256', 'phone_hash', 'email_hash', 'remove_states', 'add_states'):
            batch_op.drop_column(column)
