"""``receiver reconcile``: Experience's backfill, its unsubscribed list read back as signals of ``experience-sync``.

For each tenant with ``experience`` settings, the list is read page by page (``experience.py``)
through the pass every backfill shares (``passes.py``: resuming, one transaction per page, the
tenant's ``sync_cursors`` row, retries like deliveries with ``Retry-After`` honoured, an error
stopping that tenant only with one line). Every state of every recipient becomes one signal of the
receiver's own source ``experience-sync`` (``sources/experience_sync.py``). Assumptions:

- Times and ids: see ``sources/experience_sync.py``; a state holds since the time Experience gives
  (the consent row's ``since``). Running twice changes nothing the second time.
- Direction. Nothing is written back to Experience; towards CRM Text the normal rules apply (a US
  phone's new ``sms_ban`` is delivered). A state set at Experience before the guest re-consented
  here (SMS START, ``consent.opt_in``) is recorded as ignored rather than applied again.
- The first pass starts at 1970-01-01 (the whole list); later ones a day before the last finished
  pass began, as the CRM does not say in which time zone it reads ``since``.
- Unlike the senders' backfills, a state read here is not an opt-out a webhook lost: no
  ``receiver_backfill_recovered_total``, no ``backfill.*`` alerts.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select

from ..ledger.models import SignalRow
from ..settings import Settings
from ..signals import OPT_IN
from ..sources import experience_sync, own_source
from . import passes, readers
from .pages import Page, Position

SOURCE = experience_sync.NAME
FIRST_SINCE = "1970-01-01"


@dataclass
class Summary(passes.Summary):
    """What one tenant's pass did."""

    COUNTS = ("{pages} pages, {recipients} recipients, {states} states recorded ({new_signals} new), "
              "{changes} new changes, {skipped} skipped")

    recipients: int = 0
    states: int = 0  # states read (each one a signal, new or seen before)
    new_signals: int = 0
    changes: int = 0  # states newly in force
    skipped: int = 0  # records without a usable email or phone, states with an unreadable time


def tenants_to_reconcile(settings: Settings, tenant: str | None) -> list[str]:
    """The tenants a run covers; a named tenant must exist and have ``experience`` settings."""
    return passes.names_to_read("tenant", settings.tenants, lambda config: config.experience,
                                "experience settings", tenant)


class Reconciler(passes.ReadBack):
    command = "reconcile"
    summary_type = Summary
    credentials = "the tenant's experience partner_token and hotel_token"

    def cursor_of(self, name: str) -> tuple[str, str]:
        return name, SOURCE

    def first_since(self, started_at: datetime) -> str:
        return FIRST_SINCE

    def pages(self, name: str, since: date, resume: Position | None) -> Iterator[Page[dict]]:
        reader = readers.experience_reader(self.settings.tenants[name].experience, self.settings.worker,
                                           session=self.session, sleep=self.sleep)
        return reader.pages(since, resume)

    def record(self, name: str, page: Page[dict], summary: Summary) -> None:
        read = experience_sync.read_page(name, page.items, lambda emails, phones: self._lifted(name, emails, phones))
        summary.recipients += len(page.items)
        summary.skipped += read.skipped
        summary.states += len(read.inbound.signals)
        if not read.inbound.signals:
            return
        outcome = self.ledger.record(own_source(SOURCE, name), read.inbound, read.evidence)
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
