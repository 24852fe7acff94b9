"""Backfill benchmark: 100,000 Twilio messages and 100,000 SendGrid suppressions read from the sandbox.

It starts the sandbox (`receiver sandbox`) as its own process, seeds its Twilio message log with N
inbound STOPs from N distinct numbers and SendGrid's unsubscribes list with N addresses, then runs
`receiver backfill` twice as a child process on a fresh, migrated database (SQLite by default;
``DATABASE_URL=postgresql://…`` for PostgreSQL). Each run's wall time and peak RSS come from the
child's own rusage (``os.wait4``), so the sandbox's memory is not counted.

Printed: items/s and peak RSS of the first run (everything new), the second run's time (nothing
new: every page is a duplicate) and its ratio to the first, then GOAL lines: `backfill-rss` (peak
RSS in MB, at most 150: pages are streamed) and `backfill-rerun` (the second run's time ÷ the
first's, at most 0.25).

    .venv/bin/python bench/backfill.py [--items N]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.goals import goal  # noqa: E402
from tests.e2e.stack import free_port, wait_until  # noqa: E402
from tests.helpers import base_env, config_toml, drop_database, fresh_database  # noqa: E402

ACCOUNT, OURS, SENDGRID_KEY = "AC" + "0" * 32, "+15550001111", "SG.bench-key"
SEED_BATCH = 10_000
RSS_GOAL_MB, RATIO_GOAL = 150, 0.25
SOURCES = f"""
[backfill]
every_minutes = 0

[sources.sms]
kind = "twilio"
tenant = "grand"
auth_token = "env:TWILIO_AUTH_TOKEN"
backfill = {{ account_sid = "{ACCOUNT}", to = ["{OURS}"], base_url = "SANDBOX_URL" }}

[sources.esp]
kind = "sendgrid"
tenant = "grand"
public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
backfill = {{ api_key = "{SENDGRID_KEY}", base_url = "SANDBOX_URL" }}
"""


def seed(sandbox: str, items: int, token: str) -> None:
    http = requests.Session()
    http.post(f"{sandbox}/_sandbox/providers/credentials", timeout=10, json={
        "twilio": {"account_sid": ACCOUNT, "auth_token": token}, "sendgrid": {"api_key": SENDGRID_KEY}},
    ).raise_for_status()
    now = int(time.time())
    for start in range(0, items, SEED_BATCH):
        numbers = range(start, min(start + SEED_BATCH, items))
        texts = [{"from": f"+1555{n:07d}", "to": OURS, "body": "STOP", "date_sent": now - n % 86400} for n in numbers]
        unsubscribes = [{"email": f"guest{n}@example.com", "created": now - n % 86400} for n in numbers]
        http.post(f"{sandbox}/_sandbox/providers/twilio/messages", json=texts, timeout=120).raise_for_status()
        http.post(f"{sandbox}/_sandbox/providers/sendgrid/unsubscribes", json=unsubscribes,
                  timeout=120).raise_for_status()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def backfill(env: dict) -> tuple[float, float, str]:
    """One `receiver backfill` run: (seconds, peak RSS in MB, its output)."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen([str(ROOT / ".venv/bin/receiver"), "backfill"], cwd=ROOT, env=env, stdout=out,
                                 stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().strip()
    if child.returncode != 0:
        raise SystemExit(f"receiver backfill exited {child.returncode}:\n{output}")
    return elapsed, usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="Twilio messages, and as many suppressions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as folder:
        tmp = Path(folder)
        port = free_port()
        sandbox_url = f"http://127.0.0.1:{port}"
        database = fresh_database(tmp)
        config = tmp / "receiver.toml"
        config.write_text(config_toml(sandbox_url, SOURCES))
        env = {**os.environ, **base_env(database, config), "LOG_LEVEL": "ERROR"}
        sandbox = subprocess.Popen([str(ROOT / ".venv/bin/receiver"), "sandbox", "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: answers(sandbox_url + "/_sandbox/providers"), message="sandbox")
            seeding = time.perf_counter()
            seed(sandbox_url, args.items, env["TWILIO_AUTH_TOKEN"])
            print(f"seeded {args.items} Twilio messages + {args.items} SendGrid unsubscribes "
                  f"in {time.perf_counter() - seeding:.1f}s ({'PostgreSQL' if database.startswith('postgres') else 'SQLite'})")
            first, first_rss, first_out = backfill(env)
            second, second_rss, second_out = backfill(env)
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
            drop_database(database)
    items = 2 * args.items
    print(first_out)
    print(f"first run:  {items} items in {first:.1f}s = {items / first:,.0f} items/s, peak RSS {first_rss:.0f} MB")
    print(second_out)
    print(f"second run: {second:.1f}s ({second / first:.1%} of the first), peak RSS {second_rss:.0f} MB")
    rss = max(first_rss, second_rss)
    print(goal("backfill-rss", rss, RSS_GOAL_MB, higher_is_better=False))
    print(goal("backfill-rerun", second / first, RATIO_GOAL, higher_is_better=False))


if __name__ == "__main__":
    main()
