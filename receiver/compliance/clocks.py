"""Deadline clocks: which regimes an added opt-out state starts, when each must be honoured, its status.

Pure arithmetic, no storage (contract, "Compliance clocks and proof"; docs/compliance.md).

- **Regimes.** ``tcpa`` (``sms_ban``, ``marketing_decline_sms``), ``can-spam`` (``mail_ban``,
  ``marketing_decline``), ``casl`` (every state): 10 business days. ``gmail-yahoo``: the states a
  one-click POST (RFC 8058) adds, 48 hours by the clock, weekends and holidays included.
- **Business days.** A day is one unless it is a weekend day or a public holiday (observed days
  included) of the calendar's country, or of its subdivision when one is given (``"CA-ON"``), as
  the ``holidays`` library has them. A bare ``"CA"`` has only Canada's nationwide holidays (no
  Victoria Day): give the province. Weekend days are the country's own (Friday and Saturday in
  Israel), also from the library.
- **Counting.** The day the opt-out arrives is day 0, whatever time it arrives and whether or not
  it is a business day; counting starts on the next business day, and the deadline is the *end*
  of the 10th: ``honour_by`` is the last microsecond (23:59:59.999999) of that day in the
  calendar's time zone, as UTC. Day 0 being free matches the usual reading of "within 10 business
  days of receipt" and means an opt-out at 23:59 gets the same time as one at 00:01.
- **Time zone.** The tenant's ``timezone`` (an IANA name); UTC when it has none. No zone is
  guessed from the country: the US and Canada span six zones each, and a guess would be silently
  wrong for most hotels, while UTC is at least the same for every reader. Set it.
- **Status.** ``met``: honoured at or before ``honour_by``. ``breached``: not honoured and now is
  past ``honour_by``, or honoured after it (a late honour stays ``breached``: the record keeps
  when it was honoured, but the deadline was missed). Otherwise ``at_risk`` from ``at_risk_from``,
  else ``pending``. ``at_risk_from`` is the earlier of: the moment 20 % of the clock's time
  (``honour_by - started_at``) is left, and, for business-day regimes, the end of the
  9th business day (from then on only one business day, the last, remains: on the Saturday before
  a Monday deadline, say). At exactly ``honour_by`` a clock is ``at_risk``, one microsecond later
  ``breached``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from ..states import EMAIL_STATES, SMS_STATES, STATES

_MICROSECOND = timedelta(microseconds=1)
_AT_RISK_SHARE = 5  # at risk once 1/5 (20 %) of the clock's time is left


class Regime(StrEnum):
    TCPA = "tcpa"
    CAN_SPAM = "can-spam"
    CASL = "casl"
    GMAIL_YAHOO = "gmail-yahoo"

    def applies_to(self, states_added, one_click: bool) -> frozenset[str]:
        """The states among ``states_added`` this regime's clock covers (empty: no clock)."""
        if self is Regime.GMAIL_YAHOO:
            return frozenset(states_added) if one_click else frozenset()
        return frozenset(states_added) & _APPLIES_TO[self]

    @property
    def deadline(self) -> Deadline:
        return _DEADLINES[self]


@dataclass(frozen=True)
class Deadline:
    """Either a number of business days on the tenant's calendar or a number of hours."""

    business_days: int = 0
    hours: int = 0


_APPLIES_TO = {
    Regime.TCPA: SMS_STATES,
    Regime.CAN_SPAM: EMAIL_STATES,
    Regime.CASL: frozenset(STATES),
}
_DEADLINES = {
    Regime.TCPA: Deadline(business_days=10),
    Regime.CAN_SPAM: Deadline(business_days=10),
    Regime.CASL: Deadline(business_days=10),
    Regime.GMAIL_YAHOO: Deadline(hours=48),
}
DEFAULT_REGIMES = (Regime.TCPA, Regime.CAN_SPAM, Regime.GMAIL_YAHOO)


def parse_regimes(names) -> tuple[Regime, ...]:
    """Settings' ``regimes`` list as Regimes; ValueError naming the first unknown one."""
    known = ", ".join(regime.value for regime in Regime)
    regimes = []
    for name in names:
        try:
            regimes.append(Regime(name))
        except ValueError:
            raise ValueError(f"regimes: unknown regime {name!r} (known: {known})") from None
    return tuple(dict.fromkeys(regimes))


class ClockStatus(StrEnum):
    MET = "met"
    PENDING = "pending"
    AT_RISK = "at_risk"
    BREACHED = "breached"


