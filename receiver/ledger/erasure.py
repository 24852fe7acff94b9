"""Erasure: a guest's email or phone removed from every row, their opt-outs kept under the keyed hash.

The address gives way to ``erased:<HMAC-SHA256 hex>`` (key RECEIVER_IDENTITY_KEY) where it is an
identity (consent, deliveries, the changes of signals and receipts), and to null where the
row keeps its hash anyway (signals' ``email``/``phone``; ``email_hash``/``phone_hash`` stay, so
the chain still verifies). Identity links of the address are deleted (they only route a phone's
deliveries to its email). Look-ups (``queries.states_by_identity`` with the key) also read the
erased form, so the same address still finds its opt-outs, and an opt-in of the raw address
cannot lift them. The erasure itself is a recorded signal (kind ``erasure``), in the chain.
"""

from sqlalchemy import delete, or_, select, update

from ..compliance.chain import erased_identity, identity_hash
from ..sources import erasure, own_source
from . import chain
from .models import Attempt, Consent, Delivery, IdentityLink, RequestRecord, SignalRow
from .outbox import DEAD, PENDING
from .record import Ledger

ERASED = "[erased]"
NOT_SENT = "the address was erased before this delivery was sent"


def erase(ledger: Ledger, tenant: str, email: str | None = None, phone: str | None = None,
          operator: str | None = None) -> dict:
    """Record the erasure, then remove the address from every row; the receipt id and rows changed.

    ``operator`` (who asked) is kept in the erasure signal's detail, as staff opt-outs keep theirs.

    Two transactions: if the second fails, asking again finishes it (each step is idempotent).
    """
    value = email or phone
    inbound, evidence = erasure.request(email, phone, operator)
    outcome = ledger.record(own_source(erasure.NAME, tenant), inbound, evidence)
    with ledger.engine.begin() as conn:
        chain.lock_guests(conn, tenant, [value])  # an opt-out of the address lands before or after the scrub, not inside it
        changed = _scrub(conn, ledger.identity_key, tenant, value, "email" if email else "phone")
    return {"receipt_id": outcome.receipt_id, "rows_changed": changed}


def _scrub(conn, key: bytes, tenant: str, value: str, field: str) -> int:
    hidden, digest = erased_identity(key, value), identity_hash(key, value)
    column, hashed = (SignalRow.email, SignalRow.email_hash) if field == "email" else (SignalRow.phone,
                                                                                     SignalRow.phone_hash)
    signals = conn.execute(select(SignalRow.id, SignalRow.receipt_id).where(
        SignalRow.tenant == tenant, or_(column == value, hashed == digest))).all()
    signal_ids, receipt_ids = [r.id for r in signals], sorted({r.receipt_id for r in signals})
    # A phone's deliveries carry its linked email (and an email's, its phones): those rows too.
    link_column, other = ((IdentityLink.email, IdentityLink.phone) if field == "email"
                          else (IdentityLink.phone, IdentityLink.email))
    linked = list(conn.execute(select(other).where(IdentityLink.tenant == tenant, link_column == value)).scalars())
    changed = _scrub_changes(conn, SignalRow, signal_ids, value, hidden, field)
    changed += _scrub_changes(conn, RequestRecord, receipt_ids, value, hidden, field)
    changed += conn.execute(update(SignalRow).where(SignalRow.tenant == tenant, column == value)
                            .values({field: None})).rowcount
    changed += conn.execute(delete(IdentityLink).where(IdentityLink.tenant == tenant, link_column == value)).rowcount
    for row in conn.execute(select(Consent).where(Consent.tenant == tenant, Consent.identity == value)).all():
        conn.execute(delete(Consent).where(Consent.tenant == tenant, Consent.identity == value,
                                           Consent.state == row.state))
        held = conn.execute(select(Consent.state).where(Consent.tenant == tenant, Consent.identity == hidden,
                                                        Consent.state == row.state)).first()
        if held is None:  # an earlier erasure of the same address may hold it already
            conn.execute(Consent.__table__.insert().values(tenant=tenant, identity=hidden, state=row.state,
                                                           since=row.since, signal_id=row.signal_id))
        changed += 1
    deliveries = conn.execute(select(Delivery).where(Delivery.tenant == tenant, or_(
        Delivery.identity.in_([value, *linked]), Delivery.signal_id.in_(signal_ids)))).all()
    for delivery in deliveries:
        payload = _scrub_payload(delivery.payload, value, field)
        if delivery.identity != value and payload == delivery.payload:
            continue
        values = {"identity": hidden if delivery.identity == value else delivery.identity, "payload": payload,
                  "last_error": _scrub_text(delivery.last_error, value)}
        if delivery.status == PENDING:  # cannot be sent without the address: dead, so its clock stays open
            values.update(status=DEAD, last_error=NOT_SENT, lease_owner=None, lease_until=None)
        conn.execute(update(Delivery).where(Delivery.id == delivery.id).values(**values))
        for attempt in conn.execute(select(Attempt.id, Attempt.detail).where(Attempt.delivery_id == delivery.id)):
            if attempt.detail and value in attempt.detail:
                conn.execute(update(Attempt).where(Attempt.id == attempt.id).values(
                    detail=_scrub_text(attempt.detail, value)))
        changed += 1
    return changed


def _scrub_changes(conn, model, ids: list, value: str, hidden: str, field: str) -> int:
    changed = 0
    for start in range(0, len(ids), 500):  # bounded IN lists
        for row in conn.execute(select(model.id, model.changes).where(model.id.in_(ids[start:start + 500]))).all():
            changes = [{**c, field: hidden} if isinstance(c, dict) and c.get(field) == value else c
                       for c in row.changes or ()]
            if changes != (row.changes or []):
                conn.execute(update(model).where(model.id == row.id).values(changes=changes))
                changed += 1
    return changed


def _scrub_payload(payload: dict | None, value: str, field: str) -> dict | None:
    if not payload:
        return payload
    scrubbed = {k: (None if v == value else v) for k, v in payload.items()}
    if field == "phone" and payload.get("phone") == value and "ten_digits" in payload:
        scrubbed["ten_digits"] = None
    return scrubbed


def _scrub_text(text: str | None, value: str) -> str | None:
    return text.replace(value, ERASED) if text else text
