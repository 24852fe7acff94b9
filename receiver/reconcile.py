"""`receiver reconcile`: read Experience's unsubscribed list back into the ledger as signals.

For each tenant with ``experience`` settings, the documented ``retrieve-opt-out`` list is read
page by page (``next_page_url`` followed as given, ``since`` added when it lacks it) and every
state of every recipient becomes one signal of source ``experience-sync`` (how a page becomes
signals: ``sources/experience_sync.py``). Assumptions:

- Times and ids: see ``sources/experience_sync.py``; a state holds since the time Experience gives
  (the consent row's ``since``). Running twice changes nothing the second time.
- Direction. Nothing is written back to Experience; towards CRM Text the normal rules apply (a US
  phone's new ``sms_ban`` is delivered). A state set at Experience before the guest re-consented
  here (SMS START, ``consent.opt_in``) is recorded as ignored rather than applied again.
- Resumable. Each page is recorded in one transaction, then the tenant's row in ``sync_cursors``
  is moved on. A pass that stops (error, crash) resumes at the page it stopped at when the next
  run is given no ``--since``; a page read twice is harmless (see Ids). Once a pass completes,
  the next one starts one day before this pass began, as the CRM does not say in which time zone
  it reads ``since`` (the overlap is deduplicated). The first pass starts at 1970-01-01.
- Retries. Each CRM call is retried as deliveries are (``[worker]`` ``max_attempts``,
  ``backoff_base_seconds``, ``backoff_max_seconds``; jitter; ``Retry-After`` honoured); a
  permanent error, or retries used up, stops that tenant only.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .backfill import cursors
from .backfill.passes import ReadBack
from .crm.errors import CrmError, Permanent, Retryable, backoff_seconds
from .crm.experience import ExperienceClient
from .errors import ReceiverError
from .ledger.models import SignalRow, utcnow
from .settings import Settings, SourceConfig
from .signals import OPT_IN
from .sources import experience_sync, own_source

log = logging.getLogger(__name__)

SOURCE = experience_sync.NAME
FIRST_SINCE = "1970-01-01"


@dataclass
class Summary:
    """What one tenant's pass did, printed as one line."""

    tenant: str
    since: str
    resumed: bool = False
    pages: int = 0
    recipients: int = 0
    states: int = 0  # states read (each one a signal, new or seen before)
    new_signals: int = 0
    changes: int = 0  # states newly in force
    skipped: int = 0  # records without a usable email or phone, states with an unreadable time
    error: str | None = None

    def line(self) -> str:
        start = f"resumed pass since {self.since}" if self.resumed else f"since {self.since}"
        counts = (f"{self.pages} pages, {self.recipients} recipients, {self.states} states recorded "
                  f"({self.new_signals} new), {self.changes} new changes, {self.skipped} skipped")
        end = f"stopped: {self.error}" if self.error else "complete"
        return f"{self.tenant}: {start}: {counts}; {end}"


def tenants_to_reconcile(settings: Settings, tenant: str | None) -> list[str]:
    """The tenants a run covers; a named tenant must exist and have ``experience`` settings."""
    if tenant is None:
        return [name for name, config in settings.tenants.items() if config.experience]
    if tenant not in settings.tenants:
        raise LookupError(f"unknown tenant {tenant!r}; known: {', '.join(sorted(settings.tenants))}")
    if settings.tenants[tenant].experience is None:
        raise LookupError(f"tenant {tenant!r} has no experience settings")
    return [tenant]


