"""Alerts queued in the outbox (``deliveries`` rows of lane ``alerts``) in the transaction that found them.

Each is a JSON ``{"type", "tenant", "at", "data"}``: ``delivery.dead``, ``clock.at_risk``,
``clock.breached`` (the backfill's ``backfill.recovered`` / ``backfill.failed`` queue the same
way). Queued once, because the change that raises it happens once (a delivery moving to dead, a
clock's stored status moving on). Without ``[alerts] url`` an alert is only logged.
"""

import logging
from datetime import datetime

from sqlalchemy import Connection, insert

from ..settings import AlertsConfig
from .models import Delivery

log = logging.getLogger(__name__)

ALERTS = "alerts"  # the outbox lane (deliveries.crm)
DELIVERY_DEAD, CLOCK_AT_RISK, CLOCK_BREACHED = "delivery.dead", "clock.at_risk", "clock.breached"
BACKFILL_RECOVERED, BACKFILL_FAILED = "backfill.recovered", "backfill.failed"  # no signal: signal_id NULL


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def raise_alert(conn: Connection, config: AlertsConfig | None, kind: str, tenant: str, signal_id: int | None,
                data: dict, now: datetime) -> None:
    """Queue one alert for the worker to POST (or, without a url, log it); ``data`` holds no address."""
    event = {"type": kind, "tenant": tenant, "at": iso(now), "data": data}
    log.warning("alert %s", kind, extra={"fields": event})
    if config is None or config.url is None:
        return
    conn.execute(insert(Delivery).values(
        signal_id=signal_id, tenant=tenant, crm=ALERTS, identity=kind, payload=event, status="pending",
        attempts=0, next_attempt_at=now, created_at=now, updated_at=now))
