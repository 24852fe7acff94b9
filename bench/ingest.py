"""Ingest benchmark: how many signed Twilio STOPs a second receiver's web process stores.

For each database (a fresh, migrated SQLite file and/or a fresh PostgreSQL database) it starts
the real web process (``gunicorn wsgi:app``, no worker), fires N signed STOPs from N distinct
phone numbers over 32 keep-alive connections (after ~100 warm-up requests), checks every answer
is 200 and every signal was stored, and records per-request latency. It then fires the same
requests at a bare Flask app (bench/bare_app.py) under the same gunicorn settings and env.

Printed: requests, req/s, p50 and p99 latency, and receiver/bare req/s. The goal is a ratio
of at least 0.6 (storing an opt-out durably should cost less than the web stack itself).
Then a partner figure: signed Standard Webhooks batches of 1000 opt-out events, one after the
other, each stored in one transaction: events/s and the p50 time of one batch.
These are numbers, not assertions: the client runs on the same machine and competes for CPU.
Memory: after its STOPs, each receiver gunicorn worker's resident set (VmRSS in /proc/<pid>/status).

Ends with one line per goal (issue #16): ``GOAL ingest-sqlite <ratio> 0.6``, ``GOAL ingest-postgres
<ratio> 0.6`` and ``GOAL web-rss <MB> 80`` (the largest worker of either run), each ``met|missed``.

    .venv/bin/python bench/ingest.py [--db sqlite|postgres|both] [--requests N | --quick]
                                     [--concurrency 32] [--workers W]
"""

import argparse
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench.goals import goal  # noqa: E402
from receiver.ledger.db import make_engine  # noqa: E402
from receiver.settings import load_settings  # noqa: E402
from tests.e2e.stack import free_port, wait_until  # noqa: E402
from tests.helpers import (  # noqa: E402
    PUBLIC_BASE_URL,
    TWILIO_TOKEN,
    base_env,
    config_toml,
    drop_database,
    fresh_database,
    twilio_sms,
)

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PARTNER_SECRET = "whsec_YmVuY2gtcGFydG5lci1zZWNyZXQtMDEyMzQ1Njc4OQ=="
PARTNER_CONFIG = f"""
[sources.partner]
kind = "standard-webhooks"
tenant = "grand"
secret = "{PARTNER_SECRET}"
"""
WARMUP = 100
PATH = "/hooks/twilio"


def signed_requests(count: int) -> list[tuple[str, str, bytes, dict]]:
    """``count`` STOPs from distinct numbers, each signed as Twilio signs it (computed before timing)."""
    validator, out = RequestValidator(TWILIO_TOKEN), []
    for i in range(count):
        params = twilio_sms(sid=f"SM{i:032x}", body="STOP", phone=f"+1555{i:07d}")
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE_URL + PATH, params)}
        out.append(("POST", PATH, urlencode(params).encode(), headers))
    return out


def request(conn: http.client.HTTPConnection, method: str, path: str, body, headers: dict):
    """One request on a keep-alive connection, its answer read; the server may have closed the
    connection while it was idle, so it is tried once more on a new one."""
    for attempt in (1, 2):
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt == 2:
                raise


def send_all(port: int, reqs: list, concurrency: int) -> tuple[float, list[float], dict[int, int]]:
    """Send ``reqs`` (method, path, body, headers) over ``concurrency`` keep-alive connections;
    (seconds, latencies, status counts)."""
    def run(chunk):
        conn, lat, statuses = http.client.HTTPConnection("127.0.0.1", port, timeout=60), [], {}
        for method, path, body, headers in chunk:
            start = time.perf_counter()
            resp = request(conn, method, path, body, headers)
            lat.append(time.perf_counter() - start)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()
        return lat, statuses

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(run, [reqs[i::concurrency] for i in range(concurrency)]))
    elapsed = time.perf_counter() - start
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses: dict[int, int] = {}
    for _, st in results:
        for code, n in st.items():
            statuses[code] = statuses.get(code, 0) + n
    return elapsed, latencies, statuses


def start_gunicorn(argv: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), *argv], cwd=ROOT, env=env,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/")  # any answer (404 on both apps) means it listens
            c.getresponse().read()
            return True
        except OSError:
            return False
    wait_until(up, timeout=30, message=f"gunicorn on :{port}")
    return process


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_rss_mb(master: int) -> list[float]:
    """The resident set of each of gunicorn's workers (the master's children), in MB."""
    sizes = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # a process that ended meanwhile
            continue
        if int(fields.get("PPid", "0").strip()) == master and "VmRSS" in fields:
            sizes.append(int(fields["VmRSS"].split()[0]) / 1024)
    return sorted(sizes)


