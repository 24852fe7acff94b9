"""The worker: claims due deliveries, calls the CRMs, backs off, dead-letters, stops on SIGTERM.

Claims are atomic (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``) and
leased: a worker killed mid-batch loses its claims when the lease runs out. Before every CRM call
the lease is renewed, and the delivery checked still owed, in the transaction that writes the
attempt as ``started``; a row whose lease was taken over is left to its new owner. An
OptOutCustomer whose outcome is unknown (timeout, crash mid-call, a gateway's error page) is never
simply repeated: once that call's deadline has passed, the number's status is asked first.
"""

import logging
import os
import secrets
import signal
import socket
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update

from . import metrics
from .crm.crmtext import OPTED_OUT, CrmTextClient
from .crm.errors import CrmError, backoff_seconds
from .crm.experience import ExperienceClient, coalesce
from .ledger.models import Attempt, Delivery, utcnow
from .ledger.outbox import DEAD, DONE, PENDING, Outcome, masked, still_owed
from .settings import Settings
from .states import CRMTEXT, EXPERIENCE

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings, engine: Engine, *, owner: str | None = None):
        self.settings = settings
        self.config = settings.worker
        self.engine = engine
        # deliveries.lease_owner is String(64): shorten the host name, keep the unique pid and suffix.
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stopping = threading.Event()
        self._clients: dict[tuple[str, str], Any] = {}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        log.info("worker %s started", self.owner)
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("worker iteration failed; retrying")
                busy = 0
            if not busy:
                self.stopping.wait(self.config.poll_seconds)
        self.release()
        log.info("worker %s stopped", self.owner)

    def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many deliveries were claimed."""
        claimed = self.claim()
        by_crm: dict[tuple[str, str], list] = defaultdict(list)
        for row in claimed:
            by_crm[(row.crm, row.tenant)].append(row)
        for (crm, tenant), rows in by_crm.items():
            if self.stopping.is_set():
                break
            try:
                self._client(crm, tenant)
            except LookupError as exc:  # the tenant or its CRM left the config: nothing will ever deliver these
                with self.engine.begin() as conn:
                    for row in rows:
                        self._finish(conn, row, Outcome.PERMANENT, detail=str(exc))
                continue
            if crm == EXPERIENCE:
                self.deliver_experience(tenant, rows)
            else:
                for i, row in enumerate(rows):
                    if self.stopping.is_set():
                        break
                    if not self.deliver_crmtext(tenant, row):
                        self._spare(rows[i + 1:])
                        break
        return len(claimed)

    # -- claiming and leases --------------------------------------------------------------------

    def claim(self) -> list:
        now = utcnow()
        with self.engine.begin() as conn:
            ids = conn.execute(
                select(Delivery.id)
                .where(Delivery.status == PENDING, Delivery.next_attempt_at <= now,
                       or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(self.config.claim_size)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            if not ids:
                return []
            conn.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
                lease_owner=self.owner, lease_until=now + timedelta(seconds=self.config.lease_seconds)))
            return conn.execute(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()

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
                lease_until=utcnow() + timedelta(seconds=self.config.lease_seconds)))
        return kept

    def _postpone(self, rows: list, until: datetime, why: str) -> None:
        """Hand ``rows`` back until ``until`` without counting an attempt."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(update(Delivery).where(Delivery.id.in_([row.id for row in rows]),
                                                Delivery.lease_owner == self.owner, Delivery.status == PENDING)
                         .values(next_attempt_at=until, lease_owner=None, lease_until=None, updated_at=utcnow()))
        log.info("%d deliveries postponed: %s", len(rows), why)

    def _spare(self, rows: list) -> None:
        """A CRM that failed a call (too slow, unreachable, limiting) costs one deadline per claim:
        its other rows wait behind the other tenants'."""
        self._postpone(rows, utcnow() + timedelta(seconds=self.config.backoff_base_seconds),
                       "their CRM failed the previous call")

    def release(self) -> None:
        """On a clean stop, hand unfinished claims back at once instead of waiting for the lease."""
        with self.engine.begin() as conn:
            conn.execute(update(Delivery).where(
                Delivery.lease_owner == self.owner, Delivery.status == PENDING,
            ).values(lease_owner=None, lease_until=None))

    # -- outcomes -------------------------------------------------------------------------------

    def _backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        return timedelta(seconds=backoff_seconds(self.config.backoff_base_seconds, self.config.backoff_max_seconds,
                                                 attempts, retry_after))

    def _finish(self, conn, row, outcome: Outcome, *, error: CrmError | None = None, detail: str | None = None,
                http_status: int | None = None, attempt_id: int | None = None, started: datetime | None = None,
                not_before: datetime | None = None):
        """Record one attempt's outcome and move the delivery on (done, retry later, or dead)."""
        now = utcnow()
        attempts = row.attempts + 1
        if error is not None:
            detail, http_status = error.detail, error.status
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
                retry_after = error.retry_after if error is not None else None
                values.update(last_error=detail, next_attempt_at=max(now + self._backoff(attempts, retry_after),
                                                                     not_before or now))
        if attempt_id is None:
            conn.execute(insert(Attempt).values(delivery_id=row.id, started_at=started or now, finished_at=now,
                                                outcome=outcome, http_status=http_status, detail=detail))
        else:
            conn.execute(update(Attempt).where(Attempt.id == attempt_id).values(
                finished_at=now, outcome=outcome, http_status=http_status, detail=detail))
        moved = conn.execute(update(Delivery).where(
            Delivery.id == row.id, Delivery.lease_owner == self.owner).values(**values)).rowcount
        status = values.get("status", "retry") if moved else "taken over"  # our lease ran out meanwhile
        self._observe(row, outcome, status, now)
        fields = {"delivery_id": row.id, "crm": row.crm, "tenant": row.tenant, "identity": masked(row.identity),
                  "attempt": attempts, "outcome": outcome, "status": status, "http_status": http_status,
                  "duration_ms": round((now - started).total_seconds() * 1000, 1) if started else None}
        if detail and outcome != Outcome.OK:
            fields["detail"] = detail
        log.log(logging.WARNING if status == DEAD else logging.INFO, "delivery attempt", extra={"fields": fields})

    @staticmethod
    def _observe(row, outcome: Outcome, status: str, now: datetime) -> None:
        """Count the attempt; a delivery this worker moved to done or dead counts once more."""
        metrics.DELIVERY_ATTEMPTS.labels(row.crm, outcome).inc()
        if status == DONE:
            metrics.DELIVERY_LATENCY.labels(row.crm).observe(max((now - row.created_at).total_seconds(), 0.0))
        elif status == DEAD:
            metrics.DEAD_LETTERS.labels(row.crm).inc()

    def _client(self, crm: str, tenant: str):
        key = (crm, tenant)
        if key not in self._clients:
            config = getattr(self.settings.tenants.get(tenant), crm, None)
            if config is None:
                raise LookupError(f"tenant {tenant!r} has no {crm} settings in the config")
            self._clients[key] = ExperienceClient(config) if crm == EXPERIENCE else CrmTextClient(config)
        return self._clients[key]

    # -- CRM Text -------------------------------------------------------------------------------

    def deliver_crmtext(self, tenant: str, row) -> bool:
        """Deliver one row; False when CRM Text failed the call (the rest of the claim can wait)."""
        client = self._client(CRMTEXT, tenant)
        ten = row.payload["ten_digits"]
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return True
            earlier = conn.execute(select(Attempt.outcome, Attempt.started_at).where(
                Attempt.delivery_id == row.id,
                Attempt.outcome.in_((Outcome.STARTED, Outcome.UNKNOWN, Outcome.OK, Outcome.ALREADY)))).all()
        if {a.outcome for a in earlier} & {Outcome.OK, Outcome.ALREADY}:
            # A previous owner's call succeeded after its lease ran out, so it could not mark the
            # row done: calling again would text the guest a second confirmation.
            with self.engine.begin() as conn:
                self._finish(conn, row, Outcome.ALREADY, detail="an earlier attempt already delivered it")
            return True
        if earlier:
            settled = client.settled_after(max(a.started_at for a in earlier))
            if utcnow() < settled:
                # That call may still be under way: a status read now could say "not opted out".
                self._postpone([row], settled, "an earlier call's outcome is not settled yet")
                return True
            checked = utcnow()
            try:
                status = client.customer_status(ten)
            except CrmError as exc:
                with self.engine.begin() as conn:
                    self._finish(conn, row, Outcome.RETRY, error=exc, started=checked)
                return False
            if status == OPTED_OUT:
                with self.engine.begin() as conn:
                    self._finish(conn, row, Outcome.ALREADY, started=checked,
                                 detail="CRM Text already has the number opted out (checked)")
                return True
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return True
            started = utcnow()
            attempt_id = conn.execute(insert(Attempt).values(
                delivery_id=row.id, started_at=started, outcome=Outcome.STARTED).returning(Attempt.id)).scalar()
        result, error = None, None
        try:
            result = client.opt_out(ten)
        except CrmError as exc:
            error = exc
        outcome = Outcome.of(error) if error else Outcome.ALREADY if result.already_done else Outcome.OK
        with self.engine.begin() as conn:
            self._finish(conn, row, outcome, error=error, attempt_id=attempt_id, started=started,
                         detail=None if error else result.message,
                         not_before=client.settled_after(started) if outcome == Outcome.UNKNOWN else None)
        return error is None

    # -- Experience -----------------------------------------------------------------------------

    def deliver_experience(self, tenant: str, rows: list) -> None:
        client = self._client(EXPERIENCE, tenant)
        size = self.settings.tenants[tenant].experience.batch_size
        _, groups = coalesce(rows)
        for start in range(0, len(groups), size):
            if self.stopping.is_set():
                return
            if not self._send_batch(client, [row for group in groups[start:start + size] for row in group]):
                self._spare([row for group in groups[start + size:] for row in group])
                return

    def _send_batch(self, client, rows: list) -> bool:
        """Send one batch; False when Experience failed the call."""
        with self.engine.begin() as conn:
            rows = self._renew(conn, rows)
        records, owners = coalesce(rows)
        if not records:
            return True
        started = utcnow()
        try:
            failed = client.opt_out(records)
        except CrmError as exc:
            with self.engine.begin() as conn:
                for group in owners:
                    for row in group:
                        self._finish(conn, row, Outcome.of(exc), error=exc, started=started)
            return False
        with self.engine.begin() as conn:
            for index, group in enumerate(owners):
                for row in group:
                    if index in failed:
                        detail = f"record refused: {failed[index]}"[:500]
                        self._finish(conn, row, Outcome.RETRY, detail=detail, started=started)
                    else:
                        self._finish(conn, row, Outcome.OK, started=started, http_status=200)
        return True
