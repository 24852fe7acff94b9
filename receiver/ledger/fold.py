"""Emails stored with upper case, folded as identities.fold_email does: by migration 0007, then by the worker."""

import logging
import threading

import sqlalchemy as sa
from sqlalchemy import Engine

from ..identities import fold_email as fold

log = logging.getLogger(__name__)
SWEEP_SECONDS = 3600.0

CHUNK = 500  # bounded IN lists

consent = sa.table('consent', sa.column('tenant'), sa.column('identity'), sa.column('state'),
                   sa.column('since'), sa.column('signal_id'))
links = sa.table('identity_links', sa.column('tenant'), sa.column('email'), sa.column('phone'),
                 sa.column('created_at'))
signals = sa.table('signals', sa.column('id'), sa.column('tenant'), sa.column('email'),
                   sa.column('changes', sa.JSON))
deliveries = sa.table('deliveries', sa.column('id'), sa.column('identity'), sa.column('status'),
                      sa.column('payload', sa.JSON), sa.column('signal_id'), sa.column('tenant'))
UNSENT = ('pending', 'dead')  # in order of preference: a dead delivery is sent again by a replay


def _folded_changes(changes: list | None) -> list | None:
    return [{**change, 'email': fold(change['email'])} if isinstance(change, dict) and change.get('email') else change
            for change in changes] if changes else changes


def _to_fold(conn, column) -> set[str]:
    """The distinct emails of ``column`` that folding changes."""
    found = conn.execute(sa.select(column).where(column.like('%@%')).distinct()).scalars()
    return {email for email in found if fold(email) != email}


def _rows_of(conn, table, column, emails: set[str]) -> list:
    """Every row whose ``column`` is one of ``emails`` or one of their folded forms."""
    wanted = sorted(emails | {fold(email) for email in emails})
    rows = []
    for start in range(0, len(wanted), CHUNK):
        rows += conn.execute(sa.select(table).where(column.in_(wanted[start:start + CHUNK]))).all()
    return rows


def _merge(conn, table, column, primary_key, key, keep) -> None:
    """Replace each group of rows sharing ``key`` once folded by the one ``keep`` makes (a dict), folded."""
    groups: dict[tuple, list] = {}
    for row in _rows_of(conn, table, column, _to_fold(conn, column)):
        groups.setdefault(key(row), []).append(row)
    for rows in groups.values():
        if all(fold(getattr(row, column.name)) == getattr(row, column.name) for row in rows):
            continue
        kept = keep(rows)
        for row in rows:
            conn.execute(sa.delete(table).where(*(c == getattr(row, c.name) for c in primary_key)))
        conn.execute(sa.insert(table).values({**kept, column.name: fold(kept[column.name])}))


def _kept_consent(conn, rows: list):
    """The earliest ``since`` of merged consent rows, under the signal whose delivery is still owed."""
    earliest = min(rows, key=lambda r: (r.since, r.signal_id))
    unsent = conn.execute(sa.select(deliveries.c.signal_id, deliveries.c.identity, deliveries.c.status).where(
        deliveries.c.signal_id.in_([r.signal_id for r in rows]), deliveries.c.tenant == earliest.tenant,
        deliveries.c.status.in_(UNSENT))).all()
    owing = sorted((UNSENT.index(status), signal_id) for signal_id, identity, status in unsent
                   if fold(identity) == fold(earliest.identity))
    return {**earliest._asdict(), **({'signal_id': owing[0][1]} if owing else {})}


def fold_stored_emails(conn) -> None:
    """Fold every stored email identity that is not folded yet (see migration 0007); idempotent."""
    _merge(conn, consent, consent.c.identity, (consent.c.tenant, consent.c.identity, consent.c.state),
           lambda r: (r.tenant, fold(r.identity), r.state),
           lambda rows: _kept_consent(conn, rows))
    _merge(conn, links, links.c.email, (links.c.tenant, links.c.email, links.c.phone),
           lambda r: (r.tenant, fold(r.email), r.phone),
           lambda rows: max(rows, key=lambda r: r.created_at)._asdict())

    # A signal's changes name its own email, which reconcile matches against (a re-consent's
    # lifted states). The index is (tenant, email): select by both, so each is an index look-up.
    pairs = conn.execute(sa.select(signals.c.tenant, signals.c.email).where(
        signals.c.email.like('%@%')).distinct()).all()
    for tenant, email in pairs:
        if fold(email) == email:
            continue
        rows = conn.execute(sa.select(signals.c.id, signals.c.changes).where(
            signals.c.tenant == tenant, signals.c.email == email)).all()
        conn.execute(sa.update(signals).where(signals.c.id == sa.bindparam('b_id')).values(
            email=sa.bindparam('email'), changes=sa.bindparam('changes')),
            [{'b_id': id_, 'email': fold(email), 'changes': _folded_changes(changes)} for id_, changes in rows])

    changed = []
    maybe = sa.or_(deliveries.c.identity.like('%@%'), deliveries.c.status.in_(('pending', 'dead')))
    for id_, identity, status, payload in conn.execute(sa.select(
            deliveries.c.id, deliveries.c.identity, deliveries.c.status, deliveries.c.payload).where(maybe)):
        email = payload.get('email') if isinstance(payload, dict) else None
        new_payload = payload
        if status in ('pending', 'dead') and email and fold(email) != email:
            new_payload = {**payload, 'email': fold(email)}
        if fold(identity) != identity or new_payload is not payload:
            changed.append({'b_id': id_, 'identity': fold(identity), 'payload': new_payload})
    if changed:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == sa.bindparam('b_id')).values(
            identity=sa.bindparam('identity'), payload=sa.bindparam('payload')), changed)


def sweep(engine: Engine, stopping: threading.Event, every: float = SWEEP_SECONDS) -> None:
    """Fold at once, then every ``every`` seconds until ``stopping``: during a rolling deploy, processes
    older than 0007 still store emails as typed, which folded look-ups would miss."""
    while True:
        try:
            with engine.begin() as conn:
                fold_stored_emails(conn)
        except Exception:  # a row written meanwhile may collide: the next sweep folds it
            log.exception("folding stored emails failed; trying again at the next sweep")
        if stopping.wait(every):
            return
