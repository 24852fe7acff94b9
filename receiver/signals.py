"""The normalized signal every source produces, whatever its wire format."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import clock

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
OTHER = "other"
IGNORED_KIND = OTHER  # an event that carries no opt-out (a bounce, a delivery, an open)
# The span a sender's event time must fall in to be believed (clock drift allowed ahead of now).
EARLIEST, AHEAD = datetime(2000, 1, 1, tzinfo=UTC), timedelta(minutes=5)


def plausible_time(value: datetime | None) -> datetime | None:
    """A sender's event time in UTC, or None (the receipt's time then stands) when it cannot be one.

    A clock starts at the event's time: one in year 1 would be breached at once, one in the future
    would push its deadline out, and one next to the calendar's ends does not convert to UTC. A time
    without a zone is taken as UTC.
    """
    if value is None:
        return None
    try:
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        return None
    return value if EARLIEST <= value <= datetime.fromtimestamp(clock.now(), UTC) + AHEAD else None


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

    def __post_init__(self):
        object.__setattr__(self, "occurred_at", plausible_time(self.occurred_at))


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
