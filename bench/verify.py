"""`receiver verify` on a PostgreSQL ledger of 1,000,000 chained signals: wall time and peak RSS.

bench/fill.py generates the signals inside PostgreSQL with random stand-in chain hashes; this
script then chains them for real (the identity hashes keyed with the test RECEIVER_IDENTITY_KEY and
each row's chain_sha256, computed with the receiver's own ``ledger.chain`` code and written back
with one COPY and one UPDATE), moves the tenant's head to the last row, and runs
``receiver verify`` as a child process, twice: on the intact ledger (it must print ``chain ok``),
then with one row in the middle edited (it must exit 1 naming that row). The child's wall time and
peak RSS come from its own rusage (``os.wait4``), so this script's memory is not counted.

GOAL lines: `verify-rss` (peak RSS in MB of the intact run, at most 150: the chain is streamed;
the process itself, imports and connection, takes about 110 MB whatever the ledger's size) and
`verify-rate` (signals checked per second, at least 5,000: 1,000,000 within 200 s on this shared
2-core machine).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/NAME .venv/bin/python bench/verify.py [--signals N] [--keep]
    make bench-verify   (the same, against DATABASE_URL's server)

A new database beside DATABASE_URL's is made and dropped (``--keep`` prints its URL instead).
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fill import fill  # noqa: E402
from bench.goals import goal  # noqa: E402
from receiver.compliance.chain import FIELDS, canonical, link  # noqa: E402
from receiver.ledger.chain import hashes, stream  # noqa: E402
from receiver.ledger.db import make_engine  # noqa: E402
from tests.helpers import base_env, config_toml, drop_database, fresh_database  # noqa: E402

RSS_GOAL_MB, RATE_GOAL = 150, 5_000
COPY_BATCH = 50_000


def chain_for_real(url: str, key: bytes) -> tuple[int, str]:
    """Recompute every row's identity hashes and chain hash as Ledger.record would have; (last id, head)."""
    engine = make_engine(url)
    previous, last, buffer = None, None, io.StringIO()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("CREATE TEMP TABLE fixed (id bigint, email_hash text, phone_hash text, chain_sha256 text)")
        with conn.cursor().copy("COPY fixed FROM STDIN") as copy:
            for row in stream(engine, "grand"):
                row.update(hashes(key, row["email"], row["phone"]))
                previous, last = link(previous, canonical({name: row[name] for name in FIELDS})), row["id"]
                buffer.write(f"{last}\t{row['email_hash'] or chr(92) + 'N'}\t{row['phone_hash'] or chr(92) + 'N'}"
                             f"\t{previous}\n")
                if buffer.tell() > COPY_BATCH * 150:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        conn.execute("CREATE INDEX ON fixed (id)")
        conn.execute("""UPDATE signals s SET email_hash = f.email_hash, phone_hash = f.phone_hash,
                        chain_sha256 = f.chain_sha256 FROM fixed f WHERE s.id = f.id""")
        conn.execute("UPDATE chain_heads SET signal_id = %s, chain_sha256 = %s WHERE tenant = 'grand'",
                     (last, previous))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) signals")
    engine.dispose()
    return last, previous


def run_verify(env: dict) -> tuple[int, str, float, float]:
    """``receiver verify`` as a child: (exit code, its output, seconds, peak RSS in MB)."""
    started = time.perf_counter()
    child = subprocess.Popen([str(ROOT / ".venv/bin/receiver"), "verify"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, output.strip(), time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the filled database and print its URL")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench/verify.py: set DATABASE_URL=postgresql://… (a server where databases can be created)")
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_database(Path(tmp))
        try:
            config = Path(tmp) / "receiver.toml"
            config.write_text(config_toml())
            env = {**os.environ, **base_env(url, config)}
            print(f"filled {args.signals:,} signals in {fill(url, args.signals, progress=lambda _: None):.0f} s")
            started = time.perf_counter()
            last, _ = chain_for_real(url, env["RECEIVER_IDENTITY_KEY"].encode())
            print(f"chained them in {time.perf_counter() - started:.0f} s (head: row {last})")

            code, output, seconds, rss = run_verify(env)
            print(f"intact: exit {code}, {seconds:.1f} s, peak RSS {rss:.0f} MB: {output}")
            assert code == 0 and output == f"chain ok: {args.signals} signals", output

            middle = args.signals // 2
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                conn.execute("UPDATE signals SET evidence_sha256 = repeat('f', 64) WHERE id = %s", (middle,))
            code2, output2, seconds2, rss2 = run_verify(env)
            print(f"tampered: exit {code2}, {seconds2:.1f} s, peak RSS {rss2:.0f} MB: {output2}")
            assert code2 == 1 and f"row {middle} (tenant grand)" in output2, output2

            print(goal("verify-rss", round(rss), RSS_GOAL_MB, higher_is_better=False))
            print(goal("verify-rate", round(args.signals / seconds), RATE_GOAL))
        finally:
            if args.keep:
                print(f"kept: {url}")
            else:
                drop_database(url)


if __name__ == "__main__":
    main()
