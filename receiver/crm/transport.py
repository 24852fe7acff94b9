"""HTTP for the CRM clients: one total deadline per call, no redirects, answers read up to a cap."""

import json
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProxyError,
)

from .errors import OutcomeUnknown, Permanent, Retryable, hide_url, safe_url
from .inflate import inflated

# After decompression, unless the caller sets its own (each CRM client does). Read whole, a 300 KB
# gzip answer once took a worker from 209 MB to 692 MB.
MAX_ANSWER_BYTES = 1 << 20
_CHUNK = 16384
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS  # zlib detects either header
_in_flight = threading.local()


@dataclass(frozen=True)
class Reply:
    """A CRM's whole answer, read within the deadline and the cap (names as on requests.Response)."""

    status_code: int
    headers: Mapping[str, str]
    url: str
    content: bytes

    @property
    def text(self) -> str:
        charset = get_encoding_from_headers(self.headers) or "utf-8"
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class AnswerTooLarge(OutcomeUnknown):
    """The answer ran past the caller's byte cap (after decompression)."""


def new_session() -> requests.Session:
    """A pooled session whose calls can be cut at their deadline (see ``call``)."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def call(session: requests.Session, method: str, url: str, *, timeout: float,
         headers: Mapping[str, str] | None = None, max_bytes: int = MAX_ANSWER_BYTES, hide_path: bool = False,
         **kw) -> Reply:
    """One request that is over, answered or failed, within ``timeout`` seconds in all.

    requests' own timeout bounds each socket read, so a CRM that drips its answer byte by byte
    could hold a call (and the lease on its delivery) for ever: a watchdog cuts the connection
    at the deadline instead. Redirects are never followed: a 302 would turn a POST into a GET
    whose 2xx looks like success. Every requests failure becomes a CrmError, its words without the
    url's query (nor its path, with ``hide_path``: an alerts hook's token).
    """
    where = hide_url(safe_url(url), url, path_too=hide_path)
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
    with _Watchdog(timeout) as watch:
        try:
            resp = session.request(method, url, timeout=timeout, headers=headers, allow_redirects=False,
                                   stream=True, **kw)
        except requests.RequestException as exc:
            raise _failure(exc, where, watch.cut, watch.sent, hide_url(str(exc), url, path_too=hide_path)) from exc
        try:
            content = _read(resp, where, deadline, watch, max_bytes)
        finally:
            resp.close()
    shown = hide_url(resp.url or url, url, path_too=True) if hide_path else resp.url or url
    reply = Reply(resp.status_code, resp.headers, shown, content)
    if 300 <= reply.status_code < 400:
        location = safe_url(resp.headers.get("Location"))[:200]
        raise Retryable(f"HTTP {reply.status_code} from {where}: redirects are not followed",
                        status=reply.status_code, detail=f"redirect to {location} not followed")
    return reply


def _read(resp: requests.Response, where: str, deadline: float, watch: "_Watchdog", max_bytes: int) -> bytes:
    """The body, decompressed, or OutcomeUnknown when it is too big, too slow, or unreadable."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(_GZIP_OR_ZLIB)
    elif encoding in ("", "identity"):
        inflate = None
    else:
        raise _unknown(resp, f"answer from {where} in an encoding we did not ask for: {encoding[:40]}")
    parts: list[bytes] = []  # joined once whole: no buffer grows as the answer comes
    size = 0
    try:
        while True:
            if not watch.time_left(deadline):
                raise _unknown(resp, f"no complete answer from {where} within the deadline")
            if not (chunk := resp.raw.read1(_CHUNK, decode_content=False)):
                break
            for part in (chunk,) if inflate is None else inflated(inflate, chunk, _CHUNK):
                size += len(part)
                if size > max_bytes:
                    message = f"answer from {where} is over {max_bytes} bytes"
                    raise AnswerTooLarge(message, status=resp.status_code, detail=message)
                parts.append(part)
    except (HTTPError, OSError) as exc:
        if watch.cut or time.monotonic() >= deadline:  # the watchdog, or a read bounded by the time left
            raise _unknown(resp, f"no complete answer from {where} within the deadline") from exc
        raise _unknown(resp, f"answer from {where} broke off ({type(exc).__name__})") from exc
    except zlib.error as exc:
        raise _unknown(resp, f"answer from {where} does not decompress") from exc
    if inflate is not None and not inflate.eof:
        raise _unknown(resp, f"compressed answer from {where} is truncated")
    return b"".join(parts)


