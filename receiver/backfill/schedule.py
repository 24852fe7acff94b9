"""The worker's backfill schedule: every ``[backfill] every_minutes``, one worker runs every configured backfill.

Several workers may run at once, so the run is claimed in the ledger: one ``sync_cursors`` row
(tenant ``*``, source ``backfill``) holds when the last run started, and a worker claims a due
run with one conditional UPDATE (``started_at`` older than ``every_minutes`` → now). The database
lets only one UPDATE match (PostgreSQL re-checks the condition after the first one commits; SQLite
serialises writers), so one worker wins and the others find the run not due. The claim is checked
at most every ``CHECK_SECONDS``; the backfill runs on a thread of its own so deliveries go on.
A run that outlasts ``every_minutes`` may overlap the next one: harmless, as a page recorded twice
is a duplicate.
"""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, update

from ..ledger.db import dialect_insert
from ..ledger.models import SyncCursor, utcnow
from ..settings import Settings
from .run import Backfiller, sources_to_backfill

log = logging.getLogger(__name__)

TENANT, SOURCE = "*", "backfill"  # "*" names no tenant: tenants are config keys
CHECK_SECONDS = 30.0
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule:
    def __init__(self, settings: Settings, engine: Engine, *, check_seconds: float = CHECK_SECONDS,
                 clock=time.monotonic):
        self.settings = settings
        self.engine = engine
        self.every = timedelta(minutes=settings.backfill.every_minutes)
        self.sources = sources_to_backfill(settings) if self.every else []
        self.check_seconds = check_seconds
        self.clock = clock
        self.next_check = 0.0
        self.thread: threading.Thread | None = None

    def tick(self) -> threading.Thread | None:
        """Start a run on its own thread when one is due and this worker claims it; the thread, if started."""
        if not self.sources or self.clock() < self.next_check or (self.thread and self.thread.is_alive()):
            return None
        self.next_check = self.clock() + self.check_seconds
        try:
            claimed = self.claim()
        except Exception as exc:  # the database may be down: deliveries report that; try again later
            log.warning("backfill schedule not readable (%s)", type(exc).__name__)
            return None
        if not claimed:
            return None
        self.thread = threading.Thread(target=self.run, name="backfill", daemon=True)
        self.thread.start()
        return self.thread

    def claim(self) -> bool:
        """True when a run was due and this worker took it (one conditional UPDATE)."""
        now = utcnow()
        insert = dialect_insert(self.engine)
        with self.engine.begin() as conn:
            conn.execute(insert(SyncCursor).values(tenant=TENANT, source=SOURCE, since="", next_url=None,
                                                   started_at=NEVER, updated_at=now).on_conflict_do_nothing())
        with self.engine.begin() as conn:
            taken = conn.execute(update(SyncCursor).where(
                SyncCursor.tenant == TENANT, SyncCursor.source == SOURCE, SyncCursor.started_at <= now - self.every,
            ).values(started_at=now, updated_at=now))
        return taken.rowcount == 1

    def run(self) -> None:
        backfiller = Backfiller(self.settings, self.engine)
        for name in self.sources:
            summary = backfiller.run(name)
            log.log(logging.WARNING if summary.error else logging.INFO, "backfill %s", summary.line())
