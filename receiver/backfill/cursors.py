"""Where each list read stands, one ``sync_cursors`` row per (tenant, source name): shared by every backfill.

``next_url`` set: a pass from ``since`` stopped before that page (a ``pages.Position`` as text) and
resumes there. ``next_url`` empty: the last pass finished, and ``since`` is the date
the next pass starts from: one day before the finished pass began, as the providers do not all say
in which time zone they read a date (the overlap is deduplicated).
"""

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine, select

from ..ledger.db import dialect_insert
from ..ledger.models import SyncCursor, utcnow

DATE_FORMAT = "%Y-%m-%d"


class Cursor(NamedTuple):
    since: str
    next_url: str | None
    started_at: datetime


def read(engine: Engine, tenant: str, source: str) -> Cursor | None:
    with engine.connect() as conn:
        row = conn.execute(select(SyncCursor.since, SyncCursor.next_url, SyncCursor.started_at).where(
            SyncCursor.tenant == tenant, SyncCursor.source == source)).first()
    return Cursor(*row) if row is not None else None


def save(engine: Engine, tenant: str, source: str, since: str, next_url: str | None, started_at: datetime) -> None:
    """Move the cursor on after a page; a finished pass (``next_url`` None) sets the next pass's ``since``."""
    now = utcnow()
    values = {"since": since, "next_url": next_url, "started_at": started_at, "updated_at": now}
    if next_url is None:
        values.update(since=(started_at - timedelta(days=1)).strftime(DATE_FORMAT), completed_at=now)
    insert = dialect_insert(engine)
    statement = insert(SyncCursor).values(tenant=tenant, source=source, **values).on_conflict_do_update(
        index_elements=[SyncCursor.tenant, SyncCursor.source], set_=values)
    with engine.begin() as conn:
        conn.execute(statement)
