"""Wake-up on commit: the ledger NOTIFYs when it owes deliveries, workers LISTEN (PostgreSQL only).

NOTIFY is transactional: it reaches listeners when the transaction that owes the deliveries
commits, never before (a worker woken early would find nothing) and never for a rollback. Polling
stays the fallback: a lost notification (a listener reconnecting) costs at most one poll interval.
"""

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, func

log = logging.getLogger(__name__)

CHANNEL = "receiver_deliveries"
RECONNECT_SECONDS = 1.0


def notify(conn) -> None:
    """Wake listening workers when ``conn``'s transaction commits; nothing on SQLite (it polls)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


def owing(engine: Engine, insert_deliveries):
    """``insert_deliveries``, made to NOTIFY as it inserts on PostgreSQL: one round trip, not two.

    ``pg_notify`` is ``NOTIFY``'s function form (transactional alike), and PostgreSQL folds
    identical notifications of one transaction into one, so a row each costs nothing more.
    """
    if engine.dialect.name == "postgresql":
        return insert_deliveries.returning(func.pg_notify(CHANNEL, ""))
    return insert_deliveries


class Listener:
    """A dedicated connection (outside the engine's pool) LISTENing in a daemon thread: each
    notification calls ``wake``; a failed connection is opened again after ``RECONNECT_SECONDS``."""

    def __init__(self, engine: Engine, wake: Callable[[], None], stopping: threading.Event):
        url = engine.url.set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.wake, self.stopping = wake, stopping
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait on it)
        self.thread = threading.Thread(target=self._run, name="listen", daemon=True)

    def start(self) -> "Listener":
        self.thread.start()
        return self

    def _run(self) -> None:
        import psycopg  # here: the web process imports this module (notify) and, on SQLite, needs no psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.wake()  # deliveries committed while nobody listened
                    while not self.stopping.is_set():
                        # A timeout, so that a stop is seen within a second even when all is quiet.
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                log.warning("LISTEN connection failed (%s); polling until it is back", type(exc).__name__)
            finally:
                self.listening.clear()
            self.stopping.wait(RECONNECT_SECONDS)
