"""Hostile CRMs against a real worker: its memory, and whether other tenants' deliveries keep moving.

Issue #11 asks it measured once: a slow-drip CRM and a gzip bomb must leave the worker's RSS under
150 MB and other tenants' deliveries moving. This starts the sandbox, the web process and one
``receiver worker`` (tests/e2e/stack.py) with three tenants:

- ``dripinn``: its CRM Text answers every call a byte at a time (headers included, ``--drip-every``
  seconds per byte): each call is cut at the client's deadline (``timeout = 6``, the vendor's advice).
- ``bombinn``: its CRM Text and Experience answer every call with a gzip bomb (``--bomb-mb`` MB of
  zeros in about a thousandth of that on the wire), sent whatever ``Accept-Encoding`` says.
- ``grand``: the normal sandbox (CRM Text and Experience).

Both hostile CRMs are raw sockets (tests/fake_crm.RawCrm). For ``--seconds`` it posts one signed
Twilio STOP a tenant every ``1/--rate`` seconds through the web process, samples the worker's VmRSS
every 0.2 s, and prints the worker's peak (VmHWM), how many calls each hostile CRM took, and how
grand's deliveries fared during the run (done / owed, and seconds from its last STOP until all
were done). Ends with ``GOAL hostile-worker-rss <MB> 150``.

    .venv/bin/python bench/hostile.py [--seconds 60] [--rate 2] [--db postgres|sqlite]
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.goals import goal  # noqa: E402
from receiver.dev.answers import _bomb  # noqa: E402
from tests.e2e.stack import Stack, wait_until  # noqa: E402
from tests.fake_crm import RawCrm, drip, http_answer  # noqa: E402
from tests.helpers import drop_database, fresh_database  # noqa: E402

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
GOAL_RSS_MB = 150
OK = b'<response op="optoutcustomer" status="200" message="ok"/>'


def hostile_config(drip_url: str, bomb_url: str, bomb_experience_url: str) -> str:
    """Two more tenants, each with its own Twilio source (the test config's auth token)."""
    sources = "".join(f'\n[sources.sms-{name}]\nkind = "twilio"\ntenant = "{name}"\nauth_token = "env:TWILIO_AUTH_TOKEN"\n'
                      for name in ("dripinn", "bombinn"))
    return f"""
[tenants.dripinn]
crmtext = {{ base_url = "{drip_url}", user = "drip", password = "pw", keyword = "DRIP", timeout = 6 }}

[tenants.bombinn]
crmtext = {{ base_url = "{bomb_url}", user = "bomb", password = "pw", keyword = "BOMB", timeout = 6 }}
experience = {{ base_url = "{bomb_experience_url}", partner_token = "p", hotel_token = "bomb-hotel", timeout = 6 }}
{sources}"""


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def sample_rss(pid: int, samples: list[int], stop: threading.Event) -> None:
    while not stop.wait(0.2):
        try:
            samples.append(status_kb(pid, "VmRSS"))
        except (OSError, LookupError):
            return


def grand_counts(stack: Stack) -> tuple[int, int]:
    """grand's deliveries: (done, all)."""
    [(done, owed)] = stack.query("SELECT SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), count(*) "
                                 "FROM deliveries WHERE tenant = 'grand'")
    return int(done or 0), int(owed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2.0, help="STOPs a second for each tenant")
    parser.add_argument("--bomb-mb", type=int, default=1024, help="what one bomb answer inflates to")
    parser.add_argument("--drip-every", type=float, default=0.2, help="seconds between the dripped bytes")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--calm", choices=("drip", "bomb", "both"),
                        help="point that hostile CRM's tenant at the normal sandbox instead (a baseline)")
    args = parser.parse_args()

    if args.db == "postgres":
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            os.environ["DATABASE_URL"] = POSTGRES_URL
    else:
        os.environ.pop("DATABASE_URL", None)
    bomb = http_answer("200 OK", _bomb(args.bomb_mb), {"Content-Encoding": "gzip", "Content-Type": "text/xml"})
    dripping = RawCrm(drip(http_answer("200 OK", OK, {"Content-Type": "text/xml"}), args.drip_every))
    bombing = RawCrm(lambda conn: conn.sendall(bomb))
    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    url = fresh_database(tmp)
    calm = {"drip", "bomb"} if args.calm == "both" else {args.calm}
    stack = Stack(tmp, url, extra_config=hostile_config(
        "SANDBOX_URL/crmtext/smapi/rest" if "drip" in calm else dripping.url,
        "SANDBOX_URL/crmtext/smapi/rest" if "bomb" in calm else bombing.url,
        "SANDBOX_URL/experience" if "bomb" in calm else bombing.url))
    samples: list[int] = []
    stop = threading.Event()
    try:
        stack.start_sandbox(timeout=120)
        stack.start_web(timeout=120)
        worker = stack.start_worker()
        # Measured once the worker delivers: one warm-up STOP of grand's, all its deliveries done.
        stack.sms("STOP", "+15559000000", "SMhostilewarmup")
        wait_until(lambda: grand_counts(stack) == (2, 2), timeout=120, interval=0.5, message="the worker")
        threading.Thread(target=sample_rss, args=(worker.pid, samples, stop), daemon=True).start()
        started_kb = status_kb(worker.pid, "VmRSS")

        sent, refused, n = 0, 0, 0
        begun = time.monotonic()
        while time.monotonic() - begun < args.seconds:
            n += 1
            for i, source in enumerate(("twilio", "sms-dripinn", "sms-bombinn")):
                phone = f"+1555{i}{n:06d}"
                answer = stack.post_twilio(stack.twilio_params("STOP", phone, f"SMhostile{i}{n:08d}"), source=source)
                sent, refused = sent + 1, refused + (answer.status_code != 200)
            time.sleep(max(0.0, begun + n / args.rate - time.monotonic()))
        last_stop = time.monotonic()
        done_at_end, owed = grand_counts(stack)
        try:
            wait_until(lambda: grand_counts(stack)[0] == grand_counts(stack)[1], timeout=60, interval=0.5,
                       message="grand's deliveries")
            caught_up = f"{time.monotonic() - last_stop:.1f} s"
        except AssertionError:
            caught_up = "not within 60 s"
        stop.set()
        peak_kb = status_kb(worker.pid, "VmHWM")
        alive = worker.poll() is None
        hostile = stack.query("SELECT tenant, status, count(*), max(attempts) FROM deliveries "
                              "WHERE tenant <> 'grand' GROUP BY tenant, status ORDER BY tenant, status")
        errors = stack.query("SELECT DISTINCT tenant, crm, last_error FROM deliveries WHERE tenant <> 'grand' "
                             "AND last_error IS NOT NULL ORDER BY tenant, crm")
    finally:
        stop.set()
        stack.stop()
        dripping.close()
        bombing.close()
        drop_database(url)

    print(f"\n{args.db}; {args.seconds:.0f} s, {args.rate:g} STOPs/s per tenant; bomb {args.bomb_mb} MB inflated "
          f"({len(bomb) // 1024} KB on the wire); drip a byte every {args.drip_every} s; logs in {tmp}")
    print(f"STOPs posted {sent} (non-200: {refused}); worker alive at the end: {alive}")
    print(f"calls taken: dripping CRM {len(dripping.requests)}, bombing CRM {len(bombing.requests)}")
    print(f"worker RSS: {started_kb / 1024:.0f} MB after start, max sampled {max(samples) / 1024:.0f} MB, "
          f"peak (VmHWM) {peak_kb / 1024:.0f} MB")
    print("worker RSS every 5 s (MB): " + " ".join(f"{kb / 1024:.0f}" for kb in samples[::25]))
    print(f"grand: {done_at_end} of {owed} deliveries done when the last STOP was posted; all done {caught_up} later")
    for row in hostile:
        print(f"  {row[0]}: {row[2]} {row[1]} (attempts up to {row[3]})")
    for row in errors:
        print(f"  {row[0]} {row[1]}: {row[2]}")
    print(goal("hostile-worker-rss", round(peak_kb / 1024), GOAL_RSS_MB, higher_is_better=False))


if __name__ == "__main__":
    main()
