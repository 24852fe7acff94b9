"""The review queue: signals flagged for review (``review = true``) and the one decision on each."""

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict
from ..sources import own_source
from ..sources import review as review_source
from .models import ReviewDecision, SignalRow, utcnow
from .queries import cut_page, scoped

HONOUR, DISMISS = "honour", "dismiss"
OPEN, DECIDED = "open", "decided"


def review_page(engine: Engine, *, status: str, tenant=None, tenants=None, after: int = 0,
                limit: int = 100) -> tuple[list, int | None]:
    """Flagged signals oldest first (by id), each with its decision's columns (null while open)."""
    query = (select(SignalRow.__table__, ReviewDecision.decision, ReviewDecision.note.label("decision_note"),
                    ReviewDecision.operator, ReviewDecision.decided_at)
             .outerjoin(ReviewDecision, ReviewDecision.signal_id == SignalRow.id)
             .where(SignalRow.review.is_(True), SignalRow.id > after).order_by(SignalRow.id).limit(limit + 1))
    query = query.where(ReviewDecision.signal_id.is_(None) if status == OPEN else ReviewDecision.signal_id.is_not(None))
    query = scoped(query, SignalRow.tenant, tenant, tenants)
    with engine.connect() as conn:
        return cut_page(conn.execute(query).all(), limit)


def flagged(engine: Engine, signal_id: int):
    """The flagged signal ``signal_id``, or None."""
    with engine.connect() as conn:
        return conn.execute(select(SignalRow.__table__).where(
            SignalRow.id == signal_id, SignalRow.review.is_(True))).first()


def decide(conn, signal_id: int, tenant: str, decision: str, note: str | None, operator: str,
           receipt_id: str, now=None) -> None:
    """Store the decision; a second one (even a concurrent one) fails on the primary key: Conflict."""
    try:
        conn.execute(insert(ReviewDecision).values(
            signal_id=signal_id, tenant=tenant, decision=decision, note=note, operator=operator,
            decided_at=now or utcnow(), receipt_id=receipt_id))
    except IntegrityError:
        raise Conflict(f"event {signal_id} is already decided") from None


def honour(ledger, original, note: str | None, operator: str, evidence: bytes):
    """Honour the flagged ``original``: its ``review`` signal (an SMS ban) and the decision, in one transaction."""
    def store_decision(conn, receipt_id, now):
        decide(conn, original.id, original.tenant, HONOUR, note, operator, receipt_id, now)

    return ledger.record(own_source(review_source.NAME, original.tenant), review_source.honour(original, operator, note),
                         evidence, also=store_decision)


def dismiss(engine: Engine, signal_id: int, tenant: str, note: str | None, operator: str, receipt_id: str) -> None:
    with engine.begin() as conn:
        decide(conn, signal_id, tenant, DISMISS, note, operator, receipt_id)
