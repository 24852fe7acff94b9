"""Twilio's Messages list: the inbound texts to the configured numbers, which a webhook may have lost.

``GET /2010-04-01/Accounts/{sid}/Messages.json?To=<number>&DateSent>=<YYYY-MM-DD>&PageSize=…``
with Basic ``sid:auth_token``; each answer names the next page in ``next_page_uri`` (a path on the
API host, null on the last page). One list per configured number, read in order; only messages
of ``direction`` ``inbound`` are items (a reply we sent to the guest is no opt-out). The dedup key
is the message ``sid``, which is the webhook's ``MessageSid``: a STOP that came by webhook and again
by backfill is one signal. Twilio filters ``DateSent`` by whole GMT days, so a run from a date
re-reads that day (the ledger drops what it has seen).
"""

from collections.abc import Iterator
from datetime import date
from urllib.parse import quote

from ..identities import normalize_phone, valid_or_none
from ..schemas import is_identifier
from .pages import BackfillItem, ItemKind, ListClient, Page, Position, content_key, rfc2822_time

PROVIDER = "twilio"
BASE_URL = "https://api.twilio.com"
PAGE_SIZE = 1000  # Twilio's maximum


class TwilioBackfill:
    def __init__(self, client: ListClient, account_sid: str, numbers: list[str], *, page_size: int = PAGE_SIZE):
        self.client = client
        self.account_sid = account_sid
        self.numbers = list(numbers)
        self.page_size = page_size

    def pages(self, since: date, resume: Position | None = None) -> Iterator[Page]:
        """Each number's pages from ``since`` (or from ``resume``), one GET per page, in order."""
        start = self.numbers.index(resume.list) if resume and resume.list in self.numbers else 0
        for index in range(start, len(self.numbers)):
            number = self.numbers[index]
            uri = resume.page if resume and resume.list == number and resume.page else None
            while True:
                position = Position(number, uri or "")
                answer = self._fetch(number, since, uri)
                uri = self._next_uri(answer, uri)
                if uri is not None:
                    following = Position(number, uri)
                elif index + 1 < len(self.numbers):
                    following = Position(self.numbers[index + 1])
                else:
                    following = None
                yield Page(position, following, self._items(answer["messages"], position))
                if uri is None:
                    break

    def _fetch(self, number: str, since: date, uri: str | None) -> dict:
        if uri:
            answer = self.client.get_json(uri)
        else:
            path = f"/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json"
            answer = self.client.get_json(path, params={
                "To": number, "DateSent>": since.isoformat(), "PageSize": self.page_size})
        if not isinstance(answer, dict) or not isinstance(answer.get("messages"), list):
            raise self.client.bad_page("no messages list")
        return answer

    def _next_uri(self, answer: dict, current: str | None) -> str | None:
        uri = answer.get("next_page_uri")
        if uri is None or uri == "":
            return None
        if not isinstance(uri, str):
            raise self.client.bad_page("next_page_uri is not a path")
        if uri == current:
            raise self.client.bad_page("next_page_uri repeats the current page")
        return uri

    def _items(self, messages: list, position: Position) -> list[BackfillItem]:
        items = []
        for message in messages:
            if not isinstance(message, dict):
                items.append(BackfillItem(content_key(PROVIDER, message), None, position,
                                          skipped="not a message object"))
                continue
            if message.get("direction") != "inbound":
                continue
            items.append(_item(message, position))
        return items


def _item(message: dict, position: Position) -> BackfillItem:
    sid, body = message.get("sid"), message.get("body")
    when = rfc2822_time(message.get("date_sent")) or rfc2822_time(message.get("date_created"))
    phone = valid_or_none(normalize_phone, message.get("from"))
    skipped = None
    if not is_identifier(sid):
        sid, skipped = content_key(PROVIDER, sorted(message.items())), "no usable message sid"
    elif phone is None:
        skipped = "no sender number"
    elif not isinstance(body, str):
        skipped = "no message body"
    return BackfillItem(sid, ItemKind.INBOUND_SMS, position, phone=phone,
                        body=body if isinstance(body, str) else None, occurred_at=when,
                        skipped=skipped, raw=message)

