"""The delivery queue's health, read from the database: what /readyz, /metrics and `receiver status` report."""

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from .models import Delivery, utcnow
from .outbox import DEAD, DONE, PENDING, SKIPPED


@dataclass(frozen=True)
class QueueHealth:
    """``oldest_pending_age_seconds`` is 0 when nothing is pending; ``by_status`` is filled on request."""

    queue_depth: int
    oldest_pending_age_seconds: float
    dead: int
    by_status: dict[str, int] = field(default_factory=dict)


def queue_health(engine: Engine, *, by_status: bool = False) -> QueueHealth:
    """One query over the deliveries; raises the driver's error when the database cannot answer.

    Without ``by_status`` only pending and dead rows are counted: the ``(status, next_attempt_at)``
    index keeps that cheap for a probe, whereas done rows grow without end.
    """
    query = select(Delivery.status, func.count(), func.min(Delivery.created_at)).group_by(Delivery.status)
    if not by_status:
        query = query.where(Delivery.status.in_((PENDING, DEAD)))
    with engine.connect() as conn:
        rows = {status: (count, oldest) for status, count, oldest in conn.execute(query)}
    depth, oldest = rows.get(PENDING, (0, None))
    age = max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    counts = {status: rows.get(status, (0, None))[0] for status in (PENDING, DONE, SKIPPED, DEAD)} if by_status else {}
    return QueueHealth(queue_depth=depth, oldest_pending_age_seconds=round(age, 3), dead=rows.get(DEAD, (0, None))[0],
                       by_status=counts)
