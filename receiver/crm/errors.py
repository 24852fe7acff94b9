"""CRM failures, classified once: retry, retry after checking whether it happened, or give up."""

import math
import random
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from .. import clock

MAX_DETAIL = 500
MAX_RETRY_AFTER = 3600.0


class CrmError(Exception):
    """A CRM call that did not succeed; ``detail`` is kept short for the dead-letter record."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail[:MAX_DETAIL]
        self.retry_after = retry_after


class Retryable(CrmError):
    """Try again later (timeouts, connection errors, 408, 429, 5xx, 3xx, unparseable answers)."""


class OutcomeUnknown(Retryable):
    """The request may have reached the CRM: check before calling again if a repeat is harmful."""


class Permanent(CrmError):
    """The CRM refused the request; sending it again will not help."""


def backoff_seconds(base: float, cap: float, attempts: int, retry_after: float | None = None) -> float:
    """How long to wait after ``attempts`` failures: base·2ⁿ⁻¹ capped, with jitter, never before Retry-After.

    The jitter (×0.5–1) spreads the retries of calls that failed together.
    """
    delay = min(cap, base * 2 ** max(attempts - 1, 0)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after) if retry_after else delay


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), capped at an hour."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was omitted
            return None
        seconds = when.timestamp() - (clock.now() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def status_error(status: int, message: str, *, detail: str = "",
                 retry_after: float | None = None) -> CrmError:
    """The error class a failure status calls for, shared by HTTP and CRM Text's XML status."""
    if status == 504:
        # A gateway timed out waiting for the CRM, which may still have done the work.
        cls: type[CrmError] = OutcomeUnknown
    elif status in (408, 429) or status >= 500 or status < 400:
        cls = Retryable
    else:
        cls = Permanent
    return cls(message, status=status, detail=detail, retry_after=retry_after)


def check_response(resp) -> None:
    """Raise the right CrmError unless the HTTP status is 2xx."""
    if 200 <= resp.status_code < 300:
        return
    raise status_error(
        resp.status_code,
        f"HTTP {resp.status_code} from {safe_url(resp.url)}",
        detail=_text(resp),
        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
    )


def safe_url(url: str | None) -> str:
    """Scheme, host and path only: query strings may carry personal data."""
    return (url or "").split("?", 1)[0]


def hide_url(text: str, url: str, path_too: bool = False) -> str:
    """``text`` (an error's words) without ``url``'s query, nor its path when ``path_too``, shown
    as ``/…``: a query may carry personal data, an ops hook's path its token."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    if path_too and len(parts.path) > 1:
        return text.replace(parts.path + query, "/…").replace(parts.path, "/…")
    return text.replace(query, "") if query else text


def _text(resp) -> str:
    try:
        return resp.text[:MAX_DETAIL]
    except (UnicodeError, LookupError):
        return repr(resp.content[:MAX_DETAIL])
