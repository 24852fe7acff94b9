"""A worker's claims on deliveries: claiming, lease renewals, attempts, finishing, handing back.

Claims are atomic (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``) and
leased: a worker killed mid-batch loses its claims when the lease runs out. Before every CRM call
the lease is renewed, and the delivery checked still owed, in the transaction that writes the
attempt as ``started``; a row whose lease was taken over is left to its new owner.
"""

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, insert, or_, select, tuple_, update

from ..crm.delivery import Outcome, Report, Started
from ..crm.errors import backoff_seconds
from ..settings import AlertsConfig, WorkerConfig
from . import clocks
from .alerts import ALERTS, DELIVERY_DEAD, raise_alert
from .db import db_now
from .models import Attempt, Delivery, utcnow
from .outbox import DEAD, DONE, PENDING, masked, still_owed

log = logging.getLogger(__name__)

TAKEN_OVER = "taken over"  # our lease ran out meanwhile: the row is another worker's now


class Finished(NamedTuple):
    status: str  # DONE, DEAD, "retry", or TAKEN_OVER
    attempts: int
    at: datetime


class Leases:
    """The deliveries one worker (``owner``) holds, and every write it makes to them."""

    def __init__(self, engine: Engine, owner: str, config: WorkerConfig, alerts: AlertsConfig | None = None):
        self.engine, self.owner, self.config, self.alerts = engine, owner, config, alerts

    def now(self) -> datetime:
        with self.engine.connect() as conn:
            return db_now(conn)

    def claim(self, room: Callable[[str, str], int] | None = None, full: Collection[tuple[str, str]] = (),
              skip: Collection[int] = ()) -> list:
        """Lease up to ``claim_size`` due deliveries, oldest first.

        ``room(crm, tenant)``: how many more rows that lane may take; ``full``: (crm, tenant) lanes
        with no room, not even read, so a full lane's backlog never crowds out the others; ``skip``: ids this worker holds
        already (a row is in one thread only, even once its lease has run out in a queue).
        """
        with self.engine.begin() as conn:
            # Due-ness is read on the clock that wrote next_attempt_at (ours, as the record path's);
            # leases on the database's, so a host whose clock runs ahead never takes a live lease over.
            now = db_now(conn)
            query = (select(Delivery.id, Delivery.crm, Delivery.tenant)
                     .where(Delivery.status == PENDING, Delivery.next_attempt_at <= utcnow(),
                            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                     .order_by(Delivery.next_attempt_at, Delivery.id)
                     .limit(self.config.claim_size)
                     .with_for_update(skip_locked=True))
            if full:
                query = query.where(tuple_(Delivery.crm, Delivery.tenant).not_in(list(full)))
            left: dict[tuple[str, str], int] = {}
            ids = []
            for delivery_id, crm, tenant in conn.execute(query):
                if delivery_id in skip:
                    continue
                if room is not None:
                    lane = (crm, tenant)
                    left[lane] = (room(crm, tenant) if lane not in left else left[lane]) - 1
                    if left[lane] < 0:
                        continue  # locked until this commits, not leased: free for others
                ids.append(delivery_id)
            if not ids:
                return []
            conn.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
                lease_owner=self.owner, lease_until=now + timedelta(seconds=self.config.lease_seconds)))
            return conn.execute(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()

    def renew(self, rows: list) -> list:
        with self.engine.begin() as conn:
            return self._renew(conn, rows)

    def earlier_attempts(self, row, outcomes: tuple[Outcome, ...]) -> list | None:
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return None
            return conn.execute(select(Attempt.outcome, Attempt.started_at).where(
                Attempt.delivery_id == row.id, Attempt.outcome.in_(outcomes))).all()

    def start(self, row) -> Started | None:
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return None
            started = db_now(conn)
            attempt_id = conn.execute(insert(Attempt).values(
                delivery_id=row.id, started_at=started, outcome=Outcome.STARTED).returning(Attempt.id)).scalar()
        return Started(attempt_id, started)

    def _renew(self, conn, rows: list) -> list:
        """Extend our lease on ``rows`` just before a call; returns those still ours and still owed,
        checked in this transaction so that a re-consent (START) committed mid-batch stops the call."""
        ours = set(conn.execute(select(Delivery.id).where(
            Delivery.id.in_([row.id for row in rows]), Delivery.lease_owner == self.owner,
            Delivery.status == PENDING,
        ).with_for_update()).scalars())
        kept = still_owed(conn, [row for row in rows if row.id in ours])
        if kept:
            conn.execute(update(Delivery).where(Delivery.id.in_([row.id for row in kept])).values(
                lease_until=db_now(conn) + timedelta(seconds=self.config.lease_seconds)))
        return kept

    def postpone(self, rows: list, until: datetime, why: str) -> None:
        """Hand back, until ``until`` and without counting an attempt, those of ``rows`` we still hold
        unfinished (rows already finished, skipped or taken over are left as they are)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            moved = conn.execute(update(Delivery).where(
                Delivery.id.in_([row.id for row in rows]), Delivery.lease_owner == self.owner,
                Delivery.status == PENDING,
            ).values(next_attempt_at=until, lease_owner=None, lease_until=None, updated_at=utcnow())).rowcount
        if moved:
            log.info("%d deliveries postponed: %s", moved, why)

    def release(self) -> None:
        """On a clean stop, hand unfinished claims back at once instead of waiting for the lease."""
        with self.engine.begin() as conn:
            conn.execute(update(Delivery).where(
                Delivery.lease_owner == self.owner, Delivery.status == PENDING,
            ).values(lease_owner=None, lease_until=None))

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        return timedelta(seconds=backoff_seconds(self.config.backoff_base_seconds, self.config.backoff_max_seconds,
                                                 attempts, retry_after))

    def finish(self, reports: list[Report]) -> list[Finished]:
        """Record each attempt's outcome and move its delivery on (done, retry later, or dead), in one
        transaction."""
        if not reports:
            return []
        with self.engine.begin() as conn:
            return [self._finish(conn, report) for report in reports]

    def _finish(self, conn, report: Report) -> Finished:
        row, outcome, detail = report.row, report.outcome, report.detail
        now = utcnow()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "updated_at": now, "lease_owner": None, "lease_until": None}
        if outcome in (Outcome.OK, Outcome.ALREADY):
            values.update(status=DONE, last_error=None)
        elif outcome == Outcome.PERMANENT:
            values.update(status=DEAD, last_error=detail)
        else:
            too_old = now - (row.replayed_at or row.created_at) > timedelta(hours=self.config.max_age_hours)
            if attempts >= self.config.max_attempts or too_old:
                values.update(status=DEAD, last_error=detail)
            else:
                retry_after = report.error.retry_after if report.error is not None else None
                values.update(last_error=detail, next_attempt_at=max(now + self.backoff(attempts, retry_after),
                                                                     report.not_before or now))
        attempt = {"finished_at": now, "outcome": outcome, "http_status": report.http_status, "detail": detail}
        if report.attempt_id is None:
            conn.execute(insert(Attempt).values(delivery_id=row.id, started_at=report.started or now, **attempt))
        else:
            conn.execute(update(Attempt).where(Attempt.id == report.attempt_id).values(**attempt))
        moved = conn.execute(update(Delivery).where(
            Delivery.id == row.id, Delivery.lease_owner == self.owner).values(**values)).rowcount
        if moved and values.get("status") == DONE and row.crm != ALERTS:
            clocks.honour(conn, [row.signal_id], now)  # its last owed delivery done: the clocks stop
        if moved and values.get("status") == DEAD and row.crm != ALERTS:  # a dead alert is only logged
            raise_alert(conn, self.alerts, DELIVERY_DEAD, row.tenant, row.signal_id, {
                "delivery_id": row.id, "crm": row.crm, "identity": masked(row.identity), "attempts": attempts,
                "last_error": detail}, now)
        return Finished(values.get("status", "retry") if moved else TAKEN_OVER, attempts, now)
