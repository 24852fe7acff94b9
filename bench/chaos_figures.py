"""The chaos benchmark's figures, from the senders' acknowledgements and the sandbox's call log.

Throughput is counted in one-second buckets, two ways: opt-outs acknowledged (a STOP is one, a
batch its events) and CRM Text calls made (one per STOP). The bar is the steady load the senders
offer (opt-outs a second, STOPs a second), not a measured pre-fault rate: a service already behind
its load before a fault (a CPU-starved machine) would otherwise set itself a low bar. A fault has
recovered at the first second ``s`` after its end from which both counts' means over ``WINDOW``
seconds are at least 95 % of the load; the held snapshot's figure is its mean ÷ the load.
The medians of the ``BASELINE`` seconds before each fault are printed beside them.
"""

import math
from collections import Counter
from statistics import median

BASELINE = 10
WINDOW = 3
RECOVERED = 0.95


def per_second(times: list[float], start: float, end: float, weights: list[int] | None = None) -> list[float]:
    buckets = [0.0] * max(0, math.ceil(end - start))
    for i, t in enumerate(times):
        k = int(t - start)
        if 0 <= k < len(buckets):
            buckets[k] += weights[i] if weights else 1
    return buckets


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class Series:
    """Throughput per second from ``origin``: acknowledged opt-outs and CRM Text calls."""

    def __init__(self, acks, crmtext_times: list[float], origin: float, end: float, load: tuple[float, float]):
        self.origin, self.load = origin, load  # load: (opt-outs/s, STOPs/s) offered
        self.acked = per_second([a.at for a in acks], origin, end, [len(a.phones) + len(a.emails) for a in acks])
        self.called = per_second(crmtext_times, origin, end)

    def _slice(self, series: list[float], start: float, end: float) -> list[float]:
        return series[max(0, int(start - self.origin)):max(0, int(end - self.origin))]

    def around(self, began: float, ended: float, horizon: float) -> str:
        """Both counts per second from 3 s before a fault to ``horizon`` s after it, for the log."""
        def show(series):
            return " ".join(f"{v:g}" for v in self._slice(series, began - 3, ended + horizon))
        return f"acknowledged/s [{show(self.acked)}]; CRM Text calls/s [{show(self.called)}]"

    def baseline(self, before: float) -> tuple[float, float]:
        return (median(self._slice(self.acked, before - BASELINE, before) or [0.0]),
                median(self._slice(self.called, before - BASELINE, before) or [0.0]))

    def ratio(self, start: float, end: float) -> tuple[float, float]:
        """Mean throughput in [start, end) ÷ the load: acknowledged, called."""
        return (mean(self._slice(self.acked, start, end)) / self.load[0],
                mean(self._slice(self.called, start, end)) / self.load[1])

    def recovery(self, ended: float, horizon: float) -> float:
        """Seconds after ``ended`` until both throughputs hold ≥ 95 % of the load for ``WINDOW``
        seconds; ``horizon`` seconds when they never do within it."""
        for offset in range(int(horizon) - WINDOW + 1):
            start = ended + offset
            if (mean(self._slice(self.acked, start, start + WINDOW)) >= RECOVERED * self.load[0]
                    and mean(self._slice(self.called, start, start + WINDOW)) >= RECOVERED * self.load[1]):
                return float(offset)
        return float(horizon)


def delivery_check(acks, crmtext_calls: list[dict], experience_calls: list[dict]) -> dict:
    """Every acknowledged opt-out against what the sandbox received.

    lost: acknowledged opt-outs a CRM never received (a STOP owes CRM Text and Experience, a
    partner event Experience); duplicate: second and later ``optoutcustomer`` calls for one number;
    experience_repeats: records sent more than once (informational: Experience takes a repeat as
    the same opt-out).
    """
    optouts = Counter(c.get("phone_number") for c in crmtext_calls
                      if c.get("method") == "optoutcustomer" and not c.get("fault"))
    records = Counter()
    for call in experience_calls:
        if call.get("method") == "opt_out" and not call.get("fault"):
            for record in call.get("records") or []:
                records[record.get("phone") or record.get("email")] += 1
    lost_crmtext = lost_experience = lost = 0
    for ack in acks:
        for phone in ack.phones:
            missing = (optouts[phone[2:]] == 0, records[phone] == 0)
            lost_crmtext += missing[0]
            lost_experience += missing[1]
            lost += any(missing)
        for email in ack.emails:
            lost_experience += records[email] == 0
            lost += records[email] == 0
    return {"lost": lost, "lost_crmtext": lost_crmtext, "lost_experience": lost_experience,
            "duplicate": sum(n - 1 for n in optouts.values() if n > 1),
            "experience_repeats": sum(n - 1 for n in records.values() if n > 1),
            "acknowledged": sum(len(a.phones) + len(a.emails) for a in acks)}


def delivery_latency(acks, crmtext_calls: list[dict], start: float, end: float) -> float | None:
    """Median seconds from a STOP's acknowledgement to its CRM Text call, for STOPs acknowledged in [start, end)."""
    first = {}
    for call in crmtext_calls:
        if call.get("method") == "optoutcustomer":
            first.setdefault(call["phone_number"], call["_t"])
    gaps = [first[p[2:]] - a.at for a in acks if start <= a.at < end for p in a.phones if p[2:] in first]
    return median(gaps) if gaps else None
