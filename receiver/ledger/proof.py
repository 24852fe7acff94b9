"""What one guest's proof holds, read in one snapshot: signals, deliveries with attempts, clocks, the chain head."""

from sqlalchemy import Engine, or_, select

from ..compliance.chain import erased_identity, identity_hash
from .chain import heads
from .models import Attempt, ClockRow, Delivery, RequestRecord, SignalRow
from .queries import guest_states


def gather(engine: Engine, key: bytes, tenant: str, email: str | None, phone: str | None) -> dict:
    """Everything recorded about the guest named by ``email`` and/or ``phone`` (empty lists when nothing)."""
    identities = [i for i in (email, phone) if i]
    # By address, and by keyed hash: an erased guest's signals keep only the hash.
    named = [column == value for column, value in ((SignalRow.email, email), (SignalRow.phone, phone)) if value]
    named += [column == identity_hash(key, value) for column, value in
              ((SignalRow.email_hash, email), (SignalRow.phone_hash, phone)) if value]
    identities += [erased_identity(key, i) for i in list(identities)]
    with engine.connect() as conn:
        signals = conn.execute(select(SignalRow.__table__, RequestRecord.status.label("receipt_status"))
                               .join(RequestRecord, RequestRecord.id == SignalRow.receipt_id)
                               .where(SignalRow.tenant == tenant, or_(*named)).order_by(SignalRow.id)).all()
        signal_ids = [row.id for row in signals]
        deliveries = conn.execute(select(Delivery).where(Delivery.tenant == tenant, or_(
            Delivery.identity.in_(identities), Delivery.signal_id.in_(signal_ids))).order_by(Delivery.id)).all()
        attempts: dict[int, list] = {}
        if deliveries:
            for attempt in conn.execute(select(Attempt).where(Attempt.delivery_id.in_([d.id for d in deliveries]))
                                        .order_by(Attempt.id)):
                attempts.setdefault(attempt.delivery_id, []).append(attempt._mapping)
        clocks = conn.execute(select(ClockRow).where(ClockRow.signal_id.in_(signal_ids))
                              .order_by(ClockRow.honour_by, ClockRow.id)).all() if signal_ids else []
        head = conn.execute(select(heads.c.signal_id, heads.c.chain_sha256).where(heads.c.tenant == tenant)).first()
    return {
        "states": guest_states(engine, tenant, *[i for i in (email, phone) if i], key=key),
        "signals": [{**row._mapping, "operator": (row.detail or {}).get("operator"),
                     "event_type": (row.detail or {}).get("event")} for row in signals],
        "deliveries": [{**d._mapping, "attempt_log": attempts.get(d.id, [])} for d in deliveries],
        "clocks": [c._mapping for c in clocks],
        "chain_head": {"signal_id": head.signal_id if head else None,
                       "chain_sha256": head.chain_sha256 if head else None},
    }
