"""chain order gets its own column: signals.chain_seq (a tenant's chain position) and chain_heads.seq

Recording now takes the tenant's chain head last, just before commit (issue #16: one hotel's
ingest was serialised by that lock held for the whole transaction). A signal's id is reserved
earlier, outside the lock, so ids no longer follow chain order: ``chain_seq`` does (1, 2, … per
tenant; null for the signals not chained, HELP and other texts). Existing chained rows are
numbered in id order per tenant, the order they were chained in, in batches; each tenant's
``chain_heads.seq`` is its last number. A unique index on (tenant, chain_seq) keeps two rows
from ever taking one position.

Downgrading drops the numbers. On PostgreSQL, rows recorded after this revision may have linked
out of id order, so upgrading again would number them wrongly and ``receiver verify`` would then
fail: downgrade past 0014 only to restore an older release from a backup taken before 0014.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

BATCH = 5000
signals = sa.table('signals', sa.column('id'), sa.column('tenant'), sa.column('kind'), sa.column('review'),
                   sa.column('chain_seq'))
heads = sa.table('chain_heads', sa.column('tenant'), sa.column('signal_id'), sa.column('chain_sha256'),
                 sa.column('seq'))
# The rule of ledger/chain.py's CHAINED at this revision: everything but HELP and other texts, and review.
CHAINED = sa.or_(signals.c.kind.not_in(('help', 'other')), signals.c.review.is_(True))


def upgrade() -> None:
    id_type = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_seq', id_type, nullable=True))
    with op.batch_alter_table('chain_heads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', id_type, nullable=False, server_default='0'))
    conn = op.get_bind()
    counted: dict[str, int] = {}
    last = 0
    while True:  # in batches: a large ledger is not read into memory at once
        rows = conn.execute(sa.select(signals.c.id, signals.c.tenant).where(signals.c.id > last, CHAINED)
                            .order_by(signals.c.id).limit(BATCH)).all()
        if not rows:
            break
        numbered = []
        for row in rows:
            counted[row.tenant] = counted.get(row.tenant, 0) + 1
            numbered.append({'b_id': row.id, 'b_seq': counted[row.tenant]})
        conn.execute(sa.update(signals).where(signals.c.id == sa.bindparam('b_id'))
                     .values(chain_seq=sa.bindparam('b_seq')), numbered)
        last = rows[-1].id
    known = set(conn.execute(sa.select(heads.c.tenant)).scalars())
    for tenant, seq in counted.items():
        if tenant in known:
            conn.execute(sa.update(heads).where(heads.c.tenant == tenant).values(seq=seq))
        else:  # chained rows left unfilled (no identity key at 0010): the next row still takes the next place
            conn.execute(sa.insert(heads).values(tenant=tenant, signal_id=None, chain_sha256=None, seq=seq))
    if conn.dialect.name == 'postgresql':  # the updates queued checks of the deferred keys (0013): run them now,
        op.execute('SET CONSTRAINTS ALL IMMEDIATE')  # as PostgreSQL builds no index over pending ones
    op.create_index('ix_signals_tenant_chain_seq', 'signals', ['tenant', 'chain_seq'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_signals_tenant_chain_seq', table_name='signals')
    with op.batch_alter_table('chain_heads', schema=None) as batch_op:
        batch_op.drop_column('seq')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_column('chain_seq')
