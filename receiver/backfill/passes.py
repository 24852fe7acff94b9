"""One pass over a provider's own record, the same for every backfill (the senders' and Experience's).

A pass starts where the reader's ``sync_cursors`` row says (``cursors.py``): it resumes a pass
that stopped at the page it stopped at, unless ``--since`` starts a new one; otherwise it goes on
from the last finished pass (or the reader's first ``since``). Each page is recorded in one
transaction, then the cursor moves on, so a second run records nothing new and a run that stops
resumes there. An error stops this name only, with one line saying why (the CLI prints it and
exits 1; ``cli._read_back``): credentials refused (401/403), a page that is not the documented
one, a provider that kept failing after the deliveries' retries (``pages.py``), the database.

A reader (``run.Backfiller``, ``reconcile.Reconciler``) says only where its cursor is, what its
first ``since`` is, which pages to read, how a page is recorded and what its summary counts.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

import requests
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..crm.transport import new_session
from ..errors import ReceiverError
from ..ledger.models import utcnow
from ..ledger.record import Ledger
from ..settings import Settings
from . import cursors
from .pages import BackfillError, CredentialsRefused, Page, Position

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What one pass did, printed as one line: ``<name>: [resumed pass ]since <date>: <counts>; <end>``.

    A reader's subclass adds its counters and says in ``COUNTS`` how they read (a format of its fields).
    """

    COUNTS: ClassVar[str] = "{pages} pages"

    name: str
    since: str
    resumed: bool = False
    pages: int = 0
    error: str | None = None

    def line(self) -> str:
        start = f"resumed pass since {self.since}" if self.resumed else f"since {self.since}"
        end = f"stopped: {self.error}" if self.error else "complete"
        return f"{self.name}: {start}: {self.COUNTS.format_map(vars(self))}; {end}"


def names_to_read(what: str, configured: Mapping[str, object], readable: Callable[[object], object],
                  lacking: str, wanted: str | None) -> list[str]:
    """The names a run covers: every configured one that is ``readable``, or ``wanted`` alone, which must
    exist and be readable (a ``LookupError`` saying which it is not, for the command's option)."""
    names = [name for name, config in configured.items() if readable(config)]
    if wanted is None:
        return names
    if wanted not in configured:
        raise LookupError(f"unknown {what} {wanted!r}; known: {', '.join(sorted(configured))}")
    if wanted not in names:
        raise LookupError(f"{what} {wanted!r} has no {lacking}")
    return [wanted]


class ReadBack:
    """The pass ``Backfiller`` (senders' providers) and ``Reconciler`` (Experience) share."""

    command: ClassVar[str]  # the command's name, in log lines
    summary_type: ClassVar[type[Summary]] = Summary
    credentials: ClassVar[str]  # what to check when the provider refuses the credentials

    def __init__(self, settings: Settings, engine: Engine, *, session: requests.Session | None = None,
                 sleep=time.sleep):
        self.settings = settings
        self.engine = engine
        self.ledger = Ledger(engine, settings.tenants, settings.identity_key)
        self.session = session or new_session()
        self.sleep = sleep

    def run(self, name: str, since: str | None = None) -> Summary:
        """One pass over ``name``'s lists: a new one from ``since``, else resume or go on."""
        tenant, source = self.cursor_of(name)
        cursor = cursors.read(self.engine, tenant, source)
        resume, started_at = None, utcnow()
        if since is None and cursor is not None and cursor.next_url:
            since, resume, started_at = cursor.since, Position.parse(cursor.next_url), cursor.started_at
        elif since is None:
            since = cursor.since if cursor is not None else self.first_since(started_at)
        summary = self.summary_type(name, since, resumed=resume is not None)
        try:
            for page in self.pages(name, date.fromisoformat(since), resume):
                summary.pages += 1
                self.record(name, page, summary)
                cursors.save(self.engine, tenant, source, since, str(page.next) if page.next else None,
                             started_at)
            return summary
        except CredentialsRefused as exc:
            summary.error = f"{exc}: check {self.credentials}"
        except BackfillError as exc:
            summary.error = f"{exc}; the next run resumes at this page"
        except (ReceiverError, SQLAlchemyError) as exc:
            summary.error = f"database unavailable ({type(exc).__name__})"
        except Exception as exc:  # an answer nobody foresaw must not stop the other names
            log.exception("%s %s failed unexpectedly", self.command, name)
            summary.error = f"unexpected error ({type(exc).__name__})"
        log.warning("%s %s stopped after %d pages: %s", self.command, name, summary.pages, summary.error)
        self.stopped(name, summary)
        return summary

    # -- what each reader says ---------------------------------------------------------------------

    def cursor_of(self, name: str) -> tuple[str, str]:
        """The (tenant, source name) of ``name``'s ``sync_cursors`` row."""
        raise NotImplementedError

    def first_since(self, started_at: datetime) -> str:
        """Where a first pass starts (``YYYY-MM-DD``)."""
        raise NotImplementedError

    def pages(self, name: str, since: date, resume: Position | None) -> Iterator[Page]:
        """``name``'s pages from ``since``, or from ``resume`` (the page a stopped pass stopped at)."""
        raise NotImplementedError

    def record(self, name: str, page: Page, summary: Summary) -> None:
        """Record one page in one transaction, and count it in ``summary``."""
        raise NotImplementedError

    def stopped(self, name: str, summary: Summary) -> None:
        """After a pass stopped on ``summary.error``: nothing more, unless the reader raises an alert."""
