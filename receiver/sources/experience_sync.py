"""Experience's unsubscribed list, read back by ``receiver reconcile``, as signals of source ``experience-sync``.

- Times. Experience writes ``YYYY-MM-DD HH:MM:SS`` without a zone; they are read as UTC. A state
  holds since that time (the signal's ``occurred_at``).
- Ids. A signal's event id is a hash of tenant, identity (the email for email states, the phone
  for SMS states), state and the CRM's time, so reading the same state again is a duplicate the
  ledger drops; a page's request key is a hash of tenant and page content, so an unchanged page
  is answered from its first receipt.
- Direction. The signals carry ``reported_by = experience``: nothing is written back to
  Experience. A state set at Experience before the guest re-consented here is recorded as
  ignored rather than applied again: Experience is never told of a re-consent.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..identities import normalize_email, normalize_phone, valid_or_none
from ..signals import OPT_OUT, OTHER, Inbound, Signal
from ..states import EXPERIENCE, STATES, identity_for

NAME = "experience-sync"
# Experience's times, read here and written by crm/experience.py (defined here, not there: the web process
# imports this module, and the CRM client would bring its HTTP stack along).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
STALE = "set at Experience before a later re-consent here"

# (emails, phones) → when each (identity, state) was last lifted here by a re-consent; the
# caller reads it from the ledger, as a source never touches the database.
ReConsents = Callable[[set[str], set[str]], dict[tuple[str, str], datetime]]


@dataclass(frozen=True)
class Page:
    """One page of the list as the ledger records it."""

    inbound: Inbound  # one signal per state of each recipient
    evidence: bytes  # the page's content, as its request key hashes it
    skipped: int  # records without a usable email or phone, states with an unreadable time


def parse_time(value) -> datetime | None:
    """Experience's ``YYYY-MM-DD HH:MM:SS`` as an aware UTC time, or None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def event_id(tenant: str, identity: str, state: str, at: datetime) -> str:
    key = "\x1f".join((tenant, identity, state, at.strftime(TIME_FORMAT)))
    return "xp_" + hashlib.sha256(key.encode()).hexdigest()[:40]


def read_page(tenant: str, recipients: list[dict], re_consents: ReConsents) -> Page:
    """One signal per state of each recipient; a state older than a re-consent is not applied."""
    skipped, people = 0, []
    for record in recipients:
        email = valid_or_none(normalize_email, record.get("email"))
        phone = valid_or_none(normalize_phone, record.get("phone"))
        if email or phone:
            people.append((record, email, phone))
        else:
            skipped += 1
    emails, phones = {e for _, e, _ in people if e}, {p for _, _, p in people if p}
    lifted = re_consents(emails, phones) if people else {}
    signals = []
    for record, email, phone in people:
        for state in STATES:
            if state not in record:
                continue
            at = parse_time(record[state])
            if at is None:
                skipped += 1
                continue
            identity = identity_for(state, email, phone)
            lifted_at = lifted.get((identity, state))
            stale = lifted_at is not None and at <= lifted_at
            signals.append(Signal(
                event_id=event_id(tenant, identity, state, at), kind=OTHER if stale else OPT_OUT,
                email=email, phone=phone, add=frozenset() if stale else frozenset({state}),
                reported_by=EXPERIENCE, occurred_at=at,
                detail={"state": state, "set_at": record[state], **({"ignored": STALE} if stale else {})},
            ))
    content = json.dumps(recipients, sort_keys=True, separators=(",", ":"), default=str).encode()
    request_key = f"{tenant}:{hashlib.sha256(content).hexdigest()}"
    return Page(Inbound(request_key, signals), content, skipped)
