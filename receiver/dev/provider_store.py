"""The fake providers' memory: credentials, seeded list items, pending faults, and the page slices each list API reads.

Items are kept compact and sorted when seeded; a page is a slice found by bisect (a time or an
address range) or a short scan from a page token, so a list of 100,000 costs a request only its
own page. Twilio texts are kept as tuples: the wire object is built only for the page showing it.
"""

import bisect
import hmac
import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import NamedTuple

PROVIDERS = ("twilio", "sendgrid", "mailgun", "postmark")
POSTMARK_ZONE = timezone(timedelta(hours=-5))  # the offset Postmark's documented CreatedAt values carry
DEFAULT_CREDENTIALS = {
    "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "sandbox-twilio-token"},
    "sendgrid": {"api_key": "SG.sandbox-key"},
    "mailgun": {"api_key": "sandbox-mailgun-key", "domain": "mg.example.com"},
    "postmark": {"server_token": "sandbox-postmark-token"},
}
SENDGRID_LISTS = {"unsubscribes", "spam_reports", "group_unsubscribes"}
MAILGUN_LISTS = {"unsubscribes", "complaints"}


class Text(NamedTuple):
    """One Twilio message, compact: the wire object is built only for the page that shows it."""

    sid: str
    day: date
    sent: str
    sender: str
    to: str
    body: str
    direction: str
    status: str


