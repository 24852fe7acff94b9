"""Look-up and ingest at production size: /v1/consent and signed STOPs against a 10-million-signal ledger.

Two fresh PostgreSQL databases side by side: one filled with 10,000,000 signals and what they left
behind (receipts, states, done deliveries, met clocks; bench/fill.py: generated inside PostgreSQL,
the migrations' own keys and indexes), one empty. The real web process (gunicorn, the service's
defaults) runs on each at once.

  - lookup: GET /v1/consent for random identities of the full ledger, nine in ten known, one in
    ten unknown, first over 1 keep-alive connection (the p99 of that is the goal: a sender asks
    before each send), then over 32; req/s, p50, p99.
  - ingest: the same signed Twilio STOPs from new numbers to both (each is new to each ledger),
    over 32 connections, in rounds alternating which ledger goes first so the machine's noise
    falls on both; the goal is the full ledger's req/s ÷ the empty one's.
  - export: GET /v1/export.csv of the full ledger streamed whole; rows, MB, seconds, peak RSS
    (about 10 minutes at 10M signals on 2 shared cores: --no-export skips it).

Both databases are dropped at the end. Fill time is printed (it is not a goal): about 35 minutes
and 22 GB at 10M signals. To look at query plans at that size, --keep leaves both databases and
prints their URLs; --full-url URL then measures again on the kept full ledger without a new fill.

    .venv/bin/python bench/lookup.py [--signals 10000000] [--lookups 5000] [--single 2000]
                                     [--stops 3000] [--rounds 4] [--concurrency 32] [--no-export]
                                     [--keep] [--full-url URL]
"""

import argparse
import http.client
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twilio.request_validator import RequestValidator  # noqa: E402

from bench.fill import fill, identity, sizes  # noqa: E402
from bench.goals import goal  # noqa: E402
from bench.ingest import PATH, POSTGRES_URL, send_all, start_gunicorn, stop  # noqa: E402
from tests.e2e.stack import free_port  # noqa: E402
from tests.helpers import (  # noqa: E402
    PUBLIC_BASE_URL,
    TWILIO_TOKEN,
    base_env,
    config_toml,
    drop_database,
    fresh_database,
    twilio_sms,
)

TOKEN = "bench-admin-token"
WARMUP = 200
LOOKUP_P99_MS, INGEST_RATIO = 5.0, 0.9


def pct(latencies: list[float], p: float) -> float:
    """The ``p``th percentile of sorted ``latencies`` (seconds), in ms."""
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000




def stops(count: int) -> list[tuple]:
    """``count`` signed STOPs from numbers no filled signal has (``+17..``: the fill's are ``+16..``),
    a random block of them per run, so a run on a kept ledger (--full-url) sends new numbers too."""
    validator, salt, block, out = RequestValidator(TWILIO_TOKEN), secrets.token_hex(4), secrets.randbelow(100), []
    for i in range(count):
        params = twilio_sms(sid=f"SM{salt}{i:024x}", body="STOP", phone=f"+17{block:02d}{i:07d}")
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE_URL + PATH, params)}
        out.append(("POST", PATH, urlencode(params).encode(), headers))
    return out


def lookups(signals: int, count: int, rng: random.Random) -> list[tuple]:
    """GET /v1/consent for random identities: nine in ten of the ledger, one in ten unknown to it."""
    out = []
    for _ in range(count):
        n = rng.randint(1, signals) if rng.random() < 0.9 else signals + 1 + rng.randrange(10**6)
        who = identity(n)
        path = f"/v1/consent?tenant=grand&{'email' if '@' in who else 'phone'}={quote(who)}"
        out.append(("GET", path, None, {"Authorization": f"Bearer {TOKEN}"}))
    return out


