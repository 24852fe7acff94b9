"""Latency benchmark: seconds from a STOP's receipt to its CRM Text call, through real processes.

On a fresh PostgreSQL database it starts the CRM sandbox (answering after ``--latency``, 20 ms),
the web process (gunicorn, the service's default workers) and one worker (woken by LISTEN/NOTIFY,
polling once a second as by default), waits until the worker delivers (20 warm-up STOPs), then sends ``--rate`` signed Twilio STOPs a second (200),
each from its own phone, for ``--seconds`` (60; ``--quick``: 10), on a fixed schedule (open loop:
a late answer does not slow the next send). For each STOP it then takes the ledger's
``received_at`` and the arrival of its ``optoutcustomer`` call at the sandbox (``arrived_at``,
before the sandbox's latency), and prints p50/p95/p99 of the difference; also from the HTTP
answer. A STOP whose call never came counts as infinitely late.

The machine is shared (the client, three services and PostgreSQL on two cores): the figure is a
count of seconds, not a ratio, so the send rate achieved is printed beside it.

Ends with ``GOAL latency-p99 <seconds> 0.5 met|missed`` (issue #16).

    .venv/bin/python bench/latency.py [--quick] [--rate 200] [--seconds 60] [--latency 0.02]
                                      [--concurrency 16] [--connections 32]
"""

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench.goals import goal  # noqa: E402
from bench.ingest import request  # noqa: E402
from tests.e2e.stack import Stack, wait_until  # noqa: E402
from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN, drop_database, fresh_database, twilio_sms  # noqa: E402

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PATH = "/hooks/twilio"
GOAL_P99 = 0.5
WARMUP = 20


def config(sandbox_url: str, concurrency: int) -> str:
    """One hotel with both CRMs; CRM Text's lane runs ``concurrency`` calls at once."""
    return f"""
[service]
public_base_url = "{PUBLIC_BASE_URL}"

[tenants.grand]
experience = {{ base_url = "{sandbox_url}/experience", partner_token = "env:XP_PARTNER_TOKEN", hotel_token = "grand" }}
crmtext = {{ base_url = "{sandbox_url}/crmtext/smapi/rest", user = "grand", password = "env:CRMTEXT_PASSWORD", keyword = "GRAND", concurrency = {concurrency} }}

[sources.twilio]
kind = "twilio"
tenant = "grand"
auth_token = "env:TWILIO_AUTH_TOKEN"
"""


def phone(i: int) -> str:
    return f"+1555{i:07d}"


def signed_stops(count: int) -> list[tuple[bytes, dict]]:
    """``count`` STOPs from distinct phones, signed as Twilio signs them (before the clock starts)."""
    validator, out = RequestValidator(TWILIO_TOKEN), []
    for i in range(count):
        params = twilio_sms(sid=f"SM{i:032x}", body="STOP", phone=phone(i))
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE_URL + PATH, params)}
        out.append((urlencode(params).encode(), headers))
    return out


def send_on_schedule(port: int, stops: list, rate: float, connections: int) -> tuple[dict[int, float], dict, float]:
    """Send stop ``i`` at start + i / rate over ``connections`` keep-alive connections.

    Returns each STOP's answer time (epoch seconds), the status counts, and the seconds it took.
    Bounded: nothing more is sent after twice the planned time (a saturated machine); those STOPs
    stay unsent and out of the figures.
    """
    answered: dict[int, float] = {}
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    stop_at = start + 2 * len(stops) / rate

    def run(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(offset, len(stops), connections):
            if time.monotonic() > stop_at:
                break
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            body, headers = stops[i]
            resp = request(conn, "POST", PATH, body, headers)
            with lock:
                answered[i] = time.time()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered, statuses, time.monotonic() - start


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def show(name: str, values: list[float]) -> dict[int, float]:
    values = sorted(values)
    points = {p: percentile(values, p) for p in (50, 95, 99)}
    print(f"{name:<34}" + "".join(f"{f'p{p}':>6} {v:7.3f} s" for p, v in points.items())
          + f"   max {values[-1]:.3f} s")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60")
    parser.add_argument("--rate", type=float, default=200.0, help="STOPs a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.02, help="the sandbox's answer latency, seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="CRM Text calls at once for the tenant")
    parser.add_argument("--connections", type=int, default=32, help="the client's keep-alive connections")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    count = int(args.rate * seconds)
    stops = signed_stops(count + WARMUP)
    stops, warmup = stops[:count], stops[count:]

    os.environ["DATABASE_URL"] = POSTGRES_URL  # fresh_database: PostgreSQL
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    url = fresh_database(tmp)
    stack = Stack(tmp, url)
    try:
        (tmp / "receiver.toml").write_text(config(stack.sandbox_url, args.concurrency))
        stack.env.pop("WEB_CONCURRENCY")  # the service's own default
        stack.start_sandbox(timeout=120)  # a busy shared machine starts processes slowly
        stack.http.post(f"{stack.sandbox_url}/_sandbox/latency", json={"seconds": args.latency},
                        timeout=5).raise_for_status()
        stack.start_web(timeout=120)
        stack.start_worker()
        # Timed only once the worker delivers: its start on a busy machine takes seconds.
        send_on_schedule(stack.web_port, warmup, 10, 1)
        wait_until(lambda: len(stack.calls("crmtext")) >= WARMUP, timeout=180, interval=0.5, message="the worker")
        answered, statuses, took = send_on_schedule(stack.web_port, stops, args.rate, args.connections)

        def arrived() -> list[dict]:
            return [c for c in stack.calls("crmtext")[WARMUP:] if c["method"] == "optoutcustomer"]
        try:
            wait_until(lambda: len(arrived()) >= len(answered), timeout=60, interval=1, message="every CRM Text call")
        except AssertionError:
            pass  # the missing ones count as infinitely late
        calls = {}
        for call in arrived():
            calls.setdefault(call["phone_number"], datetime.fromisoformat(call["arrived_at"]).timestamp())
        with stack.engine.connect() as conn:
            received = {row.phone: row.received_at.timestamp() for row in conn.execute(
                text("SELECT phone, received_at FROM signals")).all()}
    finally:
        stack.stop()
        drop_database(url)

    from_receipt, from_answer = [], []
    for i in sorted(answered):
        at = calls.get(phone(i)[2:])
        from_receipt.append(at - received[phone(i)] if at is not None and phone(i) in received else float("inf"))
        from_answer.append(at - answered[i] if at is not None and i in answered else float("inf"))
    missing = sum(1 for v in from_receipt if v == float("inf"))
    print(f"\nPostgreSQL; sandbox latency {args.latency * 1000:.0f} ms; CRM Text concurrency {args.concurrency}; "
          f"logs in {tmp}")
    print(f"sent {len(answered)} of {count} STOPs in {took:.1f} s ({len(answered) / took:.0f}/s, "
          f"asked {args.rate:.0f}/s); "
          f"answers {statuses}; stored {len(received)}; CRM Text calls {len(calls)}; missing {missing}")
    points = show("receipt (received_at) -> CRM call", from_receipt)
    show("HTTP answer -> CRM call", from_answer)
    p99 = points[99]
    print(goal("latency-p99", p99, GOAL_P99, higher_is_better=False))


if __name__ == "__main__":
    main()
