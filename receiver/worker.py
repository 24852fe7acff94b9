"""The worker: a loop that claims due deliveries, hands each lane's batch to its CRM's protocol and
finishes what it reports, until SIGTERM.

Storage is the ledger's (``ledger/leases.py``); how a CRM is called, the CRM's (``crm/``). A CRM
that fails a call costs one deadline per claim: the rest of its lane's batch waits behind the
other lanes.
"""

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import defaultdict
from contextlib import closing
from datetime import timedelta

from sqlalchemy import Engine

from . import metrics
from .backfill.schedule import Schedule
from .crm.delivery import Outcome, Report
from .crm.lanes import Lane, Protocols
from .ledger import clocks, fold
from .ledger.leases import Finished, Leases
from .ledger.models import utcnow
from .ledger.outbox import DEAD, DONE, masked
from .settings import Settings

log = logging.getLogger(__name__)

CLOCK_PASS_SECONDS = 10.0  # how often open clocks are moved on (at_risk, breached): two indexed updates


class Worker:
    def __init__(self, settings: Settings, engine: Engine, *, owner: str | None = None):
        self.config = settings.worker
        # deliveries.lease_owner is String(64): shorten the host name, keep the unique pid and suffix.
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases = Leases(engine, self.owner, settings.worker, alerts=settings.alerts)
        self.protocols = Protocols(settings.tenants, settings.alerts)
        self.alerts = settings.alerts
        self.stopping = threading.Event()
        self.backfill = Schedule(settings, engine)  # [backfill] every_minutes, claimed by one worker at a time
        self.engine = engine
        self._next_clock_pass = 0.0

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        log.info("worker %s started", self.owner)
        threading.Thread(target=fold.sweep, args=(self.leases.engine, self.stopping), name="fold-emails",
                         daemon=True).start()
        while not self.stopping.is_set():
            try:
                self.backfill.tick()
                busy = self.run_once()
            except Exception:
                log.exception("worker iteration failed; retrying")
                busy = 0
            if not busy:
                self.stopping.wait(self.config.poll_seconds)
        self.leases.release()
        log.info("worker %s stopped", self.owner)

    def run_once(self) -> int:
        """Claim one batch and deliver it, lane by lane; returns how many deliveries were claimed."""
        self.move_clocks()
        claimed = self.leases.claim()
        lanes: dict[Lane, list] = defaultdict(list)
        for row in claimed:
            lanes[Lane(row.crm, row.tenant)].append(row)
        for lane, batch in lanes.items():
            if self.stopping.is_set():
                break
            self.deliver(lane, batch)
        return len(claimed)

    def move_clocks(self) -> None:
        """Every CLOCK_PASS_SECONDS, store the statuses open clocks have reached (at_risk, breached)."""
        if time.monotonic() < self._next_clock_pass:
            return
        self._next_clock_pass = time.monotonic() + CLOCK_PASS_SECONDS
        moved = clocks.advance(self.engine, utcnow(), self.alerts)
        if any(moved.values()):
            log.warning("compliance clocks moved on", extra={"fields": moved})

    def deliver(self, lane: Lane, batch: list) -> None:
        """Hand ``batch`` to the lane's protocol and finish each step's reports before its next call."""
        try:
            protocol = self.protocols[lane]
        except LookupError as exc:  # the tenant or its CRM left the config: nothing will ever deliver these
            self.finish([Report(row, Outcome.PERMANENT, detail=str(exc)) for row in batch])
            return
        with closing(protocol.deliver(batch, self.leases)) as steps:
            for reports in steps:
                self.finish(reports)
                if any(report.error is not None for report in reports):
                    self.leases.postpone(batch, self.leases.now() + timedelta(seconds=self.config.backoff_base_seconds),
                                         "their CRM failed the previous call")
                    return
                if self.stopping.is_set():
                    return

    def finish(self, reports: list[Report]) -> None:
        for report, finished in zip(reports, self.leases.finish(reports), strict=True):
            _observe(report, finished)


def _observe(report: Report, finished: Finished) -> None:
    """Count and log the attempt; a delivery this worker moved to done or dead counts once more."""
    row, outcome, status, now = report.row, report.outcome, finished.status, finished.at
    metrics.DELIVERY_ATTEMPTS.labels(row.crm, outcome).inc()
    if status == DONE:
        metrics.DELIVERY_LATENCY.labels(row.crm).observe(max((now - row.created_at).total_seconds(), 0.0))
    elif status == DEAD:
        metrics.DEAD_LETTERS.labels(row.crm).inc()
    started = report.started
    fields = {"delivery_id": row.id, "crm": row.crm, "tenant": row.tenant, "identity": masked(row.identity),
              "attempt": finished.attempts, "outcome": outcome, "status": status, "http_status": report.http_status,
              "duration_ms": round((now - started).total_seconds() * 1000, 1) if started else None}
    if report.detail and outcome != Outcome.OK:
        fields["detail"] = report.detail
    log.log(logging.WARNING if status == DEAD else logging.INFO, "delivery attempt", extra={"fields": fields})
