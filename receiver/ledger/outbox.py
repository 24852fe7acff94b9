"""Which CRM deliveries a change of state owes (contract, "Where each state goes")."""

import logging
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import select, update

from ..identities import mask_email, mask_phone, us_ten_digits
from ..settings import TenantConfig
from ..signals import Signal
from ..states import CRMTEXT, DELIVERED_TO, EXPERIENCE, SMS_BAN, SMS_STATES
from . import clocks
from .alerts import ALERTS
from .models import Consent, Delivery, utcnow

log = logging.getLogger(__name__)

PENDING, DONE, SKIPPED, DEAD = "pending", "done", "skipped", "dead"
NO_EMAIL = "no email known for this phone (sms_records = email-only)"
CRMTEXT_ITSELF = "CRM Text reported this opt-out itself and already texted the guest"
NOT_US = "not a US (NANP) number: CRM Text serves US short codes only"
SUPERSEDED = "no longer owed: a re-consent lifted the state (or a later signal set it again) before delivery"


@dataclass(frozen=True)
class Planned:
    crm: str
    identity: str
    status: str  # PENDING or SKIPPED
    reason: str | None
    payload: dict


def plan(tenant: TenantConfig, signal: Signal, identity: str, added: list[str], since: datetime,
         email: str | None, phone: str | None) -> list[Planned]:
    """The deliveries for ``added`` states of one identity; a CRM the tenant lacks gets none."""
    states = {state: since.isoformat() for state in added}
    planned = []
    # States read from Experience (receiver reconcile) are never written back to it.
    if tenant.experience and signal.reported_by != EXPERIENCE and any(EXPERIENCE in DELIVERED_TO[s] for s in added):
        payload = {"email": email, "phone": phone, "states": states}
        status, reason = PENDING, None
        if email is None and any(s in SMS_STATES for s in added) and tenant.experience.sms_records == "email-only":
            status, reason = SKIPPED, NO_EMAIL
        planned.append(Planned(EXPERIENCE, identity, status, reason, payload))
    if tenant.crmtext and any(CRMTEXT in DELIVERED_TO[s] for s in added) and phone:
        ten = us_ten_digits(phone)
        status, reason = PENDING, None
        if signal.reported_by == CRMTEXT:
            status, reason = SKIPPED, CRMTEXT_ITSELF
        elif ten is None:
            status, reason = SKIPPED, NOT_US
        planned.append(Planned(CRMTEXT, identity, status, reason, {"phone": phone, "ten_digits": ten}))
    return planned


def owed_states(conn, deliveries) -> dict[int, list[str]]:
    """Which states each delivery still owes: those in force *because of its own signal*.

    A state lifted since (SMS START, a partner's opt-in) is owed no more, so a retry or a
    replay never opts a guest out again against their re-consent; a state lifted and set again
    is owed by the later signal's own delivery, not by this one (no second confirmation text).
    """
    signal_ids = {d.signal_id for d in deliveries if d.signal_id is not None}  # an alert may have none
    held = set(conn.execute(select(Consent.identity, Consent.state, Consent.signal_id).where(
        Consent.signal_id.in_(signal_ids))).all()) if signal_ids else set()
    owed = {}
    for d in deliveries:
        if d.crm == ALERTS:  # an alert owes no state: it is owed until sent
            owed[d.id] = [d.payload["type"]]
            continue
        states = [SMS_BAN] if d.crm == CRMTEXT else list(d.payload["states"])
        owed[d.id] = [s for s in states if (d.identity, s, d.signal_id) in held]
    return owed


def masked(identity: str) -> str:
    """A delivery's identity as logs show it."""
    return mask_email(identity) if "@" in identity else mask_phone(identity)


def still_owed(conn, rows: list) -> list:
    """The rows that still owe something, an Experience row trimmed to the states it still owes;
    the others are marked skipped as superseded (their lease released)."""
    owed = owed_states(conn, rows) if rows else {}
    kept, superseded = [], []
    for row in rows:
        states = owed[row.id]
        if not states:
            conn.execute(update(Delivery).where(Delivery.id == row.id).values(
                status=SKIPPED, reason=SUPERSEDED, lease_owner=None, lease_until=None, updated_at=utcnow()))
            log.info("delivery %s to %s for %s skipped: %s", row.id, row.crm, masked(row.identity), SUPERSEDED)
            superseded.append(row.signal_id)
            continue
        if row.crm == EXPERIENCE and len(states) < len(row.payload["states"]):
            payload = {**row.payload, "states": {s: row.payload["states"][s] for s in states}}
            row = SimpleNamespace(**{**row._mapping, "payload": payload})
        kept.append(row)
    clocks.honour(conn, superseded, utcnow())  # nothing left to send: not owed is honoured
    return kept