class Reconciler(ReadBack):
    def run(self, tenant: str, since: str | None = None) -> Summary:
        """One pass over ``tenant``'s list: a new one from ``since``, else resume or continue."""
        client = ExperienceClient(self.settings.tenants[tenant].experience, self.session)
        cursor = self._cursor(tenant)
        url, started_at = None, utcnow()
        if since is None and cursor is not None and cursor.next_url:
            since, url, started_at = cursor.since, cursor.next_url, cursor.started_at
        elif since is None:
            since = cursor.since if cursor is not None else FIRST_SINCE
        summary = Summary(tenant, since, resumed=url is not None)
        source = own_source(SOURCE, tenant)
        seen = set()
        try:
            while True:
                seen.add(url)
                recipients, next_url = self._fetch(client, since, url)
                if next_url is not None and next_url in seen:
                    raise Permanent("Experience next_page_url repeats an earlier page", detail=next_url)
                self._record_page(source, recipients, summary)
                self._save(tenant, since, next_url, started_at)
                url = next_url
                if url is None:
                    return summary
        except CrmError as exc:
            kind = "permanent" if isinstance(exc, Permanent) else f"gave up after {self._max_attempts} attempts"
            summary.error = f"{exc} ({kind})"
            if summary.resumed and isinstance(exc, Permanent):
                summary.error += "; --since starts a new pass"
        except (ReceiverError, SQLAlchemyError) as exc:
            summary.error = f"database unavailable ({type(exc).__name__})"
        except Exception as exc:  # an answer of a shape nobody foresaw must not stop the other tenants
            log.exception("reconcile %s failed unexpectedly", tenant)
            summary.error = f"unexpected error ({type(exc).__name__})"
        log.warning("reconcile %s stopped after %d pages: %s", tenant, summary.pages, summary.error)
        return summary

    # -- the CRM ----------------------------------------------------------------------------------

    @property
    def _max_attempts(self) -> int:
        return self.settings.worker.max_attempts

    def _fetch(self, client: ExperienceClient, since: str, url: str | None) -> tuple[list[dict], str | None]:
        """One page, retried like a delivery; raises the last error when retries are used up."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return client.retrieve_opt_outs(since, url)
            except Retryable as exc:
                if attempt >= self._max_attempts:
                    raise
                config = self.settings.worker  # the deliveries' schedule
                delay = backoff_seconds(config.backoff_base_seconds, config.backoff_max_seconds, attempt,
                                        exc.retry_after)
                log.info("reconcile retrying in %.1fs after: %s", delay, exc)
                self.sleep(delay)

    # -- the ledger -------------------------------------------------------------------------------

    def _record_page(self, source: SourceConfig, recipients: list[dict], summary: Summary) -> None:
        page = experience_sync.read_page(source.tenant, recipients,
                                         lambda emails, phones: self._lifted(source.tenant, emails, phones))
        summary.pages += 1
        summary.recipients += len(recipients)
        summary.skipped += page.skipped
        summary.states += len(page.inbound.signals)
        if not page.inbound.signals:
            return
        outcome = self.ledger.record(source, page.inbound, page.evidence)
        if outcome.original_receipt_id is None:
            summary.new_signals += len(outcome.event_ids) - len(outcome.duplicate_event_ids)
            summary.changes += sum(len(change.get("states", ())) for change in outcome.changes)

    def _lifted(self, tenant: str, emails: set[str], phones: set[str]) -> dict[tuple[str, str], datetime]:
        """When each state of these identities was last removed here (re-consent), if ever."""
        if not emails and not phones:
            return {}
        query = select(SignalRow.changes, SignalRow.received_at).where(
            SignalRow.tenant == tenant, SignalRow.kind == OPT_IN,
            SignalRow.email.in_(emails) | SignalRow.phone.in_(phones))
        lifted: dict[tuple[str, str], datetime] = {}
        with self.engine.connect() as conn:
            for changes, received_at in conn.execute(query):
                for change in changes or ():
                    identity = change.get("email") or change.get("phone")
                    for state in change.get("removed", ()):
                        key = (identity, state)
                        lifted[key] = max(lifted.get(key, received_at), received_at)
        return lifted

    def _cursor(self, tenant: str) -> cursors.Cursor | None:
        return cursors.read(self.engine, tenant, SOURCE)

    def _save(self, tenant: str, since: str, next_url: str | None, started_at: datetime) -> None:
        """Move the tenant's cursor on after a page; a finished pass sets the next pass's ``since``."""
        cursors.save(self.engine, tenant, SOURCE, since, next_url, started_at)
