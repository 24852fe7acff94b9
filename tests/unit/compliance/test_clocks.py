"""Clock arithmetic: weekends, US and Canadian holidays, time zones, 48 hours, statuses at their boundaries.

Expected dates are counted by hand on the calendar (day 0 = the day the opt-out arrives, then the
10th business day); the holidays are the official ones (US federal, Canada, Ontario).
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from receiver.compliance.clocks import (
    DEFAULT_REGIMES,
    Calendar,
    ClockStatus,
    Regime,
    at_risk_from,
    clocks_for,
    honour_by,
    parse_regimes,
    status,
)
from receiver.states import MAIL_BAN, MARKETING_DECLINE, MARKETING_DECLINE_SMS, SMS_BAN

NEW_YORK = ZoneInfo("America/New_York")
US = Calendar("US")  # UTC days
LAST_MICROSECOND = (23, 59, 59, 999999)


def end_of(day: date, zone=UTC) -> datetime:
    return datetime(day.year, day.month, day.day, *LAST_MICROSECOND, tzinfo=zone).astimezone(UTC)


@pytest.mark.parametrize("started", [
    datetime(2026, 3, 6, 12, tzinfo=UTC),   # Friday: Saturday and Sunday do not count
    datetime(2026, 3, 7, 10, tzinfo=UTC),   # Saturday: counting starts Monday
    datetime(2026, 3, 8, 23, tzinfo=UTC),   # Sunday, late
])
def test_weekends_are_not_business_days(started):
    # Mon 9 … Fri 13 (5), Mon 16 … Fri 20 (10).
    assert honour_by(Regime.TCPA, started, US) == end_of(date(2026, 3, 20))


def test_the_day_it_arrives_is_day_zero_even_on_a_business_day():
    # Monday: Tue 3 … Fri 6 (4), Mon 9 … Fri 13 (9), Mon 16 (10).
    assert honour_by(Regime.TCPA, datetime(2026, 3, 2, 0, 1, tzinfo=UTC), US) == end_of(date(2026, 3, 16))
    assert honour_by(Regime.TCPA, datetime(2026, 3, 2, 23, 59, tzinfo=UTC), US) == end_of(date(2026, 3, 16))


def test_thanksgiving_moves_the_deadline_a_day():
    # Friday 2026-11-20: Mon 23, Tue 24, Wed 25, (Thu 26 Thanksgiving), Fri 27 (4), Mon 30 … Fri 4 (9), Mon 7.
    assert not US.is_business_day(date(2026, 11, 26))
    assert US.is_business_day(date(2026, 11, 27))  # the day after is not a federal holiday
    assert honour_by(Regime.CAN_SPAM, datetime(2026, 11, 20, 12, tzinfo=UTC), US) == end_of(date(2026, 12, 7))


def test_christmas_moves_the_deadline_a_day():
    # Monday 2026-12-14: Tue 15 … Fri 18 (4), Mon 21 … Thu 24 (8), (Fri 25 Christmas), Mon 28, Tue 29.
    assert not US.is_business_day(date(2026, 12, 25))
    assert honour_by(Regime.TCPA, datetime(2026, 12, 14, 12, tzinfo=UTC), US) == end_of(date(2026, 12, 29))


def test_observed_holidays_count():
    # Independence Day 2026 is a Saturday, observed on Friday the 3rd.
    assert not US.is_business_day(date(2026, 7, 3))


def test_canada_day():
    toronto = Calendar("CA", "America/Toronto")
    # Thursday 2026-06-25: Fri 26, Mon 29, Tue 30, (Wed 1 Canada Day), Thu 2 (4), Fri 3, Mon 6 … Thu 9 (9), Fri 10.
    assert not toronto.is_business_day(date(2026, 7, 1))
    assert honour_by(Regime.CASL, datetime(2026, 6, 25, 12, tzinfo=UTC), toronto) == end_of(
        date(2026, 7, 10), ZoneInfo("America/Toronto"))


def test_victoria_day_is_a_provincial_holiday():
    ontario, canada = Calendar("CA-ON"), Calendar("CA")
    victoria_day = date(2026, 5, 18)
    assert not ontario.is_business_day(victoria_day)
    assert canada.is_business_day(victoria_day)  # not nationwide: a bare "CA" does not have it
    assert not Calendar("ca-qc").is_business_day(victoria_day)  # Quebec's National Patriots' Day
    # Friday 2026-05-08: Mon 11 … Fri 15 (5), (Mon 18), Tue 19 … Fri 22 (9), Mon 25 (10, not a
    # Canadian holiday); in the US the same week ends on Friday 22.
    started = datetime(2026, 5, 8, 12, tzinfo=UTC)
    assert honour_by(Regime.CASL, started, ontario) == end_of(date(2026, 5, 25))
    assert honour_by(Regime.CASL, started, US) == end_of(date(2026, 5, 22))


def test_friday_evening_stop_before_martin_luther_king_day():
    new_york = Calendar("US", "America/New_York")
    # Friday 2027-01-15 at 19:00 in New York is already Saturday in UTC; day 0 is the Friday.
    started = datetime(2027, 1, 15, 19, tzinfo=NEW_YORK)
    assert started.astimezone(UTC).date() == date(2027, 1, 16)
    assert not new_york.is_business_day(date(2027, 1, 18))
    # (Mon 18 MLK), Tue 19 … Fri 22 (4), Mon 25 … Fri 29 (9), Mon Feb 1 (10): its end in New York.
    assert honour_by(Regime.TCPA, started, new_york) == datetime(2027, 2, 2, 4, 59, 59, 999999, tzinfo=UTC)


def test_time_zone_decides_the_day_an_opt_out_arrives():
    # 23:30 Monday in New York is 04:30 Tuesday in UTC: day 0 differs, so does the deadline.
    started = datetime(2026, 3, 2, 23, 30, tzinfo=NEW_YORK)
    assert started.astimezone(UTC) == datetime(2026, 3, 3, 4, 30, tzinfo=UTC)
    # Day 0 Monday 2 → Monday 16, ending at midnight New York time, after the DST change of the 8th (UTC-4).
    assert honour_by(Regime.TCPA, started, Calendar("US", "America/New_York")) == datetime(
        2026, 3, 17, 3, 59, 59, 999999, tzinfo=UTC)
    # Without a time zone, UTC: day 0 Tuesday 3 → Tuesday 17.
    assert honour_by(Regime.TCPA, started, US) == end_of(date(2026, 3, 17))


def test_gmail_yahoo_is_48_hours_through_weekends_and_holidays():
    started = datetime(2026, 11, 25, 18, tzinfo=UTC)  # Wednesday before Thanksgiving
    expected = datetime(2026, 11, 27, 18, tzinfo=UTC)
    assert honour_by(Regime.GMAIL_YAHOO, started, US) == expected
    assert honour_by(Regime.GMAIL_YAHOO, started, Calendar("US", "Pacific/Kiritimati")) == expected
    friday = datetime(2026, 3, 6, 22, tzinfo=UTC)
    assert honour_by(Regime.GMAIL_YAHOO, friday, US) == datetime(2026, 3, 8, 22, tzinfo=UTC)  # a Sunday


def test_clocks_for_starts_each_regime_on_its_states():
    started = datetime(2026, 3, 2, 12, tzinfo=UTC)
    sms = clocks_for({SMS_BAN, MARKETING_DECLINE_SMS}, False, DEFAULT_REGIMES, started, US)
    assert [(clock.regime, clock.states) for clock in sms] == [
        (Regime.TCPA, frozenset({SMS_BAN, MARKETING_DECLINE_SMS}))]
    one_click = clocks_for({MARKETING_DECLINE}, True, DEFAULT_REGIMES, started, US)
    assert [(clock.regime, clock.states) for clock in one_click] == [
        (Regime.CAN_SPAM, frozenset({MARKETING_DECLINE})), (Regime.GMAIL_YAHOO, frozenset({MARKETING_DECLINE}))]
    form = clocks_for({MAIL_BAN}, False, DEFAULT_REGIMES, started, US)
    assert [clock.regime for clock in form] == [Regime.CAN_SPAM]  # 48 hours only for a one-click
    casl = clocks_for({MAIL_BAN, SMS_BAN}, False, [Regime.CASL], started, US)
    assert casl[0].states == frozenset({MAIL_BAN, SMS_BAN})
    assert clocks_for(set(), True, list(Regime), started, US) == []
    clock = one_click[0]
    assert (clock.started_at, clock.honour_by, clock.honoured_at) == (started, end_of(date(2026, 3, 16)), None)


def test_started_at_is_stored_in_utc():
    clock = clocks_for({SMS_BAN}, False, [Regime.TCPA], datetime(2027, 1, 15, 19, tzinfo=NEW_YORK), US)[0]
    assert clock.started_at == datetime(2027, 1, 16, tzinfo=UTC) and clock.started_at.tzinfo is UTC


def test_status_at_the_boundaries():
    started = datetime(2026, 3, 6, 22, tzinfo=UTC)
    clock = clocks_for({MARKETING_DECLINE}, True, [Regime.GMAIL_YAHOO], started, US)[0]
    tick = timedelta(microseconds=1)
    risky = started + timedelta(hours=48 * 0.8)  # 20 % of 48 hours left
    assert clock.at_risk_from == risky
    assert status(clock, started) is ClockStatus.PENDING
    assert status(clock, risky - tick) is ClockStatus.PENDING
    assert status(clock, risky) is ClockStatus.AT_RISK
    assert status(clock, clock.honour_by) is ClockStatus.AT_RISK
    assert status(clock, clock.honour_by + tick) is ClockStatus.BREACHED
    assert status(clock.honoured(clock.honour_by), clock.honour_by + timedelta(days=9)) is ClockStatus.MET
    late = clock.honoured(clock.honour_by + tick)
    assert status(late, clock.honour_by + tick) is ClockStatus.BREACHED
    assert status(late, clock.honour_by + timedelta(days=400)) is ClockStatus.BREACHED  # stays breached
    assert status(clock.honoured(started), started) is ClockStatus.MET


def test_at_risk_with_one_business_day_left():
    # Monday 2026-03-02 → deadline Monday 16; the 9th business day is Friday 13. From Saturday only
    # Monday is left: at risk, though more than 20 % of the time (2.9 days) remains.
    started = datetime(2026, 3, 2, 12, tzinfo=UTC)
    clock = clocks_for({SMS_BAN}, False, [Regime.TCPA], started, US)[0]
    assert clock.at_risk_from == datetime(2026, 3, 14, tzinfo=UTC)
    assert status(clock, datetime(2026, 3, 13, 23, 59, tzinfo=UTC)) is ClockStatus.PENDING
    assert status(clock, datetime(2026, 3, 14, tzinfo=UTC)) is ClockStatus.AT_RISK


def test_at_risk_with_20_percent_left():
    # Tuesday 2026-03-03 → Tuesday 17: the 9th business day (Monday 16) ends later than the moment
    # 20 % of the 14.5 days is left (Sunday 15, 02:24), so the 20 % rule decides.
    started = datetime(2026, 3, 3, 12, tzinfo=UTC)
    by = honour_by(Regime.TCPA, started, US)
    expected = by - (by - started) / 5
    assert at_risk_from(Regime.TCPA, started, US) == expected
    assert expected.date() == date(2026, 3, 15)


def test_other_countries_come_from_the_library():
    assert not Calendar("FR").is_business_day(date(2026, 7, 14))  # Bastille Day
    israel = Calendar("IL")
    assert not israel.is_business_day(date(2026, 3, 6))  # a Friday: Israel's weekend is Friday-Saturday
    assert israel.is_business_day(date(2026, 3, 8))  # a Sunday


@pytest.mark.parametrize("code, timezone, named", [
    ("XX", None, "'XX'"),
    ("CA-ZZ", None, "'ZZ'"),
    ("", None, "''"),
    ("US", "Mars/Olympus_Mons", "'Mars/Olympus_Mons'"),
    ("US", "../../etc/passwd", "'../../etc/passwd'"),
])
def test_unknown_calendar_or_time_zone_names_it(code, timezone, named):
    with pytest.raises(ValueError) as error:
        Calendar(code, timezone)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_regimes_from_settings():
    assert parse_regimes(["tcpa", "casl", "tcpa"]) == (Regime.TCPA, Regime.CASL)
    with pytest.raises(ValueError, match="'gdpr'"):
        parse_regimes(["tcpa", "gdpr"])


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        honour_by(Regime.TCPA, datetime(2026, 3, 2, 12), US)
