"""Drain benchmark: how fast one worker process empties a backlog, lane by lane, against the
sandbox answering after a set latency (its ``/_sandbox/latency``).

1. drain-crmtext: N pending CRM Text deliveries of one store (concurrency 4), the sandbox at
   100 ms: deliveries/s ÷ the lane's limit (concurrency × 1/latency). Target 0.8.
2. drain-experience: M Experience records of one hotel (batches of 250, concurrency 4), the
   sandbox at 50 ms: records/s. Target 2000.
3. drain-isolation: store B's rate alone, then while store A's CRM takes 5 s a call (A's backlog
   claimed first): B's rate with A slow ÷ B's rate alone. Target 0.8.

Seeding goes through the ledger (``Ledger.record``, 1000 signals a request) and is not timed.

    .venv/bin/python bench/drain.py [--db sqlite|postgres] [--quick]
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402

from receiver.ledger.db import make_engine  # noqa: E402
from receiver.ledger.models import Delivery  # noqa: E402
from receiver.ledger.outbox import DONE  # noqa: E402
from receiver.ledger.record import Ledger  # noqa: E402
from receiver.settings import SourceConfig  # noqa: E402
from receiver.signals import OPT_OUT, Inbound, Signal  # noqa: E402
from receiver.sources.sms import sms_signal  # noqa: E402
from receiver.states import MARKETING_DECLINE  # noqa: E402
from receiver.worker import Worker  # noqa: E402
from tests.e2e.stack import free_port, wait_until  # noqa: E402
from tests.helpers import config_toml, drop_database, fresh_database, make_settings  # noqa: E402

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TENANTS = """
threads = 16

[tenants.a]
crmtext = { base_url = "SANDBOX_URL/crmtext/smapi/rest", user = "a", password = "pw", keyword = "A", timeout = 8.0 }

[tenants.b]
crmtext = { base_url = "SANDBOX_URL/crmtext/smapi/rest", user = "b", password = "pw", keyword = "B", timeout = 2.0 }

