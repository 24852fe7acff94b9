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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..identities import mask_email, mask_phone
from ..ledger.alerts import BACKFILL_FAILED, BACKFILL_RECOVERED, raise_alert
from ..ledger.models import RequestRecord, utcnow
from ..settings import Settings, SourceConfig
from ..signals import Inbound
from . import passes, readers
from .convert import to_signal
from .pages import Page, Position

log = logging.getLogger(__name__)

FIRST_DAYS = 30


@dataclass
class Summary(passes.Summary):
    """What one source's pass did."""

    COUNTS = "{pages} pages, {items} items recorded ({new_signals} new), {recovered} recovered, {skipped} skipped"

    items: int = 0  # items recorded (each one a signal, new or seen before)
    new_signals: int = 0
    recovered: int = 0  # states newly in force: opt-outs the webhooks lost
    skipped: int = 0  # items recorded as ignored: no address or number, an unknown reason


def sources_to_backfill(settings: Settings, source: str | None = None) -> list[str]:
    """The sources a run covers; a named one must exist and have a ``backfill`` option."""
    return passes.names_to_read("source", settings.sources, lambda config: config.options.get("backfill"),
                                "backfill option", source)


class Backfiller(passes.ReadBack):
    command = "backfill"
    summary_type = Summary
    credentials = "the source's backfill credentials"

    def cursor_of(self, name: str) -> tuple[str, str]:
        return self.settings.sources[name].tenant, name

    def first_since(self, started_at: datetime) -> str:
        return (started_at.date() - timedelta(days=FIRST_DAYS)).isoformat()

    def pages(self, name: str, since: date, resume: Position | None) -> Iterator[Page]:
        reader = readers.reader(self.settings.sources[name], self.settings.worker, session=self.session,
                                sleep=self.sleep)
        return reader.pages(since, resume)

    def stopped(self, name: str, summary: Summary) -> None:
        """``backfill.failed`` in a transaction of its own; a database that is down only leaves the log line."""
        try:
            with self.engine.begin() as conn:
                raise_alert(conn, self.settings.alerts, BACKFILL_FAILED, self.settings.sources[name].tenant, None,
                            {"source": name, "error": summary.error}, utcnow())
        except SQLAlchemyError:
            log.warning("backfill %s: the backfill.failed alert could not be queued", name)

    def _recorded(self, config: SourceConfig, request_key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(RequestRecord.id).where(
                RequestRecord.source == config.name, RequestRecord.request_key == request_key)).first() is not None

    def record(self, name: str, page: Page, summary: Summary) -> None:
        config = self.settings.sources[name]
        if not page.items:
            return
        keys = hashlib.sha256("\x1f".join([str(page.position), *(item.key for item in page.items)]).encode())
        inbound_key = f"backfill:{keys.hexdigest()}"
        summary.items += len(page.items)
        if self._recorded(config, inbound_key):  # the same page as last run: nothing to convert or store
            summary.skipped += sum(1 for item in page.items if item.skipped)
            return
        # Oldest first, whatever order the list API pages in: a STOP then a START lost together end as a START.
        signals = sorted((to_signal(item, config) for item in page.items),
                         key=lambda signal: (signal.occurred_at is None, signal.occurred_at or 0))
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
