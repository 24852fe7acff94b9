"""Mailgun's unsubscribes and complaints, served from a local server as Mailgun documents them.

Entries follow Mailgun's API reference samples ("List all unsubscribes" / "complaints": ``{"items":
[{"address": "alice@example.com", "tags": ["some tag"], "created_at": "Fri, 18 Oct 2024 18:28:14
UTC"}], "paging": {"previous", "first", "next", "last"}}``, paging entries being full URLs on the
API host, ``page=next&address=…`` as the Suppressions docs show); Mailgun answers 401 ``Forbidden``.
"""

import base64
from datetime import UTC, date, datetime

import pytest
from werkzeug.wrappers import Response

from receiver.backfill.mailgun import MailgunBackfill
from receiver.backfill.pages import (
    BadPage,
    CredentialsRefused,
    ItemKind,
    ListClient,
    Position,
    flatten,
)

from .conftest import json_answer

DOMAIN = "mg.example.com"
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def paging(provider, name: str, after: str) -> dict:
    base = f"{provider.url}/v3/{DOMAIN}/{name}"
    return {"first": f"{base}?limit=1000", "last": f"{base}?page=last&limit=1000",
            "next": f"{base}?page=next&address={after}&limit=1000",
            "previous": f"{base}?page=previous&address={after}&limit=1000"}


def serve(provider):
    unsub, complaints = f"/v3/{DOMAIN}/unsubscribes", f"/v3/{DOMAIN}/complaints"
    provider.routes({
        (unsub, frozenset({"limit": "1000"}.items())): json_answer({
            "items": [{"address": "alice@example.com", "tags": ["some tag"], "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"},
                      {"address": "", "tags": ["*"], "created_at": "Fri, 18 Oct 2024 18:30:00 UTC"}],
            "paging": paging(provider, "unsubscribes", "alice@example.com")}),
        (unsub, frozenset({"page": "next", "address": "alice@example.com", "limit": "1000"}.items())): json_answer({
            "items": [{"address": "bob@example.com", "tags": ["*"], "created_at": "Tue, 07 Jan 2025 19:25:45 UTC"},
                      {"address": "old@example.com", "tags": ["*"], "created_at": "Wed, 15 Feb 2012 11:21:46 GMT"}],
            "paging": paging(provider, "unsubscribes", "old@example.com")}),
        (unsub, frozenset({"page": "next", "address": "old@example.com", "limit": "1000"}.items())): json_answer({
            "items": [], "paging": paging(provider, "unsubscribes", "old@example.com")}),
        (complaints, frozenset({"limit": "1000"}.items())): json_answer({
            "items": [{"address": "alice@example.com", "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"}],
            "paging": paging(provider, "complaints", "alice@example.com")}),
        (complaints, frozenset({"page": "next", "address": "alice@example.com", "limit": "1000"}.items())):
            json_answer({"items": [], "paging": paging(provider, "complaints", "alice@example.com")}),
    })


def backfill(provider) -> MailgunBackfill:
    return MailgunBackfill(ListClient("mailgun", provider.url, auth=("api", KEY)), DOMAIN)


def test_pages_follow_paging_next_until_a_page_without_items(provider):
    serve(provider)
    pages = list(backfill(provider).pages(date(2020, 1, 1)))
    assert [(p.position.list, bool(p.position.page)) for p in pages] == [
        ("unsubscribes", False), ("unsubscribes", True), ("unsubscribes", True), ("complaints", False),
        ("complaints", True)]
    assert pages[2].next == Position("complaints") and pages[-1].next is None
    usable = [(i.kind, i.email, i.occurred_at) for p in pages for i in p.items if not i.skipped]
    assert usable == [
        (ItemKind.UNSUBSCRIBE, "alice@example.com", datetime(2024, 10, 18, 18, 28, 14, tzinfo=UTC)),
        (ItemKind.UNSUBSCRIBE, "bob@example.com", datetime(2025, 1, 7, 19, 25, 45, tzinfo=UTC)),
        (ItemKind.COMPLAINT, "alice@example.com", datetime(2024, 10, 18, 18, 28, 14, tzinfo=UTC))]
    # old@example.com (2012) predates since: Mailgun cannot filter by time, so it is left out here


def test_next_links_are_read_from_our_base_url(provider):
    serve(provider)
    list(backfill(provider).pages(date(2020, 1, 1)))
    assert provider.requests[1]["args"] == {"page": "next", "address": "alice@example.com", "limit": "1000"}


def test_an_entry_without_an_address_is_skipped(provider):
    serve(provider)
    skipped = [i for i in flatten(backfill(provider).pages(date(2020, 1, 1))) if i.skipped]
    assert [(i.kind, i.skipped) for i in skipped] == [(ItemKind.UNSUBSCRIBE, "no valid address")]


def test_keys_differ_by_kind_and_are_stable(provider):
    serve(provider)
    keys = [i.key for i in flatten(backfill(provider).pages(date(2020, 1, 1))) if not i.skipped]
    assert len(set(keys)) == 3  # alice's unsubscribe and complaint stay two entries
    assert keys == [i.key for i in flatten(backfill(provider).pages(date(2020, 1, 1))) if not i.skipped]


def test_basic_api_key_is_sent(provider):
    serve(provider)
    list(backfill(provider).pages(date(2020, 1, 1)))
    expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert {r["headers"]["Authorization"] for r in provider.requests} == {expected}


def test_page_two_is_fetched_only_once_page_one_is_consumed(provider):
    serve(provider)
    items = flatten(backfill(provider).pages(date(2020, 1, 1)))
    next(items), next(items)
    assert len(provider.requests) == 1
    next(items)
    assert len(provider.requests) == 2


def test_401_names_mailgun(provider):
    provider.handler = lambda request: Response("Forbidden", status=401)
    with pytest.raises(CredentialsRefused, match="^mailgun: credentials refused"):
        list(backfill(provider).pages(date(2020, 1, 1)))


def test_a_next_link_to_another_host_is_refused(provider):
    provider.handler = lambda request: json_answer({
        "items": [{"address": "alice@example.com", "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"}],
        "paging": {"next": "https://collector.example/v3/steal?page=next"}})
    pages = backfill(provider).pages(date(2020, 1, 1))
    next(pages)
    with pytest.raises(BadPage, match="another host"):
        next(pages)
    assert len(provider.requests) == 1


def test_an_answer_without_items_is_a_clear_error(provider):
    provider.handler = lambda request: json_answer({"message": "Domain not found"})
    with pytest.raises(BadPage, match="mailgun: unexpected answer: unsubscribes answer has no items list"):
        list(backfill(provider).pages(date(2020, 1, 1)))
