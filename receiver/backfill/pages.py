"""The shared piece of every backfill: GET one list page (capped, retried), and the items it yields.

A provider module (``twilio``, ``sendgrid``, ``mailgun``, ``postmark``, ``experience``) knows only its wire
format: which lists to read, how one page names the next, and what each entry means. It asks a
``ListClient`` for each page and turns the answer into ``BackfillItem``\\ s, one ``Page`` at a
time, so however long a list is only one page is ever held in memory.

- A page is one GET with a total deadline and a cap on the answer's bytes; redirects are never
  followed (a list API that redirects is misconfigured, and following would carry the
  credentials elsewhere), and a next-page link on another host is refused for the same reason.
- 408, 429 and 5xx, timeouts and connection failures are retried like deliveries (``backoff_seconds``
  with jitter, ``Retry-After`` honoured): a read is safe to repeat. 401 and 403 raise
  ``CredentialsRefused``; an answer that is not JSON of the documented shape raises ``BadPage``;
  neither is retried: the source stops there and the next run resumes at that page.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from ..crm.errors import Permanent, Retryable, backoff_seconds, parse_retry_after
from ..crm.transport import AnswerTooLarge, call, new_session

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 4 * 1024 * 1024
RETRIED_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class ItemKind(StrEnum):
    """What a list entry says about its guest."""

    UNSUBSCRIBE = "unsubscribe"  # a global unsubscribe, or Postmark's ManualSuppression
    GROUP_UNSUBSCRIBE = "group_unsubscribe"  # SendGrid: unsubscribed from one group
    SPAM_REPORT = "spam_report"  # SendGrid: follows the complaint rule
    COMPLAINT = "complaint"  # Mailgun, Postmark SpamComplaint: the complaint rule
    HARD_BOUNCE = "hard_bounce"  # Postmark HardBounce suppression: recorded, never an opt-out
    INBOUND_SMS = "inbound_sms"  # Twilio: classified by the keyword rules, as a webhook body is

    @property
    def is_opt_out(self) -> bool | None:
        """True for list entries that are opt-outs; False for bounces; None when the text decides."""
        if self is ItemKind.INBOUND_SMS:
            return None
        return self is not ItemKind.HARD_BOUNCE


@dataclass(frozen=True)
class Position:
    """Where a read stands: which of the provider's lists, and its page there (a URI, an offset, a date)."""

    list: str
    page: str = ""

    def __str__(self) -> str:
        return f"{self.list} {self.page}".rstrip()

    @classmethod
    def parse(cls, text: str | None) -> "Position | None":
        if not text:
            return None
        name, _, page = text.strip().partition(" ")
        return cls(name, page)


@dataclass(frozen=True)
class BackfillItem:
    """One list entry: who (email or phone), what (``kind``, ``body``), when, and its dedup key.

    ``skipped`` names why an entry cannot be recorded as a signal (no address, an unknown reason);
    it is still yielded so the run can count it and the audit trail can show it. ``raw`` is the
    provider's entry as read (the evidence); ``position`` is the page it came from.
    """

    key: str
    kind: ItemKind | None
    position: Position
    email: str | None = None
    phone: str | None = None
    body: str | None = None
    occurred_at: datetime | None = None
    skipped: str | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)


Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(Generic[Item]):
    """One page's items; ``next`` is where to resume once they are recorded (None: every list is done).

    The senders' providers yield ``BackfillItem``\\ s; Experience yields its recipients as read, since
    one recipient carries several states (``sources/experience_sync.py`` reads them).
    """

    position: Position
    next: Position | None
    items: list[Item]


