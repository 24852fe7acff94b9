"""Twilio's Messages list, served from a local server in Twilio's documented page shape.

The page and message objects are twilio-python's recorded sample (tests/integration/api/v2010/
account/test_message.py, ``test_read_full_response``): the sample's one message is ``outbound-api``
and is kept as is (it must be left out); the inbound ones copy its fields with ``direction``
``inbound``, a guest's ``from`` and our number as ``to``, as the Message resource reference describes.
"""

import base64
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
from receiver.backfill.twilio import TwilioBackfill

from .conftest import json_answer

SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TOKEN = "auth-token-123"
OURS = "+14155552345"
LIST_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"

SAMPLE_OUTBOUND = {
    "account_sid": SID, "api_version": "2010-04-01", "body": "O Slash: \u00d8, PoP: \ud83d\udca9",
    "date_created": "Fri, 04 Sep 2015 22:54:39 +0000", "date_sent": "Fri, 04 Sep 2015 22:54:41 +0000",
    "date_updated": "Fri, 04 Sep 2015 22:54:41 +0000", "direction": "outbound-api", "error_code": None,
    "error_message": None, "from": "+14155552345", "messaging_service_sid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "num_media": "0", "num_segments": "1", "price": "-0.00750", "price_unit": "USD",
    "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "status": "sent",
    "subresource_uris": {"media": f"/2010-04-01/Accounts/{SID}/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json"},
    "to": "+14155552345", "uri": f"/2010-04-01/Accounts/{SID}/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
}


def inbound(sid: str, sender: str | None, body: str, sent: str = "Fri, 04 Sep 2015 22:54:41 +0000") -> dict:
    return {**SAMPLE_OUTBOUND, "sid": sid, "from": sender, "to": OURS, "body": body, "direction": "inbound",
            "status": "received", "date_sent": sent, "price": None,
            "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json"}


def page(messages: list, page_no: int, next_uri: str | None) -> dict:
    uri = f"{LIST_PATH}?To=%2B14155552345&PageSize=2&Page={page_no}"
    return {"end": page_no * 2 + len(messages) - 1, "first_page_uri": f"{LIST_PATH}?To=%2B14155552345&PageSize=2&Page=0",
            "messages": messages, "next_page_uri": next_uri, "page": page_no, "page_size": 2,
            "previous_page_uri": None, "start": page_no * 2, "uri": uri}


NEXT_1 = f"{LIST_PATH}?To=%2B14155552345&PageSize=2&Page=1&PageToken=PASMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
NEXT_2 = f"{LIST_PATH}?To=%2B14155552345&PageSize=2&Page=2&PageToken=PASMcccccccccccccccccccccccccccccccc"


def serve_three_pages(provider):
    first = {"To": OURS, "DateSent>": "2015-09-01", "PageSize": "2"}
    provider.routes({
        (LIST_PATH, frozenset(first.items())): json_answer(page(
            [inbound("SM0001", "+15005550006", "STOP"), SAMPLE_OUTBOUND], 0, NEXT_1)),
        (LIST_PATH, frozenset({"To": OURS, "PageSize": "2", "Page": "1",
                               "PageToken": "PASMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}.items())): json_answer(page(
            [inbound("SM0002", None, "stop"), inbound("SM0003", "+15005550007", "Unsubscribe")], 1, NEXT_2)),
        (LIST_PATH, frozenset({"To": OURS, "PageSize": "2", "Page": "2",
                               "PageToken": "PASMcccccccccccccccccccccccccccccccc"}.items())): json_answer(page(
            [inbound("SM0004", "+15005550008", "thanks!", sent="Sat, 05 Sep 2015 10:00:00 +0000")], 2, None)),
    })


def backfill(provider, **options) -> TwilioBackfill:
    client = ListClient("twilio", provider.url, auth=(SID, TOKEN))
    return TwilioBackfill(client, SID, [OURS], page_size=2, **options)


def test_pages_follow_next_page_uri_and_keep_only_inbound_texts(provider):
    serve_three_pages(provider)
    pages = list(backfill(provider).pages(date(2015, 9, 1)))
    assert [p.position for p in pages] == [Position(OURS), Position(OURS, NEXT_1), Position(OURS, NEXT_2)]
    assert [p.next for p in pages] == [Position(OURS, NEXT_1), Position(OURS, NEXT_2), None]
    items = [item for p in pages for item in p.items]
    assert [i.key for i in items] == ["SM0001", "SM0002", "SM0003", "SM0004"]  # the outbound one is left out
    first = items[0]
    assert (first.kind, first.phone, first.body, first.skipped) == (ItemKind.INBOUND_SMS, "+15005550006", "STOP", None)
    assert first.occurred_at == datetime(2015, 9, 4, 22, 54, 41, tzinfo=UTC)
    assert first.kind.is_opt_out is None  # the keyword rules decide, as for a webhook body


def test_a_text_without_a_sender_number_is_skipped_with_the_reason(provider):
    serve_three_pages(provider)
    skipped = [i for i in flatten(backfill(provider).pages(date(2015, 9, 1))) if i.skipped]
    assert [(i.key, i.skipped) for i in skipped] == [("SM0002", "no sender number")]


def test_basic_auth_and_documented_filters_are_sent(provider):
    serve_three_pages(provider)
    list(backfill(provider).pages(date(2015, 9, 1)))
    first = provider.requests[0]
    assert first["headers"]["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert "DateSent%3E=2015-09-01" in first["query"] and "To=%2B14155552345" in first["query"]
    assert all(r["headers"]["Authorization"] == first["headers"]["Authorization"] for r in provider.requests)


def test_page_two_is_fetched_only_once_page_one_is_consumed(provider):
    serve_three_pages(provider)
    items = flatten(backfill(provider).pages(date(2015, 9, 1)))
    assert provider.requests == []  # a generator: nothing read before it is asked for
    next(items)
    assert len(provider.requests) == 1
    next(items)  # SM0002: the second inbound text is on page two
    assert len(provider.requests) == 2


def test_resumes_at_the_page_it_stopped_at(provider):
    serve_three_pages(provider)
    pages = list(backfill(provider).pages(date(2015, 9, 1), resume=Position(OURS, NEXT_2)))
    assert [i.key for p in pages for i in p.items] == ["SM0004"]
    assert len(provider.requests) == 1


def test_401_stops_with_the_credentials_error_naming_twilio(provider):
    provider.handler = lambda request: json_answer(
        {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
         "status": 401}, status=401)
    with pytest.raises(CredentialsRefused, match="^twilio: credentials refused"):
        list(backfill(provider).pages(date(2015, 9, 1)))


def test_a_page_without_a_messages_list_is_a_clear_error(provider):
    provider.handler = lambda request: json_answer({"code": 20404, "message": "not found"})
    with pytest.raises(BadPage, match="twilio: unexpected answer: no messages list"):
        list(backfill(provider).pages(date(2015, 9, 1)))


def test_each_configured_number_is_a_list_of_its_own(provider):
    other = "+14155550000"
    provider.handler = lambda request: json_answer(page(
        [inbound("SM" + request.args["To"][-4:], "+15005550006", "STOP")], 0, None))
    client = ListClient("twilio", provider.url, auth=(SID, TOKEN))
    pages = list(TwilioBackfill(client, SID, [OURS, other]).pages(date(2015, 9, 1)))
    assert [(p.position.list, p.next) for p in pages] == [(OURS, Position(other)), (other, None)]
    assert [i.key for p in pages for i in p.items] == ["SM2345", "SM0000"]
