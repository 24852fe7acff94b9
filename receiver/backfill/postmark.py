"""Postmark's suppressions dump of one message stream.

``GET /message-streams/{stream}/suppressions/dump?fromdate=…&todate=…`` with
``X-Postmark-Server-Token`` answers ``{"Suppressions": [{"EmailAddress", "SuppressionReason",
"Origin", "CreatedAt"}]}``, the whole range in one answer. Pages are therefore windows of
whole days (both dates inclusive), from ``since`` up to tomorrow (Postmark's dates are its own
time zone's, which lags UTC): consecutive windows leave no gap whatever zone Postmark reads them
in. A window whose answer exceeds the byte cap is halved and read again, down to one day.

Reasons: ``ManualSuppression`` is an unsubscribe (a marketing decline), ``SpamComplaint`` follows
the complaint rule, ``HardBounce`` is recorded but is no opt-out; any other reason is skipped.
Dedup key: email + reason + ``CreatedAt``.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from .. import clock
from ..identities import normalize_email, valid_or_none
from .pages import BackfillItem, ItemKind, ListClient, Page, PageTooLarge, Position, content_key

PROVIDER = "postmark"
BASE_URL = "https://api.postmarkapp.com"
LIST = "suppressions"
WINDOW_DAYS = 30
REASONS = {
    "ManualSuppression": ItemKind.UNSUBSCRIBE,
    "SpamComplaint": ItemKind.COMPLAINT,
    "HardBounce": ItemKind.HARD_BOUNCE,
}


def server_token(token: str) -> dict[str, str]:
    """The header a ``ListClient`` for Postmark sends."""
    return {"X-Postmark-Server-Token": token}


class PostmarkBackfill:
    def __init__(self, client: ListClient, stream: str, *, window_days: int = WINDOW_DAYS,
                 today=lambda: datetime.fromtimestamp(clock.now(), UTC).date()):
        self.client = client
        self.stream = stream
        self.window = max(window_days, 1)
        self.today = today

    def pages(self, since: date, resume: Position | None = None) -> Iterator[Page]:
        start = _date(resume.page) if resume and resume.list == LIST else None
        start = start or since
        last = self.today() + timedelta(days=1)
        window = self.window
        while start <= last:
            end = min(start + timedelta(days=window - 1), last)
            try:
                rows = self._fetch(start, end)
            except PageTooLarge:
                if end == start:
                    raise
                window = max(((end - start).days + 1) // 2, 1)  # the same start, half the days
                continue
            position = Position(LIST, start.isoformat())
            start = end + timedelta(days=1)
            following = Position(LIST, start.isoformat()) if start <= last else None
            yield Page(position, following, [_item(row, position) for row in rows])
            window = self.window

    def _fetch(self, start: date, end: date) -> list:
        path = f"/message-streams/{quote(self.stream, safe='')}/suppressions/dump"
        answer = self.client.get_json(path, params={"fromdate": start.isoformat(), "todate": end.isoformat()})
        rows = answer.get("Suppressions") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise self.client.bad_page("no Suppressions list")
        return rows


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _item(row, position: Position) -> BackfillItem:
    if not isinstance(row, dict):
        return BackfillItem(content_key(PROVIDER, row), None, position, skipped="not a suppression object")
    reason, created = row.get("SuppressionReason"), row.get("CreatedAt")
    email = valid_or_none(normalize_email, row.get("EmailAddress"))
    kind = REASONS.get(reason) if isinstance(reason, str) else None
    if email is None or kind is None:
        why = "no valid email address" if email is None else f"unknown suppression reason {str(reason)[:40]!r}"
        return BackfillItem(content_key(PROVIDER, sorted(row.items())), kind, position, email=email,
                            skipped=why, raw=row)
    return BackfillItem(content_key(PROVIDER, email.lower(), reason, created), kind, position,
                        email=email, occurred_at=_time(created), raw=row)


def _time(value) -> datetime | None:
    """Postmark's ISO 8601 times with an offset (``2019-12-17T08:58:33-05:00``)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
