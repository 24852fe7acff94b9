"""Mailgun's suppression lists of one sending domain: unsubscribes and complaints.

Basic ``api:<key>``. ``GET /v3/{domain}/unsubscribes`` and ``/v3/{domain}/complaints`` answer
``{"items": [{"address", "created_at", "tags"…}], "paging": {"first", "next", "previous", "last"}}``
where the paging entries are full URLs on the API host; the list is done at a page without items
(``paging.next`` is always present). Mailgun orders these lists by address and has no time
filter, so every run reads them whole; entries created before ``since`` are left out here.
``created_at`` is an RFC 2822 date (``Fri, 18 Oct 2024 18:28:14 UTC``).

Dedup key: kind + address + ``created_at``.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import quote

from ..identities import normalize_email, valid_or_none
from .pages import BackfillItem, ItemKind, ListClient, Page, Position, content_key, rfc2822_time

PROVIDER = "mailgun"
BASE_URL = "https://api.mailgun.net"
PAGE_SIZE = 1000  # Mailgun's maximum


@dataclass(frozen=True)
class _List:
    name: str
    kind: ItemKind


LISTS = (_List("unsubscribes", ItemKind.UNSUBSCRIBE), _List("complaints", ItemKind.COMPLAINT))


class MailgunBackfill:
    def __init__(self, client: ListClient, domain: str, *, page_size: int = PAGE_SIZE):
        self.client = client
        self.domain = domain
        self.page_size = page_size

    def pages(self, since: date, resume: Position | None = None) -> Iterator[Page]:
        names = [entry.name for entry in LISTS]
        start = names.index(resume.list) if resume and resume.list in names else 0
        cutoff = datetime(since.year, since.month, since.day, tzinfo=UTC)
        for index in range(start, len(LISTS)):
            entry = LISTS[index]
            link = resume.page if resume and resume.list == entry.name and resume.page else None
            following_list = Position(LISTS[index + 1].name) if index + 1 < len(LISTS) else None
            while True:
                position = Position(entry.name, link or "")
                answer = self._fetch(entry, link)
                rows, next_link = answer["items"], self._next(answer, link)
                done = not rows or next_link is None
                items = [item for item in (_item(entry, row, position) for row in rows)
                         if item.occurred_at is None or item.occurred_at >= cutoff]
                yield Page(position, following_list if done else Position(entry.name, next_link), items)
                if done:
                    break
                link = next_link

    def _fetch(self, entry: _List, link: str | None) -> dict:
        if link:
            answer = self.client.get_json(link)
        else:
            path = f"/v3/{quote(self.domain, safe='')}/{entry.name}"
            answer = self.client.get_json(path, params={"limit": self.page_size})
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            raise self.client.bad_page(f"{entry.name} answer has no items list")
        return answer

    def _next(self, answer: dict, current: str | None) -> str | None:
        paging = answer.get("paging")
        link = paging.get("next") if isinstance(paging, dict) else None
        if link is not None and not isinstance(link, str):
            raise self.client.bad_page("paging.next is not a URL")
        # A next link equal to the page just read would loop forever; the list is done.
        return None if not link or link == current else link


def _item(entry: _List, row, position: Position) -> BackfillItem:
    if not isinstance(row, dict):
        return BackfillItem(content_key(PROVIDER, entry.name, row), entry.kind, position,
                            skipped="not a suppression object")
    email = valid_or_none(normalize_email, row.get("address"))
    created = row.get("created_at")
    if email is None:
        return BackfillItem(content_key(PROVIDER, entry.name, sorted(row.items())), entry.kind, position,
                            skipped="no valid address", raw=row)
    return BackfillItem(content_key(PROVIDER, entry.kind, email.lower(), created), entry.kind, position,
                        email=email, occurred_at=rfc2822_time(created), raw=row)