def measure(argv, env, port, log, warmup, reqs, concurrency) -> dict:
    process = None
    try:
        process = start_gunicorn(argv, env, port, log)
        _, _, warm_status = send_all(port, warmup, concurrency)
        elapsed, lat, statuses = send_all(port, reqs, concurrency)
        rss = worker_rss_mb(process.pid)
    finally:
        stop(process)
    bad = {c: n for st in (warm_status, statuses) for c, n in st.items() if c != 200}
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000  # noqa: E731
    return {"requests": len(reqs), "rps": len(reqs) / elapsed, "p50": pct(50), "p99": pct(99), "bad": bad, "rss": rss}


def partner_batches(port: int, batches: int, size: int) -> dict:
    """Post ``batches`` signed batches of ``size`` events in turn; events/s and p50 ms per batch."""
    import json
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    webhook, conn, times = Webhook(PARTNER_SECRET), http.client.HTTPConnection("127.0.0.1", port, timeout=120), []
    for b in range(batches + 1):  # the first batch warms up
        events = [{"id": f"evt_{b}_{i}", "type": "consent.opt_out", "customer": {"email": f"g{b}.{i}@example.com"},
                   "states": ["marketing_decline"]} for i in range(size)]
        body, msg_id = json.dumps({"events": events}), f"msg_bench_{b}"
        headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(int(time.time())),
                   "webhook-signature": webhook.sign(msg_id, datetime.now(UTC), body)}
        start = time.perf_counter()
        conn.request("POST", "/hooks/partner", body=body.encode(), headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"partner batch answered {resp.status}")
        if b:
            times.append(time.perf_counter() - start)
    conn.close()
    times.sort()
    return {"batches": batches, "events_per_s": batches * size / sum(times), "p50": times[len(times) // 2] * 1000}


def bench(db: str, n: int, concurrency: int, workers: int | None, all_reqs: list) -> tuple[float, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{db}-"))
    if db == "postgres":
        os.environ["DATABASE_URL"] = POSTGRES_URL
    else:
        os.environ.pop("DATABASE_URL", None)  # fresh_database: SQLite unless DATABASE_URL is PostgreSQL
    url = fresh_database(tmp)
    try:
        config = tmp / "receiver.toml"
        config.write_text(config_toml(extra=PARTNER_CONFIG))
        env = {**os.environ, **base_env(url, config), "PYTHONUNBUFFERED": "1"}
        workers = workers or load_settings(env, root=ROOT).web_concurrency  # the service's own default
        env["WEB_CONCURRENCY"] = str(workers)
        warmup, reqs = all_reqs[:WARMUP], all_reqs[WARMUP:WARMUP + n]
        results = {}
        for name, argv in (("receiver", ["wsgi:app"]), ("bare", ["-c", "gunicorn.conf.py", "bench.bare_app:app"])):
            port = free_port()
            results[name] = measure(argv, {**env, "PORT": str(port)}, port, tmp / f"{name}.log",
                                    warmup, reqs, concurrency)
        port = free_port()
        process = start_gunicorn(["wsgi:app"], {**env, "PORT": str(port)}, port, tmp / "partner.log")
        try:
            partner = partner_batches(port, batches=5, size=1000)
        finally:
            stop(process)
        engine = make_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM signals")).scalar()
        engine.dispose()
    finally:
        drop_database(url)

    ratio = results["receiver"]["rps"] / results["bare"]["rps"]
    print(f"\n{db} (gunicorn gthread, {workers} workers x 4 threads, {concurrency} connections; logs in {tmp})")
    print(f"{'app':<10}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<10}{r['requests']:>10}{r['rps']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}"
              + (f"   non-200: {r['bad']}" if r["bad"] else ""))
    print(f"ratio receiver/bare req/s: {ratio:.2f} (goal >= 0.6)")
    print("receiver worker RSS after the run: " + ", ".join(f"{mb:.0f} MB" for mb in results["receiver"]["rss"]))
    print(f"stored: {stored}/{n + WARMUP + 6000} (STOPs + partner events)")
    print(f"partner batches of 1000 events: {partner['events_per_s']:.0f} events/s, "
          f"p50 {partner['p50']:.0f} ms a batch ({partner['batches']} batches, one at a time)")
    return ratio, results["receiver"]["rss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="500 requests instead of --requests")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY (default: the service's)")
    args = parser.parse_args()
    if args.quick:
        args.requests = 500
    all_reqs = signed_requests(WARMUP + args.requests)
    dbs = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    measured = {db: bench(db, args.requests, args.concurrency, args.workers, all_reqs) for db in dbs}
    print()
    for db, (ratio, _) in measured.items():
        print(goal(f"ingest-{db}", ratio, 0.6))
    rss = max((mb for _, sizes in measured.values() for mb in sizes), default=float("nan"))
    print(goal("web-rss", rss, 80, higher_is_better=False))




if __name__ == "__main__":
    main()
