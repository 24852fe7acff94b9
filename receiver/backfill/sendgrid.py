"""SendGrid's suppression lists: global unsubscribes, group unsubscribes and spam reports.

Bearer API key. ``/v3/suppression/unsubscribes`` and ``/v3/suppression/spam_reports`` answer a
bare JSON array of ``{"created": <unix time>, "email": …}`` (spam reports add ``ip``) and take
``start_time`` (inclusive, unix), ``limit`` and ``offset``: the next page is at ``offset`` plus
the page's length, and a page shorter than ``limit`` is the last. ``/v3/asm/suppressions``
(every group's unsubscribes: ``email``, ``group_id``, ``group_name``, ``created_at``) documents no
query parameters, so it is read in one answer and filtered on ``created_at`` here.

Dedup key: kind + email + created, plus the group for a group unsubscribe (one guest leaving two
groups in the same second is two entries).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ..identities import normalize_email, valid_or_none
from .pages import BackfillItem, ItemKind, ListClient, Page, Position, content_key

PROVIDER = "sendgrid"
BASE_URL = "https://api.sendgrid.com"
PAGE_SIZE = 500  # SendGrid's documented maximum for suppression lists


@dataclass(frozen=True)
class _List:
    name: str
    path: str
    kind: ItemKind
    time_field: str
    paged: bool


LISTS = (
    _List("unsubscribes", "/v3/suppression/unsubscribes", ItemKind.UNSUBSCRIBE, "created", True),
    _List("group_unsubscribes", "/v3/asm/suppressions", ItemKind.GROUP_UNSUBSCRIBE, "created_at", False),
    _List("spam_reports", "/v3/suppression/spam_reports", ItemKind.SPAM_REPORT, "created", True),
)


def bearer(api_key: str) -> dict[str, str]:
    """The header a ``ListClient`` for SendGrid sends."""
    return {"Authorization": f"Bearer {api_key}"}


class SendGridBackfill:
    def __init__(self, client: ListClient, *, page_size: int = PAGE_SIZE):
        self.client = client
        self.page_size = page_size

    def pages(self, since: date, resume: Position | None = None) -> Iterator[Page]:
        names = [entry.name for entry in LISTS]
        start = names.index(resume.list) if resume and resume.list in names else 0
        start_time = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp())
        for index in range(start, len(LISTS)):
            entry = LISTS[index]
            offset = _offset(resume.page) if resume and resume.list == entry.name else 0
            following_list = Position(LISTS[index + 1].name) if index + 1 < len(LISTS) else None
            while True:
                position = Position(entry.name, str(offset))
                if entry.paged:
                    rows = self._fetch(entry, {"start_time": start_time, "limit": self.page_size,
                                               "offset": offset})
                    last = len(rows) < self.page_size
                else:
                    rows, last = self._fetch(entry, None), True
                offset += len(rows)
                following = following_list if last else Position(entry.name, str(offset))
                yield Page(position, following, [_item(entry, row, position) for row in rows
                                                 if entry.paged or not _before(entry, row, start_time)])
                if last:
                    break

    def _fetch(self, entry: _List, params: dict | None) -> list:
        answer = self.client.get_json(entry.path, params=params)
        if not isinstance(answer, list):
            raise self.client.bad_page(f"{entry.name} is not a JSON array")
        return answer


def _offset(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _before(entry: _List, row, start_time: int) -> bool:
    """True for an entry known to predate the run's start (the unpaged list is filtered here)."""
    created = row.get(entry.time_field) if isinstance(row, dict) else None
    return isinstance(created, int) and not isinstance(created, bool) and created < start_time


def _item(entry: _List, row, position: Position) -> BackfillItem:
    if not isinstance(row, dict):
        return BackfillItem(content_key(PROVIDER, entry.name, row), entry.kind, position,
                            skipped="not a suppression object")
    created = row.get(entry.time_field)
    email = valid_or_none(normalize_email, row.get("email"))
    group = row.get("group_id") if entry.kind is ItemKind.GROUP_UNSUBSCRIBE else None
    if email is None:
        return BackfillItem(content_key(PROVIDER, entry.name, sorted(row.items())), entry.kind, position,
                            skipped="no valid email address", raw=row)
    key = content_key(PROVIDER, entry.kind, email.lower(), created, group)
    return BackfillItem(key, entry.kind, position, email=email, occurred_at=_time(created), raw=row)


def _time(created) -> datetime | None:
    """SendGrid's unix times; None when absent or not a plausible time."""
    if not isinstance(created, int | float) or isinstance(created, bool):
        return None
    try:
        return datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        return None
