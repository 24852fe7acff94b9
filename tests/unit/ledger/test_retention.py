"""receiver prune: ignored signals and old attempts go, opt-outs and their evidence stay."""

from datetime import timedelta

from sqlalchemy import func, select, update

from receiver.ledger.models import Attempt, Consent, Delivery, RequestRecord, SignalRow, utcnow
from receiver.ledger.retention import prune
from receiver.settings import RetentionConfig
from receiver.signals import Inbound
from receiver.sources.sms import classify, sms_signal


def sms(ledger, settings, sid: str, text: str, phone: str = "+15551234567"):
    intent, keyword, review = classify(text)
    signal = sms_signal(sid, phone, intent, keyword=keyword, review=review)
    return ledger.record(settings.sources["twilio"], Inbound(request_key=sid, signals=[signal]), b"body")


def count(engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar()


def age_everything(engine, days: int) -> None:
    then = utcnow() - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(update(SignalRow).values(received_at=then))
        conn.execute(update(RequestRecord).values(received_at=then))
        conn.execute(update(Attempt).values(started_at=then, finished_at=then))


def test_prune_keeps_opt_outs_and_forgets_ignored_texts_and_old_attempts(ledger, settings, engine):
    sms(ledger, settings, "SM1", "STOP")
    sms(ledger, settings, "SM2", "HELP")
    sms(ledger, settings, "SM3", "what time is breakfast?")
    sms(ledger, settings, "SM4", "stop by the pool at 5")  # flagged for review: kept
    sms(ledger, settings, "SM5", "START")
    with engine.begin() as conn:
        ids = list(conn.execute(select(Delivery.id)).scalars())
        conn.execute(update(Delivery).where(Delivery.id == ids[0]).values(status="done"))
        conn.execute(Attempt.__table__.insert(), [
            {"delivery_id": ids[0], "started_at": utcnow(), "outcome": "ok"},
            {"delivery_id": ids[1], "started_at": utcnow(), "outcome": "retry"}])  # still pending: kept

    assert prune(engine, RetentionConfig())["ignored_signals"] == 0  # nothing is old yet
    age_everything(engine, days=100)
    removed = prune(engine, RetentionConfig(attempts_days=30, ignored_signals_days=30))

    assert removed["ignored_signals"] == 2 and removed["empty_receipts"] == 2 and removed["attempts"] == 1
    with engine.connect() as conn:
        kept = sorted(conn.execute(select(SignalRow.event_id)).scalars())
    assert kept == ["SM1", "SM4", "SM5"]
    assert count(engine, RequestRecord) == 3
    assert count(engine, Attempt) == 1
    assert count(engine, Consent) == 0  # START lifted the ban; the evidence of both stays
    assert prune(engine, RetentionConfig(attempts_days=30, ignored_signals_days=30))["ignored_signals"] == 0
