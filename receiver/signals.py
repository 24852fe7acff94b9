"""The normalized signal every source produces, whatever its wire format."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
OTHER = "other"
IGNORED_KIND = OTHER  # an event that carries no opt-out (a bounce, a delivery, an open)


@dataclass(frozen=True)
class Signal:
    """One thing a sender told us about one guest.

    ``event_id`` is the sender's id for it (the dedup key within the source); ``add`` and
    ``remove`` are the opt-out states it asks for. ``reported_by`` names the CRM that already
    applied the opt-out itself (CRM Text for a STOP it received), so it is never sent back there.
    """

    event_id: str
    kind: str  # OPT_OUT | OPT_IN | HELP | OTHER
    phone: str | None = None
    email: str | None = None
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    keyword: str | None = None
    review: bool = False
    reported_by: str | None = None
    occurred_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # Whether an email and a phone given together are the same guest's (a signed link, a partner):
    # the open web form is not proof of that, so it never links them.
    links_identities: bool = True
    # Read back from a sender's own record after the fact (backfill): it may be older than what has
    # arrived since, so a removal lifts only a state that has held since before it occurred.
    read_back: bool = False


@dataclass(frozen=True)
class Inbound:
    """What a source parsed out of one request: its dedup key and its signals.

    ``nonce`` is for senders whose signature does not cover the body (Mailgun's token): the
    ledger refuses a nonce already used with another ``request_key`` until ``nonce_expires_at``.
    """

    request_key: str
    signals: list[Signal]
    nonce: str | None = None
    nonce_expires_at: datetime | None = None
    # The sender has already texted the guest its own answer (Twilio's Advanced Opt-Out): add none.
    sender_replied: bool = False
