"""The compliance clocks' SQL: started with a signal, honoured when its deliveries are finished, statuses moved on.

The status is stored (the worker moves it on with two indexed updates), not recomputed on read.
Honoured: when none of the signal's deliveries is left other than ``done`` or ``skipped``.
"""

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, case, exists, func, select, update

from ..compliance.clocks import ClockStatus, clocks_for, parse_regimes, tenant_calendar
from ..settings import AlertsConfig, TenantConfig
from .alerts import iso, raise_alert
from .models import ClockRow, Delivery

MET, PENDING, AT_RISK, BREACHED = (s.value for s in ClockStatus)
OPEN = (PENDING, AT_RISK)
FINISHED = ("done", "skipped")


def start(conn: Connection, tenant: TenantConfig, signal_id: int, states_added, one_click: bool,
          started_at: datetime, now: datetime, owed: bool) -> int:
    """Store the clocks a signal's added states start; honoured at once when it owes no delivery.

    ``owed``: whether the signal owes a pending delivery. The recorder knows (it planned them), so
    the clocks are inserted already honoured or not, instead of being checked with a second statement.
    """
    clocks = clocks_for(states_added, one_click, parse_regimes(tenant.regimes), started_at,
                        tenant_calendar(tenant.calendar, tenant.timezone))
    if not clocks:
        return 0
    conn.execute(sa.insert(ClockRow), [{
        "signal_id": signal_id, "tenant": tenant.name, "regime": clock.regime.value, "states": sorted(clock.states),
        "started_at": clock.started_at, "honour_by": clock.honour_by, "at_risk_from": clock.at_risk_from,
        "honoured_at": None if owed else now, "updated_at": now,
        "status": PENDING if owed else (MET if clock.honour_by >= now else BREACHED)} for clock in clocks])
    return len(clocks)


def honour(conn: Connection, signal_ids: Collection[int], now: datetime) -> None:
    """Honour the open clocks of ``signal_ids`` at ``now`` whose signal has every delivery it owes
    finished (met, or breached if late): one statement however many signals (a finished batch's)."""
    if not signal_ids:
        return
    ids = sorted(set(signal_ids))
    # Two lanes finishing one signal's last two deliveries at once could each see the other's still
    # owed (not committed yet) and neither honour: the open clocks are locked first (in id order), so
    # the second waits, and its next statement reads the first's commit. (SQLite: one writer anyway.)
    conn.execute(select(ClockRow.id).where(ClockRow.signal_id.in_(ids), ClockRow.honoured_at.is_(None))
                 .order_by(ClockRow.id).with_for_update())
    owed = exists().where(Delivery.signal_id == ClockRow.signal_id, Delivery.status.not_in(FINISHED))
    conn.execute(update(ClockRow).where(
        ClockRow.signal_id.in_(ids), ClockRow.honoured_at.is_(None), ~owed,
    ).values(honoured_at=now, updated_at=now,
             status=case((ClockRow.honour_by >= now, MET), else_=BREACHED)))


def advance(engine: Engine, now: datetime, alerts: AlertsConfig | None = None) -> dict[str, int]:
    """Move open clocks on: past ``honour_by`` → breached, past ``at_risk_from`` → at_risk; counts changed.

    Each clock that moves raises its alert (``clock.breached`` / ``clock.at_risk``) in the same
    transaction: once, since a stored status moves on once.
    """
    moved = {}
    with engine.begin() as conn:
        for status, condition in ((BREACHED, sa.and_(ClockRow.status.in_(OPEN), ClockRow.honour_by < now)),
                                  (AT_RISK, sa.and_(ClockRow.status == PENDING, ClockRow.at_risk_from <= now))):
            rows = conn.execute(update(ClockRow).where(condition).values(status=status, updated_at=now).returning(
                ClockRow.id, ClockRow.signal_id, ClockRow.tenant, ClockRow.regime, ClockRow.honour_by)).all()
            for row in rows:
                raise_alert(conn, alerts, f"clock.{status}", row.tenant, row.signal_id, {
                    "clock_id": row.id, "signal_id": row.signal_id, "regime": row.regime,
                    "honour_by": iso(row.honour_by)}, now)
            moved[status] = len(rows)
    return moved


def counts(engine: Engine) -> list[tuple[str, str, str, int]]:
    """(tenant, regime, status, count) for the gauges."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(ClockRow.tenant, ClockRow.regime, ClockRow.status, func.count())
            .group_by(ClockRow.tenant, ClockRow.regime, ClockRow.status))]


def of_signals(engine: Engine, signal_ids) -> dict[int, list]:
    """The clocks of each of ``signal_ids`` (one page's: bounded), by signal id."""
    found: dict[int, list] = {}
    if signal_ids:
        with engine.connect() as conn:
            for row in conn.execute(select(ClockRow).where(ClockRow.signal_id.in_(list(signal_ids)))
                                    .order_by(ClockRow.id)).all():
                found.setdefault(row.signal_id, []).append(row)
    return found


def page(engine: Engine, tenant: str, status: str | None, after: tuple[datetime, int] | None, limit: int) -> list:
    """One page of a tenant's clocks, oldest deadline first; ``after`` is the last (honour_by, id) seen."""
    query = select(ClockRow).where(ClockRow.tenant == tenant)
    if status:
        query = query.where(ClockRow.status == status)
    if after:
        query = query.where(sa.tuple_(ClockRow.honour_by, ClockRow.id) > sa.tuple_(*after))
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(ClockRow.honour_by, ClockRow.id).limit(limit)).all())
