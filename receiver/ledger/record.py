"""Recording a request: receipt, signals, consent changes and deliveries in one transaction."""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..errors import BadSignature, Unavailable
from ..receipts import new_receipt_id
from ..settings import SourceConfig, TenantConfig
from ..signals import HELP, OTHER, Inbound, Signal
from ..sources.email_link import came_by_one_click
from ..states import EXPERIENCE, STATES, identity_for
from . import chain, clocks, outbox
from .db import dialect_insert
from .models import Consent, Delivery, IdentityLink, ReplayNonce, RequestRecord, SignalRow, utcnow
from .wakeup import notify, owing

log = logging.getLogger(__name__)
NOT_STORED = "the opt-out could not be stored; retry later"


def _constraint(refused: IntegrityError) -> str:
    """The constraint that refused a write, by name (PostgreSQL; else the error's type): never the values."""
    diag = getattr(refused.orig, "diag", None)
    return f"constraint {diag.constraint_name}" if diag and diag.constraint_name else type(refused.orig).__name__


ACCEPTED, DUPLICATE, IGNORED = "accepted", "duplicate", "ignored"


@dataclass(frozen=True)
class Outcome:
    """What the sender is told; ``receipt_id`` is this answer's own id."""

    status: str
    receipt_id: str
    received_at: datetime
    event_ids: list[str]
    changes: list[dict]
    original_receipt_id: str | None = None
    duplicate_event_ids: list[str] = field(default_factory=list)
    kinds: frozenset[str] = frozenset()