class Calendar:
    """Business days of one country (optionally one subdivision) in one time zone.

    ``code`` is an ISO 3166 code as the ``holidays`` library knows it: ``"US"``, ``"FR"``, or a
    country and subdivision ``"CA-ON"``, ``"US-CA"``. An unknown country, subdivision or time
    zone raises ValueError naming it (start-up refuses such a tenant with that one line).
    """

    def __init__(self, code: str, timezone: str | None = None):
        country, _, subdivision = code.strip().partition("-")
        country = country.upper()
        supported = holidays.list_supported_countries()
        if country not in supported:
            raise ValueError(f"calendar: unknown country {code!r} (an ISO 3166 code such as 'US')")
        if subdivision:
            # Spelled as the library spells it ("ON", "NSW Western"), whatever the case given.
            spelling = {known.casefold(): known for known in supported[country]}
            if subdivision.casefold() not in spelling:
                raise ValueError(f"calendar: {country} has no subdivision {subdivision!r} (in {code!r})")
            subdivision = spelling[subdivision.casefold()]
        self.code = f"{country}-{subdivision}" if subdivision else country
        self.country, self.subdivision = country, subdivision or None
        self.zone = _zone(timezone)
        self._weekend = frozenset(holidays.country_holidays(country, subdiv=self.subdivision).weekend)

    def __repr__(self) -> str:
        return f"Calendar({self.code!r}, {self.zone.key!r})"

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self._weekend and day not in _holidays(self.country, self.subdivision, day.year)

    def nth_business_day_after(self, day: date, n: int) -> date:
        """The ``n``-th business day strictly after ``day`` (``day`` itself never counts)."""
        found = 0
        while found < n:
            day += timedelta(days=1)
            found += self.is_business_day(day)
        return day

    def local_date(self, instant: datetime) -> date:
        return _aware(instant).astimezone(self.zone).date()

    def day_ends(self, day: date) -> datetime:
        """The instant (UTC) ``day`` is over in this zone: the next local midnight."""
        # fold=0 also gives the right instant when midnight falls in a DST gap (the transition).
        midnight = datetime.combine(day + timedelta(days=1), time(), tzinfo=self.zone)
        return midnight.astimezone(UTC)


@lru_cache(maxsize=64)
def tenant_calendar(code: str, timezone: str | None) -> Calendar:
    """A tenant's Calendar, built once per (calendar, timezone) setting."""
    return Calendar(code, timezone)


def _zone(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not even a well-formed key ("../x")
        raise ValueError(f"timezone: unknown time zone {name!r} (an IANA name such as 'America/New_York')") from None


@lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    # One frozen set per year: the library's own object grows as it is queried, shared by threads.
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a clock needs an aware datetime (with its time zone), not a naive one")
    return instant


def honour_by(regime: Regime, started_at: datetime, calendar: Calendar) -> datetime:
    """The last instant (UTC) at which honouring the opt-out is still in time."""
    deadline = regime.deadline
    if deadline.hours:
        return _aware(started_at).astimezone(UTC) + timedelta(hours=deadline.hours)
    last_day = calendar.nth_business_day_after(calendar.local_date(started_at), deadline.business_days)
    return calendar.day_ends(last_day) - _MICROSECOND


def at_risk_from(regime: Regime, started_at: datetime, calendar: Calendar) -> datetime:
    """The first instant (UTC) a clock not yet honoured is ``at_risk`` (see the module docstring)."""
    by = honour_by(regime, started_at, calendar)
    threshold = by - (by - _aware(started_at).astimezone(UTC)) / _AT_RISK_SHARE
    days = regime.deadline.business_days
    if days:
        second_last = calendar.nth_business_day_after(calendar.local_date(started_at), days - 1)
        threshold = min(threshold, calendar.day_ends(second_last))
    return threshold


@dataclass(frozen=True)
class Clock:
    """One regime's deadline for the states one signal added."""

    regime: Regime
    states: frozenset[str]
    started_at: datetime
    honour_by: datetime
    at_risk_from: datetime
    honoured_at: datetime | None = None

    def honoured(self, at: datetime) -> Clock:
        """This clock honoured at ``at`` (when the last delivery it owes was done or skipped)."""
        return dataclasses.replace(self, honoured_at=_aware(at).astimezone(UTC))


def clocks_for(states_added, one_click: bool, regimes, started_at: datetime, calendar: Calendar) -> list[Clock]:
    """The clocks a signal starts: one per regime of the tenant that covers any state it added.

    ``started_at`` is the signal's ``occurred_at``, else its receipt time; ``one_click`` says it
    came from an RFC 8058 one-click POST (the only signals ``gmail-yahoo`` applies to).
    """
    started = _aware(started_at).astimezone(UTC)
    clocks = []
    for regime in regimes:
        states = regime.applies_to(states_added, one_click)
        if states:
            clocks.append(Clock(regime=regime, states=states, started_at=started,
                                honour_by=honour_by(regime, started, calendar),
                                at_risk_from=at_risk_from(regime, started, calendar)))
    return clocks


def review_clock(started_at: datetime, decided_at: datetime | None, calendar: Calendar) -> Clock:
    """A text flagged for review may be a revocation, which the TCPA wants honoured within 10 business
    days of its arrival: its clock runs until a person decides it (computed on read, not stored)."""
    return Clock(Regime.TCPA, frozenset(), started_at, honour_by(Regime.TCPA, started_at, calendar),
                 at_risk_from(Regime.TCPA, started_at, calendar), decided_at)


def status(clock: Clock, now: datetime) -> ClockStatus:
    """``clock``'s status at ``now`` (see the module docstring for the boundaries)."""
    if clock.honoured_at is not None:
        return ClockStatus.MET if clock.honoured_at <= clock.honour_by else ClockStatus.BREACHED
    now = _aware(now)
    if now > clock.honour_by:
        return ClockStatus.BREACHED
    return ClockStatus.AT_RISK if now >= clock.at_risk_from else ClockStatus.PENDING
