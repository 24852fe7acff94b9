"""``receiver backfill``: read each configured source's provider record back into the ledger, page by page.

For each source with a ``backfill`` option, its provider's lists are read from the saved position
(or ``--since``); each page's items become signals of the source itself through its webhook's
rules (``convert.py``) and are recorded in one transaction as one ``Inbound`` (request key: a hash
of the page's position and item keys), then the source's ``sync_cursors`` row moves on
(``cursors.py``). So a second run records nothing new, and a run that stops resumes at the page it
stopped at. A first pass reads the last ``FIRST_DAYS`` days.

An item that changes a state is an opt-out the webhook path lost: counted
(``receiver_backfill_recovered_total{source}``) and logged as a warning with the identity masked;
its signal's detail says ``"via": "backfill"``; each page that recovered any raises one
``backfill.recovered`` alert (source, count, masked identities and their states) in the page's own
transaction, so a second run raises none. A 401/403, a page that is not the documented one, or a
provider that keeps failing stops that source only, with one line naming it and a ``backfill.failed``
alert (source, that line).
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..errors import ReceiverError
from ..identities import mask_email, mask_phone
from ..ledger.alerts import BACKFILL_FAILED, BACKFILL_RECOVERED, raise_alert
from ..ledger.models import RequestRecord, utcnow
from ..settings import Settings, SourceConfig
from ..signals import Inbound
from . import cursors, options
from .convert import to_signal
from .pages import BackfillError, CredentialsRefused, Page, Position
from .passes import ReadBack

log = logging.getLogger(__name__)

FIRST_DAYS = 30


@dataclass
class Summary:
    """What one source's pass did, printed as one line."""

    source: str
    since: str
    resumed: bool = False
    pages: int = 0
    items: int = 0  # items recorded (each one a signal, new or seen before)
    new_signals: int = 0
    recovered: int = 0  # states newly in force: opt-outs the webhooks lost
    skipped: int = 0  # items recorded as ignored: no address or number, an unknown reason
    error: str | None = None

    def line(self) -> str:
        start = f"resumed pass since {self.since}" if self.resumed else f"since {self.since}"
        counts = (f"{self.pages} pages, {self.items} items recorded ({self.new_signals} new), "
                  f"{self.recovered} recovered, {self.skipped} skipped")
        end = f"stopped: {self.error}" if self.error else "complete"
        return f"{self.source}: {start}: {counts}; {end}"


def sources_to_backfill(settings: Settings, source: str | None = None) -> list[str]:
    """The sources a run covers; a named one must exist and have a ``backfill`` option."""
    with_backfill = [name for name, config in settings.sources.items() if config.options.get("backfill")]
    if source is None:
        return with_backfill
    if source not in settings.sources:
        raise LookupError(f"unknown source {source!r}; known: {', '.join(sorted(settings.sources))}")
    if source not in with_backfill:
        raise LookupError(f"source {source!r} has no backfill option")
    return [source]


class Backfiller(ReadBack):
    def run(self, name: str, since: str | None = None) -> Summary:
        """One pass over source ``name``'s lists: a new one from ``since``, else resume or go on."""
        config = self.settings.sources[name]
        cursor = cursors.read(self.engine, config.tenant, name)
        resume, started_at = None, utcnow()
        if since is None and cursor is not None and cursor.next_url:
            since, resume, started_at = cursor.since, Position.parse(cursor.next_url), cursor.started_at
        elif since is None:
            since = cursor.since if cursor is not None else (started_at.date() - timedelta(days=FIRST_DAYS)).isoformat()
        summary = Summary(name, since, resumed=resume is not None)
        try:
            reader = options.reader(config, self.settings.worker, session=self.session, sleep=self.sleep)
            for page in reader.pages(date.fromisoformat(since), resume):
                self._record(config, page, summary)
                cursors.save(self.engine, config.tenant, name, since, str(page.next) if page.next else None,
                             started_at)
            return summary
        except CredentialsRefused as exc:
            summary.error = f"{exc}: check the source's backfill credentials"
        except BackfillError as exc:
            summary.error = f"{exc}; the next run resumes at this page"
        except (ReceiverError, SQLAlchemyError) as exc:
            summary.error = f"database unavailable ({type(exc).__name__})"
        except Exception as exc:  # an answer nobody foresaw must not stop the other sources
            log.exception("backfill %s failed unexpectedly", name)
            summary.error = f"unexpected error ({type(exc).__name__})"
        log.warning("backfill %s stopped after %d pages: %s", name, summary.pages, summary.error)
        self._alert_failed(config, summary)
        return summary

    def _alert_failed(self, config: SourceConfig, summary: Summary) -> None:
        """``backfill.failed`` in a transaction of its own; a database that is down only leaves the log line."""
        try:
            with self.engine.begin() as conn:
                raise_alert(conn, self.settings.alerts, BACKFILL_FAILED, config.tenant, None,
                            {"source": config.name, "error": summary.error}, utcnow())
        except SQLAlchemyError:
            log.warning("backfill %s: the backfill.failed alert could not be queued", config.name)

    def _recorded(self, config: SourceConfig, request_key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(RequestRecord.id).where(
                RequestRecord.source == config.name, RequestRecord.request_key == request_key)).first() is not None

    def _record(self, config: SourceConfig, page: Page, summary: Summary) -> None:
        summary.pages += 1
        if not page.items:
            return
        keys = hashlib.sha256("\x1f".join([str(page.position), *(item.key for item in page.items)]).encode())
        inbound_key = f"backfill:{keys.hexdigest()}"
        summary.items += len(page.items)
        if self._recorded(config, inbound_key):  # the same page as last run: nothing to convert or store
            summary.skipped += sum(1 for item in page.items if item.skipped)
            return
        signals = [to_signal(item, config) for item in page.items]
        summary.skipped += sum(1 for signal in signals if "skipped" in signal.detail)
        evidence = json.dumps([item.raw for item in page.items], sort_keys=True, default=str).encode()
        outcome = self.ledger.record(config, Inbound(inbound_key, signals), evidence,
                                     then=lambda conn, outcome, now: self._alert_recovered(conn, config, outcome, now))
        if outcome.original_receipt_id is not None:
            return
        summary.new_signals += len(outcome.event_ids) - len(outcome.duplicate_event_ids)
        for change in recovered(outcome):
            summary.recovered += 1
            metrics.BACKFILL_RECOVERED.labels(config.name).inc()
            log.warning("backfill %s recovered %s for %s: an opt-out the webhook path lost", config.name,
                        ", ".join(change["states"]), masked(change))

    def _alert_recovered(self, conn, config: SourceConfig, outcome, now) -> None:
        """One ``backfill.recovered`` per page that set states, in the page's own transaction."""
        changes = recovered(outcome)
        if changes:
            raise_alert(conn, self.settings.alerts, BACKFILL_RECOVERED, config.tenant, None, {
                "source": config.name, "count": len(changes),
                "recovered": [{"identity": masked(c), "states": list(c["states"])} for c in changes]}, now)


def recovered(outcome) -> list[dict]:
    """The page's changes that set states: opt-outs the webhook path lost."""
    return [change for change in outcome.changes if change.get("states")]


def masked(change: dict) -> str:
    return mask_email(change["email"]) if "email" in change else mask_phone(change["phone"])