def measure_lookups(port: int, signals: int, requests: int, single: int, concurrency: int) -> float:
    """Print the look-up figures; the p99 in ms over one connection."""
    rng = random.Random(7)
    send_all(port, lookups(signals, WARMUP, rng), concurrency)
    print("GET /v1/consent on the full ledger:")
    p99 = None
    for conns, count in ((1, single), (concurrency, requests)):
        elapsed, lat, statuses = send_all(port, lookups(signals, count, rng), conns)
        print(f"  {conns:>2} connection(s), {count} requests: {count / elapsed:.0f} req/s, "
              f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, statuses {statuses}")
        p99 = pct(lat, 99) if p99 is None else p99
    return p99


def measure_ingest(ports: dict[str, int], count: int, rounds: int, concurrency: int) -> float:
    """The same STOPs to each ledger in alternating rounds; print req/s each; full ÷ empty."""
    reqs = stops(WARMUP + count)
    for port in ports.values():
        send_all(port, reqs[:WARMUP], concurrency)
    elapsed, latencies, bad = {name: 0.0 for name in ports}, {name: [] for name in ports}, {}
    per_round = -(-count // rounds)
    for r in range(rounds):
        chunk = reqs[WARMUP + r * per_round:WARMUP + (r + 1) * per_round]
        for name in (list(ports) if r % 2 == 0 else list(reversed(ports))):
            seconds, lat, statuses = send_all(ports[name], chunk, concurrency)
            elapsed[name] += seconds
            latencies[name] += lat
            for code, n in statuses.items():
                if code != 200:
                    bad[(name, code)] = bad.get((name, code), 0) + n
    print(f"signed Twilio STOPs, {count} to each ledger in {rounds} alternating rounds, {concurrency} connections:")
    for name in ports:
        lat = sorted(latencies[name])
        print(f"  {name:<6} ledger: {count / elapsed[name]:.0f} req/s, p50 {pct(lat, 50):.1f} ms, "
              f"p99 {pct(lat, 99):.1f} ms")
    if bad:
        print(f"  non-200 answers: {bad}")
    return elapsed["empty"] / elapsed["full"] if not bad else 0.0


def peak_rss_mb(master_pid: int) -> float:
    """The largest peak resident size (VmHWM) among gunicorn's worker processes, in MB."""
    peaks = []
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def export(port: int, master_pid: int) -> None:
    """Stream /v1/export.csv whole: rows, MB, seconds, and the workers' peak memory before and after."""
    before = peak_rss_mb(master_pid)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    start = time.perf_counter()
    conn.request("GET", "/v1/export.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    size = lines = 0
    while chunk := resp.read(1 << 16):
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    print(f"GET /v1/export.csv: {lines - 1:,} rows, {size / 1e6:.0f} MB in {elapsed:.1f} s; workers' peak RSS "
          f"{before:.0f} MB before, {peak_rss_mb(master_pid):.0f} MB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=10_000_000, help="signals in the full ledger")
    parser.add_argument("--lookups", type=int, default=5000, help="look-ups over --concurrency connections")
    parser.add_argument("--single", type=int, default=2000, help="look-ups over 1 connection (the goal's p99)")
    parser.add_argument("--stops", type=int, default=3000, help="signed STOPs sent to each ledger")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-export", action="store_true", help="skip streaming the export")
    parser.add_argument("--keep", action="store_true", help="keep both databases (to look at plans); print their URLs")
    parser.add_argument("--full-url", help="a ledger a --keep run filled with --signals signals: no fill")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = POSTGRES_URL
    tmp = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    urls, processes = {}, {}
    try:
        urls["full"] = args.full_url or fresh_database(tmp)
        urls["empty"] = fresh_database(tmp)
        if not args.full_url:
            print(f"filling {args.signals:,} signals (free on {ROOT}: {shutil.disk_usage(ROOT).free / 1e9:.0f} GB)")
            print(f"filled in {fill(urls['full'], args.signals):.0f} s")
        found = sizes(urls["full"])
        print("full ledger: " + ", ".join(f"{table} {rows:,}" for table, (rows, _) in found.items())
              + f" rows; {sum(size for _, size in found.values()) / 1e9:.1f} GB with indexes")
        config = tmp / "receiver.toml"
        config.write_text(config_toml())
        ports = {}
        for name, url in urls.items():
            ports[name] = free_port()
            env = {**os.environ, **base_env(url, config), "RECEIVER_ADMIN_TOKEN": TOKEN, "PORT": str(ports[name]),
                   "PYTHONUNBUFFERED": "1"}
            processes[name] = start_gunicorn(["wsgi:app"], env, ports[name], tmp / f"web-{name}.log")
        print(f"(logs in {tmp})")
        p99 = measure_lookups(ports["full"], args.signals, args.lookups, args.single, args.concurrency)
        ratio = measure_ingest(ports, args.stops, args.rounds, args.concurrency)
        if not args.no_export:
            export(ports["full"], processes["full"].pid)
    finally:
        for process in processes.values():
            stop(process)
        for name, url in urls.items():
            if args.keep:
                print(f"kept the {name} ledger: {url}")
            else:
                drop_database(url)
    print(goal("lookup-p99", p99, LOOKUP_P99_MS, higher_is_better=False))
    print(goal("ingest-at-10m", ratio, INGEST_RATIO))


if __name__ == "__main__":
    main()
