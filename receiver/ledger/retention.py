"""``receiver prune``: what the ledger may forget, and when.

Kept forever: every opt-out and opt-in signal (the evidence a TCPA or CAN-SPAM dispute asks
for), signals flagged for review, the states in force, deliveries, and the receipts of all of
these. Raw request bodies are never stored in the first place, only their SHA-256.
Forgotten after ``[retention]`` days: HELP / other texts and ignored ESP events (and the
receipts left with no signal), the attempts of finished deliveries, expired replay nonces and
old rate-limit windows.
"""

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, exists, select

from .. import clock
from ..settings import RetentionConfig
from ..signals import HELP, OTHER
from .models import Attempt, Delivery, RateHit, ReplayNonce, RequestRecord, SignalRow, utcnow
from .outbox import PENDING


def prune(engine: Engine, config: RetentionConfig, now: datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention; the number of rows removed per kind."""
    now = now or utcnow()
    signals_before = now - timedelta(days=config.ignored_signals_days)
    attempts_before = now - timedelta(days=config.attempts_days)
    removed = {}
    with engine.begin() as conn:
        removed["ignored_signals"] = conn.execute(delete(SignalRow).where(
            SignalRow.kind.in_((HELP, OTHER)), SignalRow.review.is_(False), SignalRow.received_at < signals_before,
        )).rowcount
        removed["empty_receipts"] = conn.execute(delete(RequestRecord).where(
            RequestRecord.received_at < signals_before,
            ~exists(select(SignalRow.id).where(SignalRow.receipt_id == RequestRecord.id)),
        )).rowcount
        finished = select(Delivery.id).where(Delivery.status != PENDING)
        removed["attempts"] = conn.execute(delete(Attempt).where(
            Attempt.started_at < attempts_before, Attempt.delivery_id.in_(finished),
        )).rowcount
        removed["replay_nonces"] = conn.execute(delete(ReplayNonce).where(ReplayNonce.expires_at < now)).rowcount
        removed["rate_windows"] = conn.execute(delete(RateHit).where(
            RateHit.minute < int(clock.now() // 60) - 1)).rowcount  # as ratelimit counts them
    return removed