class ProviderStore:
    """What the fake providers hold; every method takes the lock, so the threaded server may share it."""

    def __init__(self, credentials: dict | None = None):
        self.lock = threading.Lock()
        self.reset(credentials)

    def reset(self, credentials: dict | None = None) -> None:
        with self.lock:
            self.credentials = {name: dict(values) for name, values in DEFAULT_CREDENTIALS.items()}
            self.texts: list[Text] = []
            self.text_index: dict[str, int] = {}
            self.sendgrid: dict[str, list[dict]] = {name: [] for name in SENDGRID_LISTS}
            self.mailgun: dict[str, list[dict]] = {name: [] for name in MAILGUN_LISTS}
            self.postmark: dict[str, list[dict]] = {"outbound": [], "broadcast": []}  # every server's default streams
            self.faults: dict[str, deque] = {name: deque() for name in PROVIDERS}
            self.requests: Counter = Counter()
            self._sids = itertools.count(1)
        self.set_credentials(credentials or {})

    def set_credentials(self, credentials: dict) -> None:
        with self.lock:
            for name, values in credentials.items():
                if name not in PROVIDERS or not isinstance(values, dict):
                    raise ValueError(f"credentials.{name}: not a provider's object")
                self.credentials[name].update({k: str(v) for k, v in values.items()})

    def add_texts(self, messages) -> int:
        new = [self._text(m) for m in messages]
        with self.lock:
            for text in new:
                self.text_index[text.sid] = len(self.texts)
                self.texts.append(text)
        return len(new)

    def _text(self, m: dict) -> Text:
        when = _when(m.get("date_sent"), "date_sent").astimezone(UTC)
        sid = str(m.get("sid") or f"SM{next(self._sids):032x}")
        return Text(sid, when.date(), format_datetime(when), _need(m, "from"), _need(m, "to"), str(m.get("body", "")),
                    str(m.get("direction", "inbound")), str(m.get("status", "received")))

    def add_sendgrid(self, name: str, rows) -> int:
        time_field = "created_at" if name == "group_unsubscribes" else "created"
        new = []
        for row in rows:
            item = {"email": _need(row, "email"), time_field: int(_when(row.get(time_field), time_field).timestamp())}
            if name == "group_unsubscribes":
                item.update(group_id=int(row.get("group_id", 1)), group_name=str(row.get("group_name", "Newsletter")))
            elif name == "spam_reports":
                item["ip"] = str(row.get("ip", "10.63.202.100"))
            new.append(item)
        with self.lock:
            self.sendgrid[name] = sorted(self.sendgrid[name] + new, key=lambda r: r[time_field])
        return len(new)

    def add_mailgun(self, name: str, rows) -> int:
        new = {}
        for row in rows:
            when = _when(row.get("created_at"), "created_at").astimezone(UTC)
            item = {"address": _need(row, "address"), "created_at": when.strftime("%a, %d %b %Y %H:%M:%S UTC")}
            if name == "unsubscribes":
                item["tags"] = list(row.get("tags") or ["*"])
            new[item["address"]] = item
        with self.lock:  # Mailgun keeps one entry per address, listed in address order
            merged = {r["address"]: r for r in self.mailgun[name]} | new
            self.mailgun[name] = sorted(merged.values(), key=_address)
        return len(new)

    def add_postmark(self, stream: str, rows) -> int:
        new = [{"EmailAddress": _need(row, "email"), "SuppressionReason": str(row.get("reason", "ManualSuppression")),
                "Origin": str(row.get("origin", "Recipient")),
                "CreatedAt": _when(row.get("created_at"), "created_at").astimezone(POSTMARK_ZONE).isoformat()}
               for row in rows]
        with self.lock:
            self.postmark[stream] = sorted(self.postmark.get(stream, []) + new, key=_created_at)
        return len(new)

    def add_fault(self, provider: str, mode: str, count: int = 1, retry_after: int = 1) -> None:
        if provider not in PROVIDERS or mode not in ("429", "500", "garbage"):
            raise ValueError("provider or mode: unknown (modes: 429, 500, garbage)")
        with self.lock:
            self.faults[provider].append({"mode": mode, "count": max(int(count), 1), "retry_after": int(retry_after)})

    def take_fault(self, provider: str, *, consume: bool = True) -> dict | None:
        """Count a request; the pending fault it meets, if any (``consume=False``: count only)."""
        with self.lock:
            self.requests[provider] += 1
            queue = self.faults[provider]
            if not queue or not consume:
                return None
            fault = queue[0]
            fault["count"] -= 1
            if fault["count"] <= 0:
                queue.popleft()
            return fault

    def texts_page(self, keep: Callable[[Text], bool], token: str, size: int) -> tuple[list[Text], bool]:
        """Up to ``size`` texts ``keep`` accepts, newest added first: after ``PA<sid>``, before ``PB<sid>``
        (Twilio's page tokens), or from the newest; and whether more follow the page."""
        with self.lock:
            texts, at = self.texts, self.text_index.get(token[2:])
            backwards = token.startswith("PB") and at is not None
            start = (at + 1 if backwards else at - 1) if at is not None else len(texts) - 1
            found, i = [], start
            while 0 <= i < len(texts) and len(found) <= size:  # one more than a page: is there a next?
                if keep(texts[i]):
                    found.append(texts[i])
                i += 1 if backwards else -1
        if backwards:
            return found[:size][::-1], bool(found)
        return found[:size], len(found) > size

    def sendgrid_page(self, name: str, start: int, end: int, offset: int, limit: int) -> list[dict]:
        """Entries created within ``start..end`` (unix, inclusive), oldest first, ``offset`` and ``limit`` applied."""
        with self.lock:
            rows = self.sendgrid[name]
            low = bisect.bisect_left(rows, start, key=_created)
            high = bisect.bisect_right(rows, end, key=_created)
            return rows[low + offset:min(low + offset + limit, high)]

    def sendgrid_groups(self) -> list[dict]:
        with self.lock:
            return self.sendgrid["group_unsubscribes"]

    def mailgun_page(self, name: str, which: str, address: str, limit: int) -> list[dict]:
        """Mailgun's pages in address order: first, last, or next after / previous before ``address``."""
        with self.lock:
            rows = self.mailgun[name]
            if which == "next":
                at = bisect.bisect_right(rows, address, key=_address)
                return rows[at:at + limit]
            if which == "previous":
                at = bisect.bisect_left(rows, address, key=_address)
                return rows[max(at - limit, 0):at]
            return rows[-limit:] if which == "last" else rows[:limit]

    def postmark_dump(self, stream: str, first: date, last: date, email: str) -> list[dict] | None:
        """Suppressions created on days ``first..last`` (inclusive, Postmark's zone); None: no such stream."""
        with self.lock:
            rows = self.postmark.get(stream)
            if rows is None:
                return None
            # every CreatedAt carries the same offset, so its text sorts as its time does
            low = bisect.bisect_left(rows, first.isoformat(), key=_created_at)
            high = bisect.bisect_left(rows, (last + timedelta(days=1)).isoformat(), key=_created_at)
            return [r for r in rows[low:high] if not email or r["EmailAddress"].lower() == email.lower()]

    def summary(self) -> dict:
        with self.lock:
            return {"twilio": {"messages": len(self.texts)},
                    "sendgrid": {name: len(rows) for name, rows in self.sendgrid.items()},
                    "mailgun": {name: len(rows) for name, rows in self.mailgun.items()},
                    "postmark": {name: len(rows) for name, rows in self.postmark.items()},
                    "requests": dict(self.requests)}


def _created(row: dict):
    return row["created"]


def _address(row: dict):
    return row["address"]


def _created_at(row: dict):
    return row["CreatedAt"]


def same(given: str | None, expected: str) -> bool:
    """A constant-time comparison of a presented credential."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _need(row: dict, field: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: required")
    return value


def _when(value, field: str) -> datetime:
    """A seeded time: a datetime, unix seconds, ISO 8601 or RFC 2822 text, or now; naive times are UTC."""
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        raise ValueError(f"{field}: not a time (ISO 8601, RFC 2822 or unix seconds)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
