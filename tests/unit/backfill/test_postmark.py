"""Postmark's suppressions dump, served from a local server as Postmark documents it.

Entries are Postmark's published example (Suppressions API, "Suppression dump": address@wildbit.com
``ManualSuppression``, bounce.address@wildbit.com ``HardBounce``, spam.complaint.address@wildbit.com
``SpamComplaint``, Origin ``Recipient``, ``CreatedAt`` ``2019-12-17T08:58:33-05:00``); Postmark's
401 body is ``{"ErrorCode": 10, "Message": …}``.
"""

from datetime import date, datetime, timedelta, timezone

import pytest

from receiver.backfill.pages import (
    BadPage,
    CredentialsRefused,
    ItemKind,
    ListClient,
    PageTooLarge,
    Position,
    flatten,
)
from receiver.backfill.postmark import PostmarkBackfill, server_token

from .conftest import json_answer

SAMPLE = [
    {"EmailAddress": "address@wildbit.com", "SuppressionReason": "ManualSuppression", "Origin": "Recipient",
     "CreatedAt": "2019-12-17T08:58:33-05:00"},
    {"EmailAddress": "bounce.address@wildbit.com", "SuppressionReason": "HardBounce", "Origin": "Recipient",
     "CreatedAt": "2019-12-17T08:58:33-05:00"},
    {"EmailAddress": "spam.complaint.address@wildbit.com", "SuppressionReason": "SpamComplaint",
     "Origin": "Recipient", "CreatedAt": "2019-12-17T08:58:33-05:00"},
]
PATH = "/message-streams/broadcast/suppressions/dump"
TODAY = date(2019, 12, 20)


def dump(rows_by_day: dict[date, list]):
    """Postmark's filter: every row whose day lies within fromdate..todate, both inclusive."""
    def handler(request):
        start, end = date.fromisoformat(request.args["fromdate"]), date.fromisoformat(request.args["todate"])
        return json_answer({"Suppressions": [row for day, rows in sorted(rows_by_day.items())
                                             if start <= day <= end for row in rows]})
    return handler


def backfill(provider, window_days: int = 3, **options) -> PostmarkBackfill:
    client = ListClient("postmark", provider.url, headers=server_token("pm-server-token"), **options)
    return PostmarkBackfill(client, "broadcast", window_days=window_days, today=lambda: TODAY)


def test_windows_of_whole_days_up_to_tomorrow_cover_every_day_once(provider):
    extra = {"EmailAddress": "late@example.com", "SuppressionReason": "ManualSuppression", "Origin": "Customer",
             "CreatedAt": "2019-12-21T00:30:00-05:00"}
    provider.handler = dump({date(2019, 12, 17): SAMPLE, date(2019, 12, 21): [extra]})
    pages = list(backfill(provider).pages(date(2019, 12, 14)))
    windows = [(r["args"]["fromdate"], r["args"]["todate"]) for r in provider.requests]
    assert windows == [("2019-12-14", "2019-12-16"), ("2019-12-17", "2019-12-19"), ("2019-12-20", "2019-12-21")]
    assert [p.next for p in pages] == [Position("suppressions", "2019-12-17"), Position("suppressions", "2019-12-20"),
                                       None]
    assert [i.email for p in pages for i in p.items] == [row["EmailAddress"] for row in SAMPLE] + ["late@example.com"]


def test_reasons_map_to_kinds_and_a_hard_bounce_is_no_opt_out(provider):
    provider.handler = dump({date(2019, 12, 17): SAMPLE})
    items = list(flatten(backfill(provider).pages(date(2019, 12, 17))))
    assert [(i.kind, i.kind.is_opt_out) for i in items] == [
        (ItemKind.UNSUBSCRIBE, True), (ItemKind.HARD_BOUNCE, False), (ItemKind.COMPLAINT, True)]
    assert items[0].occurred_at == datetime(2019, 12, 17, 8, 58, 33, tzinfo=timezone(timedelta(hours=-5)))
    assert all(i.skipped is None for i in items) and len({i.key for i in items}) == 3


def test_unknown_reason_and_missing_address_are_skipped_with_the_reason(provider):
    odd = [{"EmailAddress": "x@wildbit.com", "SuppressionReason": "Bored", "Origin": "Recipient",
            "CreatedAt": "2019-12-17T08:58:33-05:00"},
           {"EmailAddress": None, "SuppressionReason": "ManualSuppression", "Origin": "Recipient",
            "CreatedAt": "2019-12-17T08:58:33-05:00"}]
    provider.handler = dump({date(2019, 12, 17): odd})
    items = list(flatten(backfill(provider).pages(date(2019, 12, 17))))
    assert [i.skipped for i in items] == ["unknown suppression reason 'Bored'", "no valid email address"]


def test_server_token_header_is_sent(provider):
    provider.handler = dump({})
    list(backfill(provider).pages(date(2019, 12, 19)))
    assert {r["headers"]["X-Postmark-Server-Token"] for r in provider.requests} == {"pm-server-token"}


def test_page_two_is_fetched_only_once_page_one_is_consumed(provider):
    provider.handler = dump({date(2019, 12, 14): SAMPLE[:1], date(2019, 12, 17): SAMPLE[1:]})
    items = flatten(backfill(provider).pages(date(2019, 12, 14)))
    next(items)
    assert len(provider.requests) == 1
    next(items)
    assert len(provider.requests) == 2


def test_a_window_too_large_is_halved_and_read_again(provider):
    many = [dict(SAMPLE[0], EmailAddress=f"guest{n}@example.com") for n in range(30)]
    provider.handler = dump({date(2019, 12, 15): many[:15], date(2019, 12, 16): many[15:]})
    pages = list(backfill(provider, window_days=4, max_bytes=2500).pages(date(2019, 12, 15)))
    assert len([i for p in pages for i in p.items]) == 30
    fetched = [(r["args"]["fromdate"], r["args"]["todate"]) for r in provider.requests]
    assert fetched[:3] == [("2019-12-15", "2019-12-18"), ("2019-12-15", "2019-12-16"), ("2019-12-15", "2019-12-15")]


def test_resumes_at_the_window_it_stopped_at(provider):
    provider.handler = dump({date(2019, 12, 17): SAMPLE})
    list(backfill(provider).pages(date(2019, 1, 1), resume=Position("suppressions", "2019-12-17")))
    assert provider.requests[0]["args"]["fromdate"] == "2019-12-17"


def test_401_names_postmark(provider):
    provider.handler = lambda request: json_answer({"ErrorCode": 10, "Message": "No Account or Server API tokens"},
                                                   status=401)
    with pytest.raises(CredentialsRefused, match="^postmark: credentials refused"):
        list(backfill(provider).pages(date(2019, 12, 17)))


def test_an_answer_without_suppressions_is_a_clear_error(provider):
    provider.handler = lambda request: json_answer([{"EmailAddress": "address@wildbit.com"}])
    with pytest.raises(BadPage, match="postmark: unexpected answer: no Suppressions list"):
        list(backfill(provider).pages(date(2019, 12, 17)))


def test_a_single_day_too_large_stops_the_source(provider):
    many = [dict(SAMPLE[0], EmailAddress=f"guest{n}@example.com") for n in range(30)]
    provider.handler = dump({date(2019, 12, 15): many})
    with pytest.raises(PageTooLarge):
        list(backfill(provider, window_days=2, max_bytes=2500).pages(date(2019, 12, 15)))