class BackfillError(Exception):
    """A list could not be read; the message names the provider and is safe to log (no query string)."""

    def __init__(self, message: str, *, provider: str, status: int | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status


class CredentialsRefused(BackfillError):
    """401 or 403: the configured credentials are wrong or lack the permission; retrying will not help."""


class BadPage(BackfillError):
    """An answer that is not the documented page: not JSON, the wrong shape, too large, a redirect."""


class PageTooLarge(BadPage):
    """The answer exceeded the byte cap (a provider without paging may ask for a narrower window)."""


class Unavailable(BackfillError):
    """The provider kept failing (timeouts, 429, 5xx) until the attempts were used up."""


@dataclass(frozen=True)
class RetryPolicy:
    """The deliveries' schedule (``[worker]`` ``max_attempts``, ``backoff_*``), reused for reads."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0


class ListClient:
    """GETs one provider's list pages through one pooled session; answers parsed JSON or raises."""

    def __init__(self, provider: str, base_url: str, *, auth: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None, deadline: float = 60.0,
                 max_bytes: int = MAX_PAGE_BYTES, retry: RetryPolicy = RetryPolicy(),
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.retry = retry
        self.sleep = sleep
        self.session = session or new_session()
        self._auth = auth
        self._headers = {"Accept": "application/json", **(headers or {})}

    def get_json(self, target: str, params: dict[str, Any] | None = None) -> Any:
        """One page at ``target`` (a path, or a link the provider gave), retried; its parsed JSON."""
        url = self.url(target)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(url, params)
            except _Retry as exc:
                if attempt >= self.retry.max_attempts:
                    raise Unavailable(f"{self.provider}: {exc.reason}, gave up after {attempt} attempts",
                                      provider=self.provider, status=exc.status) from None
                delay = backoff_seconds(self.retry.base_seconds, self.retry.max_seconds, attempt,
                                        exc.retry_after)
                log.info("backfill %s: %s; retrying in %.1fs (attempt %d of %d)", self.provider,
                         exc.reason, delay, attempt, self.retry.max_attempts)
                self.sleep(delay)

    def url(self, target: str) -> str:
        """``target`` on our base URL: a path is appended; a full link must name the provider's host.

        A link's scheme and port are replaced by ours (a proxy in front may rewrite https as http).
        """
        base = urlsplit(self.base_url)
        if not target.startswith(("http://", "https://")):
            return urljoin(self.base_url + "/", target.lstrip("/")) if target else self.base_url
        link = urlsplit(target)
        if link.hostname != base.hostname:
            raise BadPage(f"{self.provider}: next-page link points to another host ({link.hostname})",
                          provider=self.provider)
        return urlunsplit((base.scheme, base.netloc, link.path, link.query, ""))

    def bad_page(self, what: str) -> BadPage:
        """The error for an answer whose shape is not the documented one."""
        return BadPage(f"{self.provider}: unexpected answer: {what}", provider=self.provider)

    def _get_once(self, url: str, params: dict[str, Any] | None) -> Any:
        try:
            resp = call(self.session, "GET", url, timeout=self.deadline, params=params, auth=self._auth,
                        headers=self._headers, max_bytes=self.max_bytes)
        except AnswerTooLarge:
            raise PageTooLarge(f"{self.provider}: answer exceeds {self.max_bytes} bytes",
                               provider=self.provider) from None
        except Permanent as exc:  # the request cannot even be built: a setting to fix, not an outage
            raise BackfillError(f"{self.provider}: {exc}", provider=self.provider) from None
        except Retryable as exc:
            if exc.status is not None and 300 <= exc.status < 400:
                raise BadPage(f"{self.provider}: HTTP {exc.status} redirect not followed (check base_url)",
                              provider=self.provider, status=exc.status) from None
            raise _Retry(str(exc)) from None
        status = resp.status_code
        if status in (401, 403):
            raise CredentialsRefused(f"{self.provider}: credentials refused (HTTP {status})",
                                     provider=self.provider, status=status)
        if status in RETRIED_STATUSES:
            raise _Retry(f"HTTP {status}", status=status,
                         retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if not 200 <= status < 300:
            raise BadPage(f"{self.provider}: HTTP {status} from {_where(url)}",
                          provider=self.provider, status=status)
        try:
            return json.loads(resp.content)
        except ValueError:
            raise self.bad_page(f"not JSON (HTTP {status}, {len(resp.content)} bytes)") from None


class _Retry(Exception):
    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def _where(url: str) -> str:
    """Scheme, host and path only: query strings carry phone numbers (Twilio's ``To``)."""
    return url.split("?", 1)[0]


def content_key(*parts: Any) -> str:
    """A dedup key from an entry's parts, hashed so that addresses stay out of keys and logs."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return "bf_" + hashlib.sha256(text.encode()).hexdigest()[:40]


def flatten(pages: Iterator[Page]) -> Iterator[BackfillItem]:
    """Every item of every page, in order: the next page is fetched only once these are consumed."""
    for page in pages:
        yield from page.items


def rfc2822_time(value) -> datetime | None:
    """An RFC 2822 date as Twilio and Mailgun write them (``Fri, 04 Sep 2015 22:54:41 +0000``), in UTC
    when it names no zone; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