class Ledger:
    def __init__(self, engine: Engine, tenants: dict[str, TenantConfig], identity_key: bytes):
        self.engine = engine
        self.tenants = tenants
        self.identity_key = identity_key  # keys the chain's identity hashes (RECEIVER_IDENTITY_KEY)
        self._insert = dialect_insert(engine)
        # Built once: building a statement per request cost more than running it (bench/ingest.py).
        requests, signals, consent = RequestRecord.__table__, SignalRow.__table__, Consent.__table__
        # Each row is inserted once, complete: the outcome is worked out first (issue #16: ingest cost).
        self._add_request = insert(requests)
        self._add_signals = insert(signals)
        self._add_state = self._insert(consent).on_conflict_do_nothing().returning(consent.c.state)
        self._lift_state = delete(consent).where(
            consent.c.tenant == bindparam("b_tenant"), consent.c.identity == bindparam("b_identity"),
            consent.c.state == bindparam("b_state")).returning(consent.c.state)
        self._lift_older_state = self._lift_state.where(consent.c.since <= bindparam("b_before"))
        self._add_link = self._insert(IdentityLink.__table__).on_conflict_do_nothing().returning(
            IdentityLink.__table__.c.phone)
        self._add_deliveries = owing(engine, insert(Delivery.__table__))
        self._first_receipt = select(SignalRow.receipt_id).where(
            SignalRow.source == bindparam("b_source"), SignalRow.event_id == bindparam("b_event_id"))
        self._linked = select(IdentityLink.email).where(
            IdentityLink.tenant == bindparam("b_tenant"), IdentityLink.phone == bindparam("b_phone"),
        ).order_by(IdentityLink.created_at.desc()).limit(1)

    def record(self, source: SourceConfig, inbound: Inbound, evidence: bytes, also=None, then=None) -> Outcome:
        """Store everything or nothing; a redelivered request is answered from the first one.

        ``also(conn, receipt_id, now)`` writes more in the same transaction first (a review decision);
        it raises to store nothing. ``then(conn, outcome, now)`` writes more in it last (an alert).

        The receipt row goes in complete, after the rest: a redelivery fails there on (source,
        request_key) and the whole transaction rolls back, to be answered as a duplicate. Last of
        all, the tenant's chain head is locked, the signals linked and inserted, the head moved,
        and the transaction committed: the head lock is held for those statements only
        (ledger/chain.py; issue #16: it had serialised a tenant's whole transactions).
        """
        receipt_id, now = new_receipt_id(), utcnow()
        digest = hashlib.sha256(evidence).hexdigest()
        try:
            with self.engine.begin() as conn:
                if also is not None:
                    also(conn, receipt_id, now)
                if inbound.nonce:
                    self._use_nonce(conn, source, inbound, now)
                outcome, rows = self._apply(conn, source, inbound, receipt_id, now, digest)
                if then is not None:
                    then(conn, outcome, now)
                conn.execute(self._add_request, {
                    "id": receipt_id, "source": source.name, "tenant": source.tenant,
                    "request_key": inbound.request_key, "status": outcome.status, "received_at": now,
                    "evidence_sha256": digest, "event_ids": outcome.event_ids, "changes": outcome.changes,
                })
                if rows:
                    chain.link_rows(conn, self._insert, self._add_signals, source.tenant, rows)
            return outcome
        except IntegrityError as exc:
            return self._duplicate(source, inbound, exc)
        except DBAPIError as exc:
            raise Unavailable(NOT_STORED) from exc

    def _use_nonce(self, conn, source: SourceConfig, inbound: Inbound, now) -> None:
        """A nonce is good for one request; replaying it with another event is a forgery."""
        conn.execute(delete(ReplayNonce).where(ReplayNonce.source == source.name, ReplayNonce.expires_at < now))
        conn.execute(self._insert(ReplayNonce).values(
            source=source.name, nonce=inbound.nonce, request_key=inbound.request_key,
            expires_at=inbound.nonce_expires_at or now,
        ).on_conflict_do_nothing())
        first = conn.execute(select(ReplayNonce.request_key).where(
            ReplayNonce.source == source.name, ReplayNonce.nonce == inbound.nonce)).scalar()
        if first != inbound.request_key:
            raise BadSignature("signature token already used for another event")

    def _duplicate(self, source: SourceConfig, inbound: Inbound, refused: IntegrityError) -> Outcome:
        """A redelivered request: the first answer's events, every one of them seen before.

        ``original_receipt_id`` is the first answer's receipt when that answer recorded something;
        when it was a ``duplicate`` itself, the receipt it pointed at (that of the request's first
        event), so a duplicate never points at another duplicate.
        """
        try:
            with self.engine.connect() as conn:
                first = conn.execute(select(RequestRecord).where(
                    RequestRecord.source == source.name, RequestRecord.request_key == inbound.request_key,
                )).first()
                if first is None:  # a signal's event id taken by a concurrent request: the retry sees it
                    log.warning("source %s: a request was refused by %s and is not a redelivery: answered 503",
                                source.name, _constraint(refused))
                    raise Unavailable(NOT_STORED) from refused
                original = first.id
                if first.status == DUPLICATE and first.event_ids:
                    original = self._recorded_by(conn, source, first.event_ids[0]) or first.id
        except DBAPIError as exc:
            raise Unavailable(NOT_STORED) from exc
        return Outcome(status=DUPLICATE, receipt_id=new_receipt_id(), received_at=utcnow(),
                       event_ids=list(first.event_ids), changes=[], original_receipt_id=original,
                       duplicate_event_ids=list(first.event_ids))

    def _recorded_by(self, conn, source: SourceConfig, event_id: str) -> str | None:
        """The receipt that first recorded ``event_id`` (always an ``accepted`` or ``ignored`` one)."""
        return conn.execute(self._first_receipt, {"b_source": source.name, "b_event_id": event_id}).scalar()

    def _apply(self, conn, source, inbound: Inbound, receipt_id, now, digest) -> tuple[Outcome, list[dict]]:
        """``event_ids`` lists every event of the request once, new or seen before (those are skipped
        and also listed in ``duplicate_event_ids``); an id repeated within the request counts once,
        as its first event. A request of nothing but seen events is a duplicate of the receipt that
        first recorded its first event.

        Each signal row is built once, complete with its changes: the guests the request names are
        locked (``chain.lock_guests``: PostgreSQL), its ids reserved, the state changes made under
        those ids; the caller links and inserts the rows (returned with the outcome) last, under
        the tenant's chain head. The references to them are checked at commit (migration 0013).
        """
        tenant = self.tenants[source.tenant]
        fresh: dict[str, Signal] = {}
        for signal in inbound.signals:  # e.g. two identical SendGrid events, keyed by their content
            fresh.setdefault(signal.event_id, signal)
        event_ids = list(fresh)
        duplicates, changes, kinds, rows, owed = [], [], set(), [], []
        if fresh:
            # Before anything is read: two requests about one guest change its consent in turn.
            chain.lock_guests(conn, tenant.name, [i for s in fresh.values() for i in (s.email, s.phone) if i])
            seen, ids = chain.reserve(conn, source.name, event_ids)
            for signal, signal_id in zip(fresh.values(), ids, strict=True):
                if signal.event_id in seen:
                    duplicates.append(signal.event_id)
                    continue
                kinds.add(signal.kind)
                signal_changes = self._change_states(conn, tenant, signal, signal_id, now, owed)
                changes.extend(signal_changes)
                row = {
                    "id": signal_id, "receipt_id": receipt_id, "source": source.name, "tenant": tenant.name,
                    "event_id": signal.event_id, "kind": signal.kind, "keyword": signal.keyword,
                    "review": signal.review, "phone": signal.phone, "email": signal.email, "changes": signal_changes,
                    "received_at": now, "occurred_at": signal.occurred_at, "evidence_sha256": digest,
                    "detail": signal.detail, "add_states": sorted(signal.add), "remove_states": sorted(signal.remove),
                    **chain.hashes(self.identity_key, signal.email, signal.phone),
                    "chain_sha256": None, "chain_seq": None,  # set when linked (chain.link_rows)
                }
                rows.append(row)
        self._owe(conn, owed)
        original = None
        if duplicates and len(duplicates) == len(event_ids):
            status = DUPLICATE
            original = self._recorded_by(conn, source, event_ids[0])
        elif kinds <= {HELP, OTHER}:
            status = IGNORED
        else:
            status = ACCEPTED
        return Outcome(status=status, receipt_id=receipt_id, received_at=now, event_ids=event_ids,
                       changes=changes, original_receipt_id=original, duplicate_event_ids=duplicates,
                       kinds=frozenset(kinds)), rows

    def _change_states(self, conn, tenant: TenantConfig, signal: Signal, signal_id: int, now,
                       owed: list[dict]) -> list[dict]:
        """Apply the signal's adds and removes; only real changes owe deliveries (added to ``owed``)."""
        linked = False
        if signal.email and signal.phone and signal.links_identities:
            linked = conn.execute(self._add_link, {
                "tenant": tenant.name, "email": signal.email, "phone": signal.phone, "created_at": now,
            }).first() is not None
        added: dict[str, list[str]] = {}
        removed: dict[str, list[str]] = {}
        # A state read back (backfill, Experience's list) holds since its sender's time (see Signal.read_back).
        read_later = signal.read_back or signal.reported_by == EXPERIENCE
        since = signal.occurred_at if read_later and signal.occurred_at else now
        for state in (s for s in STATES if s in signal.add):  # a fixed order avoids lock-order deadlocks
            identity = identity_for(state, signal.email, signal.phone)
            inserted = conn.execute(self._add_state, {
                "tenant": tenant.name, "identity": identity, "state": state, "since": since, "signal_id": signal_id,
            }).first()
            if inserted is not None:  # rowcount is not reliable for ON CONFLICT on every driver
                added.setdefault(identity, []).append(state)
        # A removal read back after the fact lifts only a state older than itself (see Signal.read_back);
        # one whose time is unknown, or was dropped as implausible (signals.plausible_time), lifts none.
        lift, before = ((self._lift_older_state, {"b_before": signal.occurred_at})
                        if signal.read_back else (self._lift_state, {}))
        removals = signal.remove if signal.occurred_at or not signal.read_back else ()
        for state in (s for s in STATES if s in removals):
            identity = identity_for(state, signal.email, signal.phone)
            deleted = conn.execute(lift, {
                "b_tenant": tenant.name, "b_identity": identity, "b_state": state, **before}).first()
            if deleted is not None:
                removed.setdefault(identity, []).append(state)

        changes = []
        for identity in sorted(set(added) | set(removed)):
            key = "email" if "@" in identity else "phone"
            change = {key: identity}
            if identity in added:
                change["states"] = added[identity]
            if identity in removed:
                change["removed"] = removed[identity]
            changes.append(change)
        owed_before = len(owed)
        for identity, states in added.items():
            owed.extend(self._owe_deliveries(conn, tenant, signal, signal_id, identity, states, now))
        if added:
            pending = any(row["status"] == outbox.PENDING for row in owed[owed_before:])
            clocks.start(conn, tenant, signal_id, {s for states in added.values() for s in states},
                         came_by_one_click(signal), signal.occurred_at or now, now, owed=pending)
        if linked:
            self._owe(conn, owed)  # first: held-back deliveries of this request's earlier signals count too
            self._owe_held_back(conn, tenant, signal.email, signal.phone, added.get(signal.phone, []), now)
        return changes

    def _owe(self, conn, owed: list[dict]) -> None:
        """Insert the deliveries owed so far (one statement; it wakes the workers on PostgreSQL)."""
        if owed:
            conn.execute(self._add_deliveries, owed)
            owed.clear()

    def _owe_deliveries(self, conn, tenant, signal, signal_id, identity, states, now) -> list[dict]:
        """The delivery rows the states added for ``identity`` owe, inserted by the caller with the rest."""
        is_email = "@" in identity
        email = identity if is_email else (signal.email or self._linked_email(conn, tenant.name, identity))
        phone = signal.phone if is_email else identity
        return [{"signal_id": signal_id, "tenant": tenant.name, "crm": planned.crm, "identity": identity,
                 "payload": planned.payload, "status": planned.status, "reason": planned.reason, "attempts": 0,
                 "next_attempt_at": now, "created_at": now, "updated_at": now}
                for planned in outbox.plan(tenant, signal, identity, states, now, email, phone)]

    def _owe_held_back(self, conn, tenant, email, phone, just_added, now) -> None:
        """email-only: Experience deliveries skipped for want of an email are owed once a link gives one.

        Only states still in force are sent (a START may have lifted one since), and not those this
        signal has just added: their own delivery already carries the email.
        """
        if not (tenant.experience and tenant.experience.sms_records == "email-only"):
            return
        in_force = set(conn.execute(select(Consent.state).where(
            Consent.tenant == tenant.name, Consent.identity == phone,
        )).scalars()) - set(just_added)
        held = conn.execute(select(Delivery.id, Delivery.payload).where(
            Delivery.tenant == tenant.name, Delivery.crm == EXPERIENCE, Delivery.identity == phone,
            Delivery.status == outbox.SKIPPED, Delivery.reason == outbox.NO_EMAIL,
        ).order_by(Delivery.id.desc())).all()
        for delivery_id, payload in held:
            states = {state: since for state, since in payload["states"].items() if state in in_force}
            in_force -= set(states)  # each state is owed once: by its latest skipped delivery
            if states:
                conn.execute(update(Delivery).where(
                    Delivery.id == delivery_id, Delivery.status == outbox.SKIPPED,
                ).values(
                    status=outbox.PENDING, reason=None, payload={**payload, "email": email, "states": states},
                    next_attempt_at=now, updated_at=now,
                ))
                notify(conn)

    def _linked_email(self, conn, tenant: str, phone: str) -> str | None:
        return conn.execute(self._linked, {"b_tenant": tenant, "b_phone": phone}).scalar()
