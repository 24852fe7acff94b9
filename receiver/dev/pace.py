"""The sandbox's pace: answers delayed by a set latency (all, per CRM, per store or hotel), and the
most calls each store or hotel had under way at once, so tests and benchmarks see a worker's lanes.

  POST /_sandbox/latency      {"seconds": 0.1, "crm": "crmtext"?, "account": "GRAND"?} every later
       call to that CRM (or to both) from that account (CRM Text's keyword, Experience's hotel
       token; or any) answers after ``seconds``; the most specific setting wins; 0 removes it.
  GET  /_sandbox/concurrency  {"max": {"crmtext": {"GRAND": 4}, ...}, "now": {...}}: calls under
       way at most and at present, per CRM and account, since the last reset.
"""

import functools
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask, g, jsonify, request

from .answers import basic_keyword


class Pace:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.latency: dict[tuple[str | None, str | None], float] = {}
            self.now: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            self.max: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def delay(self, crm: str, account: str) -> float:
        for key in ((crm, account), (None, account), (crm, None), (None, None)):
            if key in self.latency:
                return self.latency[key]
        return 0.0

    def serves(self, crm: str):
        """A view decorator: the view answers one call to ``crm``, paced."""
        def decorate(view):
            @functools.wraps(view)
            def paced(*args, **kwargs):
                with self.call(crm):
                    return view(*args, **kwargs)
            return paced
        return decorate

    @contextmanager
    def call(self, crm: str):
        """Count the call as under way while it is served, after waiting the latency set for it.

        The call's arrival (``g.arrived_at``, before that wait) is what the call log keeps as
        ``arrived_at``: bench/latency.py measures a STOP's way to the CRM up to that instant.
        """
        g.arrived_at = datetime.now(UTC).isoformat()
        account = _account(crm)
        with self.lock:
            self.now[crm][account] += 1
            self.max[crm][account] = max(self.max[crm][account], self.now[crm][account])
            delay = self.delay(crm, account)
        try:
            if delay:
                time.sleep(delay)
            yield
        finally:
            with self.lock:
                self.now[crm][account] -= 1


def _account(crm: str) -> str:
    authorization = request.headers.get("Authorization", "")
    if crm == "crmtext":
        return basic_keyword(authorization) or ""
    return authorization.rpartition(":")[2]  # Experience: "Bearer <partner>:<hotel>"


def register(app: Flask, pace: Pace, crms: tuple[str, ...]) -> None:
    @app.post("/_sandbox/latency")
    def set_latency():
        spec = request.get_json(silent=True)
        spec = spec if isinstance(spec, dict) else {}
        seconds, crm, account = spec.get("seconds"), spec.get("crm"), spec.get("account")
        if (not isinstance(seconds, int | float) or not 0 <= seconds <= 60 or crm not in (None, *crms)
                or not isinstance(account, str | None)):
            return jsonify({"error": f"seconds is a number from 0 to 60, crm in {crms} or absent, account a string"}), 400
        with pace.lock:
            if seconds:
                pace.latency[(crm, account)] = float(seconds)
            else:
                pace.latency.pop((crm, account), None)
        return jsonify({"seconds": seconds, "crm": crm, "account": account})

    @app.get("/_sandbox/concurrency")
    def concurrency():
        with pace.lock:
            return jsonify({"max": {crm: dict(v) for crm, v in pace.max.items()},
                            "now": {crm: dict(v) for crm, v in pace.now.items()}})
