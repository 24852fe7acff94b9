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

from sqlalchemy import Engine, bindparam, insert, or_, select, tuple_, update

from ..crm.delivery import Outcome, Report, Started
from ..crm.errors import backoff_seconds
from ..settings import AlertsConfig, WorkerConfig
from . import clocks
from .alerts import ALERTS, DELIVERY_DEAD, raise_alert
from .db import db_now
from .models import Attempt, Delivery, utcnow
from .outbox import DEAD, DONE, PENDING, masked, still_owed

log = logging.getLogger(__name__)

DONE_OUTCOMES = (Outcome.OK, Outcome.ALREADY)
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
            due = (Delivery.status == PENDING, Delivery.next_attempt_at <= utcnow(),
                   or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
            # Candidates read without a lock: only the rows chosen below are locked and leased.
            query = (select(Delivery.id, Delivery.crm, Delivery.tenant).where(*due)
                     .order_by(Delivery.next_attempt_at, Delivery.id).limit(self.config.claim_size))
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
                        continue
                ids.append(delivery_id)
            if not ids:
                return []
            # Due-ness checked again under the lock: a row another worker leased meanwhile is left to it.
            chosen = select(Delivery.id).where(Delivery.id.in_(ids), *due).with_for_update(skip_locked=True)
            rows = conn.execute(update(Delivery).where(Delivery.id.in_(chosen)).values(
                lease_owner=self.owner, lease_until=now + timedelta(seconds=self.config.lease_seconds),
            ).returning(*Delivery.__table__.c)).all()
            return sorted(rows, key=lambda row: row.id)

    def renew(self, rows: list) -> list:
        with self.engine.begin() as conn:
            return self._renew(conn, rows, db_now(conn))

    def start(self, row, unless: tuple[Outcome, ...] = ()) -> Started | None:
        """Renew ``row`` and write its attempt as STARTED, in one transaction just before the call;
        None when it is not ours or owed no more. With ``unless``: if the row has earlier attempts
        with those outcomes, nothing is written and they come back in ``Started.earlier``."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            if not self._renew(conn, [row], now):
                return None
            if unless:
                # Read under the row lock _renew took: no other worker can start a call meanwhile.
                earlier = tuple(conn.execute(select(Attempt.outcome, Attempt.started_at).where(
                    Attempt.delivery_id == row.id, Attempt.outcome.in_(unless))))
                if earlier:
                    return Started(None, now, earlier)
            attempt_id = conn.execute(insert(Attempt).values(
                delivery_id=row.id, started_at=now, outcome=Outcome.STARTED).returning(Attempt.id)).scalar()
        return Started(attempt_id, now)

    def _renew(self, conn, rows: list, now: datetime) -> list:
        """Extend our lease on ``rows`` just before a call; returns those still ours and still owed,
        checked in this transaction so that a re-consent (START) committed mid-batch stops the call."""
        ours = set(conn.execute(select(Delivery.id).where(
            Delivery.id.in_([row.id for row in rows]), Delivery.lease_owner == self.owner,
            Delivery.status == PENDING,
        ).with_for_update()).scalars())
        kept = still_owed(conn, [row for row in rows if row.id in ours])
        if kept:
            conn.execute(update(Delivery).where(Delivery.id.in_([row.id for row in kept])).values(
                lease_until=now + timedelta(seconds=self.config.lease_seconds)))
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
        transaction: a batch's attempts in one statement each way, its done deliveries in one."""
        if not reports:
            return []
        now = utcnow()
        done = [report for report in reports if report.outcome in DONE_OUTCOMES]
        with self.engine.begin() as conn:
            self._write_attempts(conn, reports, now)
            moved = set()
            if done:
                moved = set(conn.execute(update(Delivery).where(
                    Delivery.id.in_([report.row.id for report in done]), Delivery.lease_owner == self.owner,
                ).values(status=DONE, last_error=None, attempts=Delivery.attempts + 1, updated_at=now,
                         lease_owner=None, lease_until=None).returning(Delivery.id)).scalars())
            finished = [Finished(DONE if report.row.id in moved else TAKEN_OVER, report.row.attempts + 1, now)
                        if report.outcome in DONE_OUTCOMES else self._finish_failed(conn, report, now)
                        for report in reports]
            # their last owed delivery done: the clocks stop (an alert has none)
            clocks.honour(conn, [report.row.signal_id for report in done
                                 if report.row.id in moved and report.row.crm != ALERTS], now)
        return finished

    @staticmethod
    def _write_attempts(conn, reports: list[Report], now: datetime) -> None:
        """Each report's attempt, finished: the STARTED ones updated, the others inserted whole."""
        finished = [{"finished_at": now, "outcome": report.outcome, "http_status": report.http_status,
                     "detail": report.detail} for report in reports]
        started = [{"a_id": report.attempt_id, **attempt} for report, attempt in zip(reports, finished, strict=True)
                   if report.attempt_id is not None]
        whole = [{"delivery_id": report.row.id, "started_at": report.started or now, **attempt}
                 for report, attempt in zip(reports, finished, strict=True) if report.attempt_id is None]
        attempts = Attempt.__table__
        if started:
            conn.execute(update(attempts).where(attempts.c.id == bindparam("a_id")), started)
        if whole:
            conn.execute(insert(attempts), whole)

    def _finish_failed(self, conn, report: Report, now: datetime) -> Finished:
        """A failed attempt: retried later, or dead (its alert raised) once out of attempts or time."""
        row, outcome, detail = report.row, report.outcome, report.detail
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "updated_at": now, "lease_owner": None, "lease_until": None,
                                  "last_error": detail}
        too_old = now - (row.replayed_at or row.created_at) > timedelta(hours=self.config.max_age_hours)
        if outcome == Outcome.PERMANENT or attempts >= self.config.max_attempts or too_old:
            values["status"] = DEAD
        else:
            retry_after = report.error.retry_after if report.error is not None else None
            values["next_attempt_at"] = max(now + self.backoff(attempts, retry_after), report.not_before or now)
        moved = conn.execute(update(Delivery).where(
            Delivery.id == row.id, Delivery.lease_owner == self.owner).values(**values)).rowcount
        if moved and values.get("status") == DEAD and row.crm != ALERTS:  # a dead alert is only logged
            raise_alert(conn, self.alerts, DELIVERY_DEAD, row.tenant, row.signal_id, {
                "delivery_id": row.id, "crm": row.crm, "identity": masked(row.identity), "attempts": attempts,
                "last_error": detail}, now)
        return Finished(values.get("status", "retry") if moved else TAKEN_OVER, attempts, now)