def _unknown(resp: requests.Response, message: str) -> OutcomeUnknown:
    # The CRM answered something, so the request reached it: it may have been applied.
    return OutcomeUnknown(message, status=resp.status_code, detail=message)


def _failure(exc: requests.RequestException, where: str, cut: bool, sent: bool, detail: str):
    """The CrmError a requests failure calls for: Retryable only if the CRM cannot have seen it."""
    if isinstance(exc, requests.ConnectTimeout):
        return Retryable(f"connect timeout to {where}", detail=detail)
    if cut:
        return OutcomeUnknown(f"no complete answer from {where} within the deadline", detail=detail)
    if isinstance(exc, requests.ReadTimeout):
        return OutcomeUnknown(f"read timeout from {where}", detail=detail)
    if isinstance(exc, requests.ConnectionError):
        if _before_sending(exc, sent):
            return Retryable(f"cannot connect to {where}", detail=detail)
        return OutcomeUnknown(f"connection lost with {where}", detail=detail)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema | requests.exceptions.InvalidHeader):
        # The request could not even be built: a configuration problem, not a CRM outage.
        return Permanent(f"invalid request to {where}", detail=detail)
    return OutcomeUnknown(f"failed mid-call with {where}", detail=detail)


def _before_sending(exc: requests.ConnectionError, sent: bool) -> bool:
    """True when the connection was never made, so the CRM cannot have seen the request.

    urllib3 wraps failures to connect in MaxRetryError; a reset or a close after the
    request went out comes as ProtocolError instead. An SSLError is raised for a bad
    certificate or handshake, but also for a TLS failure reading the answer to a request
    already sent: only the first kind is before sending.
    """
    if isinstance(exc, requests.exceptions.ProxyError):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return not sent
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        return isinstance(reason.reason, NewConnectionError | ProxyError)
    return False


class _Watchdog:
    """Shuts the call's socket down at the deadline, which wakes any read blocked on it."""

    _POLL = 0.05  # while the connection is still being made (connect has its own timeout)

    def __init__(self, seconds: float):
        self.cut = False
        self.sent = False  # whether any byte of the request may have left
        # The socket itself, not conn.sock: http.client drops conn.sock once the headers of a
        # `Connection: close` answer are read, while the body still comes through this socket.
        self.sock = None
        self._lock = threading.Lock()
        self._over = False
        self._timer = self._start(seconds)

    def _start(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._fire)
        timer.daemon = True
        timer.start()
        return timer

    def __enter__(self) -> "_Watchdog":
        _in_flight.watch = self
        return self

    def __exit__(self, *exc) -> None:
        _in_flight.watch = None
        with self._lock:
            self._over = True
            self._timer.cancel()
            self._timer = self.sock = None  # the timer holds us (_fire): freed now, not at a GC

    def _fire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.cut = True
            if self.sock is None:
                self._timer = self._start(self._POLL)
                return
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def opened(self, sock) -> None:
        """Watch this socket; refuse it (nothing sent yet) when the deadline passed while connecting."""
        with self._lock:
            if self.cut:
                sock.close()
                raise ConnectTimeoutError("the deadline passed while connecting; nothing was sent")
            self.sock = sock

    def time_left(self, deadline: float) -> bool:
        """Bound the next read by the time left, so no single read outlasts the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if self.sock is not None:
            try:
                self.sock.settimeout(left)
            except OSError:
                pass  # already shut down: the read fails at once
        return True


class _WatchedConnection:
    """A connection that hands its socket to the running call's watchdog as soon as it opens."""

    def connect(self):
        super().connect()
        _watch_socket(self.sock)

    def send(self, data):
        if self.sock is None:  # http.client connects on the first send: still nothing sent
            self.connect()
        watch = getattr(_in_flight, "watch", None)
        if watch is not None:
            watch.sent = True
        super().send(data)


def _watch_socket(sock) -> None:
    watch = getattr(_in_flight, "watch", None)
    if watch is not None and sock is not None:
        watch.opened(sock)


class _Watched:
    """A connection pool that tells the running call's watchdog which socket it uses."""

    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        _watch_socket(conn.sock)  # a kept-alive connection is not connected again
        return conn


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
