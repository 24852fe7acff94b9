"""`receiver reconcile`: read Experience's unsubscribed list back into the ledger as signals.

For each tenant with ``experience`` settings, the documented ``retrieve-opt-out`` list is read
page by page (``next_page_url`` followed as given, ``since`` added when it lacks it) and every
state of every recipient becomes one signal of source ``experience-sync``. Assumptions:

- Times. Experience writes ``YYYY-MM-DD HH:MM:SS`` without a zone; they are read as UTC. A state
  holds since that time (the signal's ``occurred_at`` and the consent row's ``since``).
- Ids. A signal's event id is a hash of tenant, identity (the email for email states, the phone
  for SMS states), state and the CRM's time, so reading the same state again is a duplicate the
  ledger drops; a page's request key is a hash of tenant and page content, so an unchanged page
  is answered from its first receipt. Running twice therefore changes nothing the second time.
- Direction. The signals carry ``reported_by = experience``: nothing is written back to
  Experience; towards CRM Text the normal rules apply (a US phone's new ``sms_ban`` is delivered).
  A state set at Experience before the guest re-consented here (SMS START, ``consent.opt_in``) is
  recorded as ignored rather than applied again: Experience is never told of a re-consent.
- Resumable. Each page is recorded in one transaction, then the tenant's row in ``sync_cursors``
  is moved on. A pass that stops (error, crash) resumes at the page it stopped at when the next
  run is given no ``--since``; a page read twice is harmless (see Ids). Once a pass completes,
  the next one starts one day before this pass began, as the CRM does not say in which time zone
  it reads ``since`` (the overlap is deduplicated). The first pass starts at 1970-01-01.
- Retries. Each CRM call is retried as deliveries are (``[worker]`` ``max_attempts``,
  ``backoff_base_seconds``, ``backoff_max_seconds``; jitter; ``Retry-After`` honoured); a
  permanent error, or retries used up, stops that tenant only.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from .crm.errors import CrmError, Permanent, Retryable, backoff_seconds
from .crm.experience import TIME_FORMAT, ExperienceClient
from .crm.transport import new_session
from .errors import ReceiverError
from .identities import normalize_email, normalize_phone, valid_or_none
from .ledger.db import dialect_insert
from .ledger.models import SignalRow, SyncCursor, utcnow
from .ledger.record import Ledger, identity_for
from .settings import Settings, SourceConfig
from .signals import OPT_IN, OPT_OUT, OTHER, Inbound, Signal
from .states import EXPERIENCE, STATES

log = logging.getLogger(__name__)

SOURCE = "experience-sync"
FIRST_SINCE = "1970-01-01"
DATE_FORMAT = "%Y-%m-%d"
STALE = "set at Experience before a later re-consent here"


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


def parse_time(value) -> datetime | None:
    """Experience's ``YYYY-MM-DD HH:MM:SS`` as an aware UTC time, or None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def event_id(tenant: str, identity: str, state: str, at: datetime) -> str:
    key = "\x1f".join((tenant, identity, state, at.strftime(TIME_FORMAT)))
    return "xp_" + hashlib.sha256(key.encode()).hexdigest()[:40]


class Reconciler:
    def __init__(self, settings: Settings, engine: Engine, *, session: requests.Session | None = None,
                 sleep=time.sleep):
        self.settings = settings
        self.engine = engine
        self.ledger = Ledger(engine, settings.tenants)
        self.session = session or new_session()
        self.sleep = sleep

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
        source = SourceConfig(name=SOURCE, kind=SOURCE, tenant=tenant)
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
        summary.pages += 1
        summary.recipients += len(recipients)
        signals = self._signals(source.tenant, recipients, summary)
        summary.states += len(signals)
        if not signals:
            return
        content = json.dumps(recipients, sort_keys=True, separators=(",", ":"), default=str).encode()
        request_key = f"{source.tenant}:{hashlib.sha256(content).hexdigest()}"
        outcome = self.ledger.record(source, Inbound(request_key, signals), content)
        if outcome.original_receipt_id is None:
            summary.new_signals += len(outcome.event_ids) - len(outcome.duplicate_event_ids)
            summary.changes += sum(len(change.get("states", ())) for change in outcome.changes)

    def _signals(self, tenant: str, recipients: list[dict], summary: Summary) -> list[Signal]:
        """One signal per state of each recipient; a state older than a re-consent is not applied."""
        people = []
        for record in recipients:
            email = valid_or_none(normalize_email, record.get("email"))
            phone = valid_or_none(normalize_phone, record.get("phone"))
            if email or phone:
                people.append((record, email, phone))
            else:
                summary.skipped += 1
        lifted = self._lifted(tenant, {e for _, e, _ in people if e}, {p for _, _, p in people if p})
        signals = []
        for record, email, phone in people:
            who = Signal(event_id="", kind=OPT_OUT, email=email, phone=phone)
            for state in STATES:
                if state not in record:
                    continue
                at = parse_time(record[state])
                if at is None:
                    summary.skipped += 1
                    continue
                identity = identity_for(who, state)
                lifted_at = lifted.get((identity, state))
                stale = lifted_at is not None and at <= lifted_at
                signals.append(Signal(
                    event_id=event_id(tenant, identity, state, at), kind=OTHER if stale else OPT_OUT,
                    email=email, phone=phone, add=frozenset() if stale else frozenset({state}),
                    reported_by=EXPERIENCE, occurred_at=at,
                    detail={"state": state, "set_at": record[state], **({"ignored": STALE} if stale else {})},
                ))
        return signals

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

    def _cursor(self, tenant: str):
        with self.engine.connect() as conn:
            return conn.execute(select(SyncCursor.since, SyncCursor.next_url, SyncCursor.started_at).where(
                SyncCursor.tenant == tenant, SyncCursor.source == SOURCE)).first()

    def _save(self, tenant: str, since: str, next_url: str | None, started_at: datetime) -> None:
        """Move the tenant's cursor on after a page; a finished pass sets the next pass's ``since``."""
        now = utcnow()
        values = {"since": since, "next_url": next_url, "started_at": started_at, "updated_at": now}
        if next_url is None:
            values.update(since=(started_at - timedelta(days=1)).strftime(DATE_FORMAT), completed_at=now)
        insert = dialect_insert(self.engine)
        statement = insert(SyncCursor).values(tenant=tenant, source=SOURCE, **values).on_conflict_do_update(
            index_elements=[SyncCursor.tenant, SyncCursor.source], set_=values)
        with self.engine.begin() as conn:
            conn.execute(statement)
