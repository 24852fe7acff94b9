"""The worker: a loop that claims due deliveries into lanes, one per (CRM, tenant), and runs each
lane's units of work on a thread pool, so that a slow or failing CRM or tenant never delays
another; until SIGTERM, when it stops claiming, lets calls under way finish and hands the rest back.

Storage is the ledger's (``ledger/leases.py``); how a CRM is called, the CRM's (``crm/``). Every
claimed row is in one unit, run by one thread: the leases, the unknown-outcome check and the
re-check of what is owed at each renewal work as they do for one thread. A CRM that fails a call
pauses its lane for ``backoff_base_seconds`` and hands its queued rows back; other lanes go on.
"""

import logging
import os
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from . import metrics
from .backfill.schedule import Schedule
from .crm.delivery import Outcome, Report
from .crm.lanes import Lane, LaneRun, Protocols
from .ledger import clocks, fold
from .ledger.leases import Finished, Leases
from .ledger.models import utcnow
from .ledger.outbox import DEAD, DONE, masked
from .ledger.wakeup import Listener
from .settings import Settings

log = logging.getLogger(__name__)

CLOCK_PASS_SECONDS = 10.0  # how often open clocks are moved on (at_risk, breached): two indexed updates


class Worker:
    def __init__(self, settings: Settings, engine: Engine, *, owner: str | None = None):
        self.config = settings.worker
        self.engine = engine
        # deliveries.lease_owner is String(64): shorten the host name, keep the unique pid and suffix.
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases = Leases(engine, self.owner, settings.worker, alerts=settings.alerts)
        self.protocols = Protocols(settings.tenants, settings.alerts)
        self.alerts = settings.alerts
        self.stopping = threading.Event()
        self.backfill = Schedule(settings, engine)  # [backfill] every_minutes, claimed by one worker at a time
        self._next_clock_pass = 0.0
        self.wake = threading.Event()  # a unit finished, or a delivery was committed (LISTEN)
        self.notified = threading.Event()  # a delivery was committed (LISTEN)
        self.lock = threading.Condition()  # guards lanes and held; notified whenever a unit ends
        self.lanes: dict[Lane, LaneRun] = {}
        self.held: set[int] = set()  # ids of rows queued or in flight here
        self.listener: Listener | None = None
        self.died: BaseException | None = None  # what killed a unit's thread (tests stand in for kill -9 so)
        self.pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="lane")

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())
        log.info("worker %s started", self.owner)
        threading.Thread(target=fold.sweep, args=(self.leases.engine, self.stopping), name="fold-emails",
                         daemon=True).start()
        if self.engine.dialect.name == "postgresql":
            self.listener = Listener(self.engine, self.notify, self.stopping).start()
        look = True  # claim even if no lane wants more: new lanes may have rows due
        while not self.stopping.is_set():
            self.wake.clear()
            self.notified.clear()
            try:
                self.backfill.tick()
                self.move_clocks()
                claimed = self.claim(look)
            except DBAPIError as exc:  # PostgreSQL restarting, a connection cut: a line per poll, not a traceback
                log.warning("database unavailable (%s); retrying in %s s", type(exc.orig).__name__,
                            self.config.poll_seconds)
                claimed = 0
            except Exception:
                log.exception("worker iteration failed; retrying")
                claimed = 0
            if claimed:  # at once again: for lanes that want more still, or all if the claim was cut short
                look = claimed >= self.config.claim_size
                continue
            # A unit finishing wakes this loop for its lane's next rows; a poll or a commit, for any lane's.
            look = not self.wake.wait(self.config.poll_seconds) or self.notified.is_set()
        self.drain()
        log.info("worker %s stopped", self.owner)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def notify(self) -> None:
        """A delivery was committed (LISTEN): look for due rows whatever the lanes hold."""
        self.notified.set()
        self.wake.set()

    def claim(self, look: bool = True) -> int:
        """Claim what the lanes have room for and start what they may; returns how many rows were claimed.

        Unless ``look``, only when a lane wants more (it has room for ``concurrency`` units)."""
        with self.lock:
            if not look and not any(run.wants_more() for run in self.lanes.values()):
                return 0
            full = [lane for lane, run in self.lanes.items() if run.room() <= 0]
            skip = set(self.held)
        claimed = self.leases.claim(self._room, full, skip)
        self.enqueue(claimed)
        return len(claimed)

    def run_once(self) -> int:
        """Claim one batch and deliver it, lanes at once, and wait until it is all done."""
        self.move_clocks()
        claimed = self.leases.claim(skip=set(self.held))
        self.enqueue(claimed)
        self.wait_idle()
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
        """Deliver ``batch`` (claimed rows of ``lane``) and wait until it is all done."""
        self.enqueue([row for row in batch if Lane(row.crm, row.tenant) == lane])
        self.wait_idle()

    def drain(self) -> None:
        """On a stop: hand queued rows back, let the calls under way finish (each within its deadline)."""
        with self.lock:
            for run in self.lanes.values():
                run.queue.clear()
            self.lock.wait_for(lambda: all(run.in_flight == 0 for run in self.lanes.values()))
        self.leases.release()
        self.pool.shutdown()

    def wait_idle(self) -> None:
        with self.lock:
            self.lock.wait_for(lambda: all(run.in_flight == 0 and not run.startable() for run in self.lanes.values()))
        if self.died is not None:
            raise self.died

    def _room(self, crm: str, tenant: str) -> int:
        run = self.lanes.get(Lane(crm, tenant))
        return run.room() if run is not None else self.config.claim_size

    def enqueue(self, rows: list) -> None:
        unserved, paused = [], []
        with self.lock:
            for row in rows:
                lane = Lane(row.crm, row.tenant)
                run = self.lanes.get(lane)
                if run is None:
                    try:
                        run = self.lanes[lane] = LaneRun(lane, self.protocols[lane])
                    except LookupError as exc:  # the tenant or its CRM left the config: nothing will ever deliver these
                        unserved.append(Report(row, Outcome.PERMANENT, detail=str(exc)))
                        continue
                if run.paused_until > time.monotonic():
                    paused.append(row)
                    continue
                run.queue.append(row)
                run.held += 1
                self.held.add(row.id)
            self._start_units()
        self.finish(unserved)
        self.hand_back(paused, "their CRM failed a recent call")

    def _start_units(self) -> None:
        """Under the lock: hand each lane's queued rows to the pool, a unit at a time, up to its concurrency."""
        if self.stopping.is_set():
            return
        for run in self.lanes.values():
            while run.startable():
                unit = [run.queue.popleft() for _ in range(min(run.protocol.unit, len(run.queue)))]
                run.calling += 1
                run.in_flight += 1
                self.pool.submit(self._run_unit, run, unit, run.take_slot())

    def _run_unit(self, run: LaneRun, unit: list, delay: float) -> None:
        """One unit in one thread: its call holds one of the lane's call slots; its reports are
        finished once the slot is free again, so the lane's next call does not wait for that."""
        reports: list[Report] = []
        handed_back: list = []
        died = None
        failed = False
        try:
            if delay and self.stopping.wait(delay):
                handed_back = unit
            else:
                reports = run.protocol.deliver(unit, self.leases)
                failed = any(report.error is not None for report in reports)
        except DBAPIError as exc:  # the database failed mid-unit: what was called stays "started" (checked later)
            log.warning("database unavailable (%s) delivering a unit of lane %s/%s; handing it back",
                        type(exc.orig).__name__, *run.lane)
            handed_back = unit
        except Exception:
            log.exception("delivering a unit of lane %s/%s failed; handing it back", *run.lane)
            handed_back = unit
        except BaseException as exc:  # the thread dying mid-call: nothing more is written, as after kill -9
            died = self.died = exc
        try:
            with self.lock:
                run.calling -= 1
                if failed:  # the CRM failed the call: the lane pauses, its unit's unfinished and queued rows go back
                    run.paused_until = time.monotonic() + self.config.backoff_base_seconds
                    handed_back = unit + list(run.queue)
                    run.queue.clear()
                self._start_units()
            if died is None:
                try:
                    self.finish(reports)
                except DBAPIError as exc:
                    log.warning("database unavailable (%s) finishing a unit of lane %s/%s; handing it back",
                                type(exc.orig).__name__, *run.lane)
                    handed_back = unit + handed_back
                except Exception:
                    log.exception("finishing a unit of lane %s/%s failed; handing it back", *run.lane)
                    handed_back = unit + handed_back
                # Rows finished meanwhile are left as they are (postpone moves only those still ours, pending).
                self.hand_back(handed_back, "their CRM failed the previous call")
        finally:
            with self.lock:
                run.in_flight -= 1
                for row in unit + handed_back:
                    if row.id in self.held:
                        self.held.discard(row.id)
                        run.held -= 1
                self._start_units()
                self.lock.notify_all()
            self.wake.set()

    def hand_back(self, rows: list, why: str) -> None:
        """Postpone ``rows`` by ``backoff_base_seconds`` on the database's clock (read only when there are any).

        When the database cannot take even that (it is what failed the unit), say so: the rows stay
        leased and are claimed again once the lease runs out; a call whose outcome was not stored is
        checked before it is made again."""
        if not rows:
            return
        try:
            self.leases.postpone(rows, self.leases.now() + timedelta(seconds=self.config.backoff_base_seconds), why)
        except Exception as exc:  # noqa: BLE001 - a pool thread's exception would otherwise vanish unseen
            log.warning("could not hand back %d deliveries (%s); they are retried when their lease runs out "
                        "(lease_seconds = %s)", len(rows), type(exc).__name__, self.config.lease_seconds)

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
