"""A throwaway PostgreSQL cluster for benchmarks that break the database on purpose (bench/chaos.py).

The machine's shared PostgreSQL serves other sessions: restarting it or terminating its backends
would break them. So the benchmark makes its own cluster (initdb into a temporary directory, its
own port and socket directory), restarts and terminates on that one only, and removes it at the
end. PostgreSQL refuses to run as root: as root, every server command runs as the ``postgres``
OS user, who owns the directory.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

BENCH_APP = "chaos-bench"  # application_name of the benchmark's own connections: never terminated


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


class Cluster:
    """initdb + pg_ctl on ``port``; ``url`` is the benchmark's database on it (trust authentication)."""

    def __init__(self, port: int, database: str = "chaos"):
        self.bin, self.port, self.database = _bindir(), port, database
        self.root = Path(tempfile.mkdtemp(prefix="receiver-chaos-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
        self._options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                         "-c max_connections=200 -c shared_buffers=128MB")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / argv[0]), *argv[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def create(self) -> "Cluster":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        return self

    def start(self) -> None:
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", self._options)

    def restart(self) -> float:
        """A fast restart (every connection cut, as on a failover or a crash-restart); returns its seconds."""
        started = time.monotonic()
        self._run("pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.data), "-l", str(self.log), "-o", self._options)
        return time.monotonic() - started

    def remove(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True,
                               application_name=BENCH_APP)

    def terminate_application(self) -> int:
        """pg_terminate_backend on every connection of the service (web, workers, listeners)."""
        with self.admin() as conn:
            return conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid() AND application_name <> %s", (self.database, BENCH_APP)).fetchone()[0]

    def hold_snapshot(self, seconds: float, stop: threading.Event) -> None:
        """A REPEATABLE READ transaction that has read (so holds its snapshot: the xmin horizon) for ``seconds``."""
        with self.admin(self.database) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT count(*) FROM deliveries")
            stop.wait(seconds)
            conn.execute("ROLLBACK")
