"""What a CRM's delivery protocol is handed and what it reports: outcomes, reports, the ledger's books.

A protocol (``crmtext.CrmTextDelivery``, ``experience.ExperienceDelivery``) serves one lane, one
CRM account of one tenant. ``deliver(unit, books)`` makes one call for a unit of rows and returns
its ``Report``s (possibly none); the worker records them once the lane's call slot is free again.
It reaches the ledger only through ``Books``; storage stays in ``ledger/leases.py``.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from .errors import CrmError, OutcomeUnknown, Permanent


class Outcome(StrEnum):
    """What one CRM attempt came to (``attempts.outcome``); STARTED is written before the call."""

    STARTED = "started"
    OK = "ok"
    ALREADY = "already"  # the CRM had it already: done, no second call
    RETRY = "retry"
    UNKNOWN = "unknown"  # the call may have been applied: check before calling again
    PERMANENT = "permanent"

    @classmethod
    def of(cls, error: CrmError) -> "Outcome":
        """The outcome of a call that failed with ``error``."""
        if isinstance(error, Permanent):
            return cls.PERMANENT
        return cls.UNKNOWN if isinstance(error, OutcomeUnknown) else cls.RETRY


@dataclass
class Report:
    """One delivery's attempt, for the ledger to finish: done, retried later, or dead."""

    row: Any  # a claimed ``deliveries`` row
    outcome: Outcome
    error: CrmError | None = None  # set when the CRM failed the call: the rest of the batch waits
    detail: str | None = None
    http_status: int | None = None
    attempt_id: int | None = None  # the STARTED attempt written before the call, if any
    started: datetime | None = None
    not_before: datetime | None = None  # no retry before this (an unknown call's settling time)

    def __post_init__(self):
        if self.error is not None:  # the attempt keeps the CRM's own answer
            self.detail, self.http_status = self.error.detail, self.error.status
            drop_tracebacks(self.error)


def drop_tracebacks(error: BaseException) -> None:
    """Forget where ``error`` and the exceptions it chains were raised, keeping what they say.

    A traceback keeps its frames, and each frame its caller's (``f_back``): a report holding its
    error's traceback is reachable from the worker's frame that holds the report. That cycle is
    freed only by a full garbage collection, and until then it kept the call's answer as read
    (up to the cap), its response and its socket: a worker facing a gzip-bomb CRM grew by tens
    of MB (bench/hostile.py). Without tracebacks, all of it goes when the report does.
    """
    pending, seen = [error], set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        pending += [exc.__cause__, exc.__context__]


class Started(NamedTuple):
    """What ``Books.start`` found: the STARTED attempt it wrote, on the database's clock; or, asked
    to start unless the row had such attempts, those it had (``attempt_id`` None: nothing written)."""

    attempt_id: int | None
    at: datetime
    earlier: tuple = ()


class Books(Protocol):
    """What a protocol may ask of the ledger about the rows it was handed (``ledger.leases.Leases``)."""

    def now(self) -> datetime:
        """The database's clock (not this host's), the one leases and attempts' start times are written on."""

    def renew(self, rows: list) -> list:
        """Extend the lease on ``rows``; returns those still ours and still owed (trimmed to what they owe)."""

    def start(self, row, unless: tuple[Outcome, ...] = ()) -> Started | None:
        """Renew ``row`` and write its attempt as STARTED, just before the call, in one transaction;
        None when it is not ours or owed no more. With ``unless``, when the row has earlier attempts
        with those outcomes nothing is written: they are returned (``Started.earlier``)."""

    def postpone(self, rows: list, until: datetime, why: str) -> None:
        """Hand ``rows`` back until ``until`` without counting an attempt."""


class LaneDelivery(Protocol):
    """One lane's delivery protocol: its CRM's client and the rules of calling it.

    The worker hands it units of at most ``unit`` rows, up to ``concurrency`` units at once (each
    in its own thread, a row in one unit only), starting at most ``max_per_second`` units a second.
    """

    unit: int
    concurrency: int
    max_per_second: float | None

    def deliver(self, unit: list, books: Books) -> list[Report]:
        """Deliver ``unit`` (at most ``unit`` rows of this lane) in one call; the reports of its rows."""
