"""Consent look-up benchmark: GET /v1/consent with 1 million identities in PostgreSQL.

Fills a fresh PostgreSQL database with 1,000,000 identities (half emails, half phones, one or
two states each) with COPY, starts the real web process (gunicorn, the service's defaults),
then asks /v1/consent for random identities — nine in ten known, one in ten unknown — over 32
keep-alive connections and prints req/s, p50 and p99. Numbers, not assertions.

    .venv/bin/python bench/lookup.py [--identities 1000000] [--requests 5000] [--concurrency 32]
"""

import argparse
import http.client
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.ingest import POSTGRES_URL, send_all, start_gunicorn, stop  # noqa: E402
from tests.e2e.stack import free_port  # noqa: E402
from tests.helpers import base_env, config_toml, drop_database, fresh_database  # noqa: E402

TOKEN = "bench-admin-token"
STATES = ("marketing_decline", "mail_ban", "sms_ban", "marketing_decline_sms")


def identity(n: int) -> str:
    return f"guest{n}@example.com" if n % 2 == 0 else f"+1555{n:07d}"


def fill(url: str, count: int) -> float:
    """COPY ``count`` identities into consent (one signal stands in as their evidence); seconds taken."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO receipts (id, source, tenant, request_key, status, received_at, evidence_sha256,"
                    " event_ids, changes) VALUES ('rcpt_bench', 'bench', 'grand', 'bench', 'accepted', %s, %s,"
                    " '[]', '[]')", (now, "0" * 64))
        cur.execute("INSERT INTO signals (receipt_id, source, tenant, event_id, kind, review, changes, received_at,"
                    " evidence_sha256, detail) VALUES ('rcpt_bench', 'bench', 'grand', 'bench', 'opt_out', false,"
                    " '[]', %s, %s, '{}') RETURNING id", (now, "0" * 64))
        signal_id = cur.fetchone()[0]
        with cur.copy("COPY consent (tenant, identity, state, since, signal_id) FROM STDIN") as copy:
            for n in range(count):
                who = identity(n)
                copy.write_row(("grand", who, STATES[(n // 2) % 2 + (0 if "@" in who else 2)], now, signal_id))
                if n % 3 == 0:
                    copy.write_row(("grand", who, STATES[(n // 2 + 1) % 2 + (0 if "@" in who else 2)], now,
                                    signal_id))
        cur.execute("ANALYZE consent")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = POSTGRES_URL
    tmp = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    url = fresh_database(tmp)
    process = None
    try:
        seconds = fill(url, args.identities)
        print(f"filled {args.identities:,} identities with COPY in {seconds:.1f} s")
        config = tmp / "receiver.toml"
        config.write_text(config_toml())
        port = free_port()
        env = {**os.environ, **base_env(url, config), "RECEIVER_ADMIN_TOKEN": TOKEN, "PORT": str(port),
               "PYTHONUNBUFFERED": "1"}
        process = start_gunicorn(["wsgi:app"], env, port, tmp / "web.log")
        rng = random.Random(7)

        def look_up() -> tuple:
            n = rng.randrange(args.identities) if rng.random() < 0.9 else args.identities + rng.randrange(10**6)
            who = identity(n)
            path = f"/v1/consent?tenant=grand&{'email' if '@' in who else 'phone'}={quote(who)}"
            return "GET", path, None, {"Authorization": f"Bearer {TOKEN}"}

        send_all(port, [look_up() for _ in range(200)], args.concurrency)  # warm-up
        print(f"GET /v1/consent (logs in {tmp}):")
        for concurrency, count in ((1, min(1000, args.requests)), (args.concurrency, args.requests)):
            elapsed, lat, statuses = send_all(port, [look_up() for _ in range(count)], concurrency)
            pct = lambda p, lat=lat: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000  # noqa: E731
            print(f"  {concurrency:>2} connection(s), {count} requests: {count / elapsed:.0f} req/s, "
                  f"p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, statuses {statuses}")
        export(port, process.pid)
    finally:
        if process is not None:
            stop(process)
        drop_database(url)


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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
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


if __name__ == "__main__":
    main()
