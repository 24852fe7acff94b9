"""What operators change in the ledger (the writes behind /v1): putting a dead delivery back in the queue."""

from sqlalchemy import Engine, select, update

from ..errors import Conflict
from .models import Delivery, utcnow
from .outbox import CRMTEXT_ITSELF, DEAD, NOT_US, PENDING, SKIPPED, SUPERSEDED, owed_states
from .wakeup import notify


def replay_delivery(engine: Engine, delivery_id: int, operator: str | None = None) -> str | None:
    """Put a dead or skipped delivery back in the queue; its previous status, or None if there is none.

    Refused (Conflict) when nothing is owed any more — the guest re-consented since, or a later
    signal owes the state — for skipped deliveries whose reasons always hold (a non-US number
    CRM Text cannot take; an opt-out CRM Text made, and texted, itself: a call would text again),
    and when another replay moved the delivery first.
    ``operator`` (who asked) is kept in ``replayed_by`` for the audit trail.
    Attempts start again from zero (the earlier ones stay in the attempts table) and the age
    limit counts from ``replayed_at``, so the worker's max_attempts and max_age_hours both start over.
    """
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(select(Delivery.__table__).where(Delivery.id == delivery_id)).first()
        if row is None:
            return None
        if row.status == SKIPPED and row.reason in (NOT_US, CRMTEXT_ITSELF):
            raise Conflict(f"delivery {delivery_id} was skipped for a reason that still holds: {row.reason}")
        if row.status not in (DEAD, SKIPPED):
            raise Conflict(f"delivery {delivery_id} is {row.status}: only dead or skipped deliveries are replayed")
        if not owed_states(conn, [row])[row.id]:
            raise Conflict(f"delivery {delivery_id} is owed no more: {SUPERSEDED}")
        moved = conn.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == row.status).values(
            status=PENDING, attempts=0, reason=None, next_attempt_at=now, updated_at=now, replayed_at=now,
            lease_owner=None, lease_until=None, replayed_by=operator)).rowcount
        if not moved:
            raise Conflict(f"delivery {delivery_id} was moved meanwhile (another replay?): it is {row.status} no more")
        notify(conn)
    return row.status