[tenants.hotel]
experience = { base_url = "SANDBOX_URL/experience", partner_token = "p", hotel_token = "h1", timeout = 2.0 }
"""


def goal(name: str, measured: float, target: float, higher_is_better: bool = True) -> str:
    met = measured >= target if higher_is_better else measured <= target
    return f"GOAL {name} {measured:.3f} {target:g} {'met' if met else 'missed'}"


class Bench:
    def __init__(self, url: str, sandbox_url: str, tmp: Path):
        self.sandbox_url = sandbox_url
        self.settings = make_settings(tmp, url, toml=config_toml(sandbox_url, extra=TENANTS))
        self.engine = make_engine(url, pool_size=self.settings.worker.threads + 1)
        self.ledger = Ledger(self.engine, self.settings.tenants, self.settings.identity_key)
        self.n = 0
        self.statements = self.commits = 0  # the worker's round trips (the bench's own reads count too: a few)
        event.listen(self.engine, "before_cursor_execute", self.count)
        event.listen(self.engine, "commit", self.commit)

    def latency(self, seconds: float, crm: str, account: str | None = None) -> None:
        requests.post(f"{self.sandbox_url}/_sandbox/latency",
                      json={"seconds": seconds, "crm": crm, "account": account}, timeout=5).raise_for_status()

    def seed(self, tenant: str, count: int, email: bool = False) -> None:
        source = SourceConfig(name=f"bench-{tenant}", kind="twilio", tenant=tenant)
        for start in range(0, count, 1000):
            signals = []
            for _ in range(start, min(count, start + 1000)):
                self.n += 1
                if email:
                    signals.append(Signal(event_id=f"e{self.n}", kind=OPT_OUT, email=f"guest{self.n}@example.com",
                                          add=frozenset({MARKETING_DECLINE})))
                else:
                    signals.append(sms_signal(f"SM{self.n}", f"+1{2000000000 + self.n}", OPT_OUT, keyword="STOP"))
            outcome = self.ledger.record(source, Inbound(f"req-{self.n}", signals), b"bench")
            assert outcome.status == "accepted", outcome

    def done(self, tenant: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).where(Delivery.tenant == tenant,
                                                           Delivery.status == "done")).scalar()

    def drain(self, tenant: str, count: int, worker: Worker | None = None) -> float:
        """Seconds until ``count`` of ``tenant``'s deliveries are done, the worker running meanwhile.

        Counted as the worker finishes them (not by polling the outbox, whose count would load the
        database it measures), then checked once in the database."""
        own = worker is None
        base = self.done(tenant)
        if own:
            worker = self.start_worker()
        statements, commits, cpu = self.statements, self.commits, time.process_time()
        began = time.monotonic()
        with worker.done_lock:
            worker.done_lock.wait_for(lambda: worker.done_count[tenant] >= count)
        elapsed = time.monotonic() - began
        statements, commits, cpu = self.statements - statements, self.commits - commits, time.process_time() - cpu
        if own:
            self.stop_worker(worker)
        assert self.done(tenant) - base >= count
        print(f"  {tenant}: {count} done in {elapsed:.1f} s; per delivery: {statements / count:.2f} SQL statements, "
              f"{commits / count:.2f} commits, {cpu / count * 1000:.2f} ms of this process's CPU", flush=True)
        return elapsed

    def start_worker(self) -> Worker:
        worker = Worker(self.settings, self.engine)
        worker.done_lock, worker.done_count = threading.Condition(), Counter()
        finish = worker.leases.finish

        def counted(reports):
            finished = finish(reports)
            with worker.done_lock:
                worker.done_count.update(report.row.tenant for report, end in zip(reports, finished, strict=True)
                                         if end.status == DONE)
                worker.done_lock.notify_all()
            return finished

        worker.leases.finish = counted
        worker.thread = threading.Thread(target=worker.run, daemon=True)
        worker.thread.start()
        return worker

    def stop_worker(self, worker: Worker) -> None:
        worker.stop()
        worker.thread.join(timeout=30)

    def count(self, *_args) -> None:
        self.statements += 1

    def commit(self, *_args) -> None:
        self.commits += 1


def crmtext(bench: Bench, count: int) -> str:
    bench.latency(0.1, "crmtext")
    bench.seed("b", count)
    seconds = bench.drain("b", count)
    rate = count / seconds
    print(f"drain-crmtext: {count} deliveries in {seconds:.1f} s = {rate:.1f}/s; limit 4 / 0.1 s = 40/s", flush=True)
    return goal("drain-crmtext", rate / 40, 0.8)


def experience(bench: Bench, count: int) -> str:
    bench.latency(0.05, "experience")
    bench.seed("hotel", count, email=True)
    seconds = bench.drain("hotel", count)
    print(f"drain-experience: {count} records in {seconds:.1f} s = {count / seconds:.0f}/s", flush=True)
    return goal("drain-experience", count / seconds, 2000)


def isolation(bench: Bench, count: int) -> str:
    bench.seed("b", count)
    alone = count / bench.drain("b", count)
    bench.latency(5.0, "crmtext", "A")
    bench.seed("a", 200)  # A's backlog first: it is claimed first
    bench.seed("b", count)
    worker = bench.start_worker()
    slowed = count / bench.drain("b", count, worker)
    a_done = bench.done("a")
    bench.stop_worker(worker)  # waits for A's calls under way (5 s at most)
    print(f"drain-isolation: B alone {alone:.1f}/s, B while A takes 5 s a call {slowed:.1f}/s "
          f"(A finished {a_done} meanwhile)", flush=True)
    return goal("drain-isolation", slowed / alone, 0.8)


def parts(quick: bool) -> dict:
    """Each part and its count (the issue's; a tenth with --quick)."""
    scale = 10 if quick else 1
    return {"crmtext": (crmtext, 20000 // scale), "experience": (experience, 50000 // scale),
            "isolation": (isolation, 2000 // scale)}


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/_sandbox/calls", timeout=1).ok
    except requests.ConnectionError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="a tenth of the counts")
    parser.add_argument("--only", choices=["crmtext", "experience", "isolation"],
                        help="run one part (for profiling it, e.g. under py-spy)")
    args = parser.parse_args()
    if args.db == "postgres":
        os.environ["DATABASE_URL"] = os.environ.get("BENCH_POSTGRES_URL", POSTGRES_URL)
    else:
        os.environ.pop("DATABASE_URL", None)
    signal.signal = lambda *_: None  # the worker runs in a thread here; only the main thread may set handlers

    port = free_port()
    sandbox = subprocess.Popen([str(Path(sys.executable).parent / "receiver"), "sandbox", "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sandbox_url = f"http://127.0.0.1:{port}"
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_database(Path(tmp))
        bench = None
        try:
            wait_until(lambda: _up(sandbox_url), timeout=20)
            bench = Bench(url, sandbox_url, Path(tmp))

            for name, (part, count) in parts(args.quick).items():
                if args.only in (None, name):
                    lines.append(part(bench, count))
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=10)
            if bench is not None:
                bench.engine.dispose()
            drop_database(url)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
