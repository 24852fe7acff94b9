"""SendGrid's suppression lists, served from a local server as SendGrid documents them.

Entries are SendGrid's published examples: "Retrieve all global suppressions" and "Retrieve all
spam reports" (``{"created": 1443651141, "email": "user1@example.com"[, "ip": "10.63.202.100"]}``),
"Retrieve all suppressions" for groups (``email``, ``group_id``, ``group_name: "Weekly News"``,
``created_at: 1410986704``); the 401 body is SendGrid's ``{"errors": [{"field": null, "message": …}]}``.
"""

from datetime import UTC, date, datetime

import pytest

from receiver.backfill.pages import (
    BadPage,
    CredentialsRefused,
    ItemKind,
    ListClient,
    Position,
    flatten,
)
from receiver.backfill.sendgrid import SendGridBackfill, bearer

from .conftest import json_answer

UNSUBSCRIBES = [{"created": 1443651141, "email": "user1@example.com"},
                {"created": 1443651154, "email": "user2@example.com"},
                {"created": 1443651160, "email": "not-an-address"}]
SPAM_REPORTS = [{"created": 1443651141, "email": "user1@example.com", "ip": "10.63.202.100"},
                {"created": 1443651154, "email": "user2@example.com", "ip": "10.63.202.100"}]
GROUPS = [{"email": "test1@example.com", "group_id": 1, "group_name": "Weekly News", "created_at": 1410986704},
          {"email": "test1@example.com", "group_id": 2, "group_name": "Daily News", "created_at": 1443651154},
          {"email": "test2@example.com", "group_id": 2, "group_name": "Daily News", "created_at": 1443651154}]
SINCE = date(2015, 9, 30)
START = str(int(datetime(2015, 9, 30, tzinfo=UTC).timestamp()))


def paged(path: str, rows: list, limit: int) -> dict:
    """The documented offset/limit pages of one list, keyed for ProviderServer.routes."""
    table = {}
    for offset in range(0, len(rows) + 1, limit):
        args = {"start_time": START, "limit": str(limit), "offset": str(offset)}
        table[(path, frozenset(args.items()))] = json_answer(rows[offset:offset + limit])
    return table


def serve(provider):
    provider.routes({**paged("/v3/suppression/unsubscribes", UNSUBSCRIBES, 2),
                     **paged("/v3/suppression/spam_reports", SPAM_REPORTS, 2),
                     ("/v3/asm/suppressions", frozenset()): json_answer(GROUPS)})


def backfill(provider, **options) -> SendGridBackfill:
    return SendGridBackfill(ListClient("sendgrid", provider.url, headers=bearer("SG.key"), **options), page_size=2)


def test_reads_three_lists_paging_by_offset(provider):
    serve(provider)
    pages = list(backfill(provider).pages(SINCE))
    assert [str(p.position) for p in pages] == [
        "unsubscribes 0", "unsubscribes 2", "group_unsubscribes 0", "spam_reports 0", "spam_reports 2"]
    assert [str(p.next) if p.next else None for p in pages] == [
        "unsubscribes 2", "group_unsubscribes", "spam_reports", "spam_reports 2", None]
    items = [i for p in pages for i in p.items]
    kinds = [(i.kind, i.email) for i in items if not i.skipped]
    assert kinds == [(ItemKind.UNSUBSCRIBE, "user1@example.com"), (ItemKind.UNSUBSCRIBE, "user2@example.com"),
                     (ItemKind.GROUP_UNSUBSCRIBE, "test1@example.com"),
                     (ItemKind.GROUP_UNSUBSCRIBE, "test2@example.com"),
                     (ItemKind.SPAM_REPORT, "user1@example.com"), (ItemKind.SPAM_REPORT, "user2@example.com")]
    assert items[0].occurred_at == datetime.fromtimestamp(1443651141, UTC)


def test_group_unsubscribes_before_since_are_left_out_and_groups_stay_apart(provider):
    serve(provider)
    groups = [i for i in flatten(backfill(provider).pages(SINCE)) if i.kind is ItemKind.GROUP_UNSUBSCRIBE]
    assert [i.raw["group_id"] for i in groups] == [2, 2]  # Weekly News (2014) predates since
    assert len({i.key for i in groups}) == 2


def test_dedup_keys_are_stable_and_hide_the_address(provider):
    serve(provider)
    first = [i.key for i in flatten(backfill(provider).pages(SINCE))]
    second = [i.key for i in flatten(backfill(provider).pages(SINCE))]
    assert first == second and len(set(first)) == len(first)
    assert not any("@" in key for key in first)
    # the same address and time in two lists are two entries
    unsub, spam = first[0], first[-2]
    assert unsub != spam


def test_an_entry_without_a_valid_email_is_skipped(provider):
    serve(provider)
    skipped = [i for i in flatten(backfill(provider).pages(SINCE)) if i.skipped]
    assert [(i.kind, i.skipped, i.raw["email"]) for i in skipped] == [
        (ItemKind.UNSUBSCRIBE, "no valid email address", "not-an-address")]


def test_bearer_key_is_sent_on_every_request(provider):
    serve(provider)
    list(backfill(provider).pages(SINCE))
    assert len(provider.requests) == 5
    assert {r["headers"]["Authorization"] for r in provider.requests} == {"Bearer SG.key"}


def test_page_two_is_fetched_only_once_page_one_is_consumed(provider):
    serve(provider)
    items = flatten(backfill(provider).pages(SINCE))
    next(items), next(items)
    assert len(provider.requests) == 1
    next(items)
    assert len(provider.requests) == 2


def test_resumes_in_the_list_and_at_the_offset_it_stopped_at(provider):
    serve(provider)
    pages = list(backfill(provider).pages(SINCE, resume=Position("spam_reports", "2")))
    assert [str(p.position) for p in pages] == ["spam_reports 2"]
    assert [r["args"]["offset"] for r in provider.requests] == ["2"]


def test_401_names_sendgrid(provider):
    provider.handler = lambda request: json_answer(
        {"errors": [{"field": None, "message": "authorization required"}]}, status=401)
    with pytest.raises(CredentialsRefused, match="^sendgrid: credentials refused"):
        list(backfill(provider).pages(SINCE))


def test_429_with_retry_after_then_the_page(provider, sleeps):
    serve(provider)
    routes = provider.handler
    calls = []

    def handler(request):
        calls.append(request.path)
        if len(calls) == 1:
            return json_answer({"errors": [{"field": None, "message": "too many requests"}]}, status=429,
                               headers={"Retry-After": "2"})
        return routes(request)
    provider.handler = handler
    items = list(flatten(backfill(provider, sleep=sleeps.append).pages(SINCE)))
    assert len(items) == 7 and sleeps[0] >= 2


def test_an_object_where_the_array_belongs_is_a_clear_error(provider):
    provider.handler = lambda request: json_answer({"result": []})
    with pytest.raises(BadPage, match="sendgrid: unexpected answer: unsubscribes is not a JSON array"):
        list(backfill(provider).pages(SINCE))
