"""The worker: claims due deliveries, calls the CRMs, backs off, dead-letters, stops on SIGTERM.

Claims are atomic (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's single writer lock with
``BEGIN IMMEDIATE``) and leased: a worker killed mid-batch loses its claims when the lease runs
out. Before every CRM call the lease is renewed, and whether the delivery is still owed checked,
in the same transaction that writes the attempt as ``started``; a row whose lease was taken over is
left to its new owner. An OptOutCustomer whose outcome is unknown (timeout, crash mid-call, a
gateway's error page) is never simply repeated: once that call's deadline has passed, the number's
status is asked first, so a guest gets at most one confirmation text per opt-out.
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
from .crm.errors import CrmError, OutcomeUnknown, Permanent, backoff_seconds
from .crm.experience import ExperienceClient, coalesce
from .identities import mask_email, mask_phone
from .ledger.models import Attempt, Delivery, utcnow
from .ledger.outbox import DEAD, DONE, PENDING, Outcome, still_owed
from .settings import Settings
from .states import CRMTEXT, EXPERIENCE

log = logging.getLogger(__name__)


def masked(identity: str) -> str:
    return mask_email(identity) if "@" in identity else mask_phone(identity)


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
                for row in rows:
                    if self.stopping.is_set():
                        break
                    self.deliver_crmtext(tenant, row)
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
        """Extend our lease on ``rows`` just before a call; returns those still ours and still owed.

        Owed-ness is checked in this transaction, so a re-consent (START) committed since the claim,
        even while the worker was busy with earlier calls of the batch, stops the call that follows.
        """
        ours = set(conn.execute(select(Delivery.id).where(
            Delivery.id.in_([row.id for row in rows]), Delivery.lease_owner == self.owner,
            Delivery.status == PENDING,
        ).with_for_update()).scalars())
        kept = still_owed(conn, [row for row in rows if row.id in ours])
        if kept:
            conn.execute(update(Delivery).where(Delivery.id.in_([row.id for row in kept])).values(
                lease_until=utcnow() + timedelta(seconds=self.config.lease_seconds)))
        return kept

    def _postpone(self, conn, row, until: datetime, why: str) -> None:
        """Hand the row back until ``until`` without counting an attempt."""
        conn.execute(update(Delivery).where(Delivery.id == row.id, Delivery.lease_owner == self.owner).values(
            next_attempt_at=until, lease_owner=None, lease_until=None, updated_at=utcnow()))
        log.info("delivery %s to %s for %s postponed: %s", row.id, row.crm, masked(row.identity), why)

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
            tenant_config = self.settings.tenants.get(tenant)
            config = getattr(tenant_config, crm, None)
            if config is None:
                raise LookupError(f"tenant {tenant!r} has no {crm} settings in the config")
            self._clients[key] = ExperienceClient(config) if crm == EXPERIENCE else CrmTextClient(config)
        return self._clients[key]

    # -- CRM Text -------------------------------------------------------------------------------

    def deliver_crmtext(self, tenant: str, row) -> None:
        client = self._client(CRMTEXT, tenant)
        ten = row.payload["ten_digits"]
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return
            earlier = conn.execute(select(Attempt.outcome, Attempt.started_at).where(
                Attempt.delivery_id == row.id,
                Attempt.outcome.in_((Outcome.STARTED, Outcome.UNKNOWN, Outcome.OK, Outcome.ALREADY)))).all()
        if {a.outcome for a in earlier} & {Outcome.OK, Outcome.ALREADY}:
            # A previous owner's call succeeded after its lease ran out, so it could not mark the
            # row done: calling again would text the guest a second confirmation.
            with self.engine.begin() as conn:
                self._finish(conn, row, Outcome.ALREADY, detail="an earlier attempt already delivered it")
            return
        if earlier:
            settled = client.settled_after(max(a.started_at for a in earlier))
            if utcnow() < settled:
                # That call may still be under way: a status read now could say "not opted out".
                with self.engine.begin() as conn:
                    self._postpone(conn, row, settled, "an earlier call's outcome is not settled yet")
                return
            checked = utcnow()
            try:
                status = client.customer_status(ten)
            except CrmError as exc:
                with self.engine.begin() as conn:
                    self._finish(conn, row, Outcome.RETRY, error=exc, started=checked)
                return
            if status == OPTED_OUT:
                with self.engine.begin() as conn:
                    self._finish(conn, row, Outcome.ALREADY, started=checked,
                                 detail="CRM Text already has the number opted out (checked)")
                return
        with self.engine.begin() as conn:
            if not self._renew(conn, [row]):
                return
            started = utcnow()
            attempt_id = conn.execute(insert(Attempt).values(
                delivery_id=row.id, started_at=started, outcome=Outcome.STARTED).returning(Attempt.id)).scalar()
        result, error = None, None
        try:
            result = client.opt_out(ten)
        except CrmError as exc:
            error = exc
        outcome = _outcome(error) if error else Outcome.ALREADY if result.already_done else Outcome.OK
        with self.engine.begin() as conn:
            self._finish(conn, row, outcome, error=error, attempt_id=attempt_id, started=started,
                         detail=None if error else result.message,
                         not_before=client.settled_after(started) if outcome == Outcome.UNKNOWN else None)

    # -- Experience -----------------------------------------------------------------------------

    def deliver_experience(self, tenant: str, rows: list) -> None:
        client = self._client(EXPERIENCE, tenant)
        size = self.settings.tenants[tenant].experience.batch_size
        _, groups = coalesce(rows)
        for start in range(0, len(groups), size):
            if self.stopping.is_set():
                return
            self._send_batch(client, [row for group in groups[start:start + size] for row in group])

    def _send_batch(self, client, rows: list) -> None:
        with self.engine.begin() as conn:
            rows = self._renew(conn, rows)
        records, owners = coalesce(rows)
        if not records:
            return
        started = utcnow()
        try:
            failed = client.opt_out(records)
        except CrmError as exc:
            with self.engine.begin() as conn:
                for group in owners:
                    for row in group:
                        self._finish(conn, row, _outcome(exc), error=exc, started=started)
            return
        with self.engine.begin() as conn:
            for index, group in enumerate(owners):
                for row in group:
                    if index in failed:
                        self._finish(conn, row, Outcome.RETRY, detail=f"record refused: {failed[index]}"[:500],
                                     started=started)
                    else:
                        self._finish(conn, row, Outcome.OK, started=started, http_status=200)


def _outcome(error: CrmError) -> Outcome:
    if isinstance(error, Permanent):
        return Outcome.PERMANENT
    return Outcome.UNKNOWN if isinstance(error, OutcomeUnknown) else Outcome.RETRY
