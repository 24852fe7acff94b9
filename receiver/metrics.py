"""Prometheus metrics: what the web and worker processes count, and the /metrics exposition.

Counters and the histogram live in the process that counts them. gunicorn runs several worker
processes, so ``gunicorn.conf.py`` puts prometheus-client in multiprocess mode before they fork:
each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary
directory when the variable is unset) and /metrics adds up every file it finds there. Without that
variable (the Flask test client, a single process) the ordinary in-process registry is used.

The delivery worker (``receiver worker``) is a separate process, on Heroku a separate dyno. Its
counters (``receiver_delivery_attempts_total``, ``receiver_dead_letters_total``) and its latency
histogram reach /metrics only when it shares ``PROMETHEUS_MULTIPROC_DIR`` with the web process, i.e.
runs on the same host with the same directory (``make run`` sets one up for both).
The queue gauges are read from the database at scrape time instead, so they are right wherever the
worker runs: ``receiver_queue_depth``, ``receiver_queue_oldest_pending_age_seconds`` and
``receiver_deliveries_dead``.
"""

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine

from .ledger import clocks
from .ledger.health import queue_health

log = logging.getLogger(__name__)

# prometheus-client's own switch: it picks file-backed values at import when this is set.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

SIGNALS_RECEIVED = Counter(
    "receiver_signals_received",
    "Requests answered with a receipt (/hooks/<source>, the email link, the plain form), by answer status.",
    ["source", "kind", "outcome"])
SIGNATURE_FAILURES = Counter(
    "receiver_signature_failures", "Requests to /hooks/<source> refused with 401 (signature or token).",
    ["source"])
DELIVERY_ATTEMPTS = Counter(
    "receiver_delivery_attempts", "Delivery attempts by CRM and outcome (ok, already, retry, unknown, permanent).",
    ["crm", "outcome"])
DEAD_LETTERS = Counter("receiver_dead_letters", "Deliveries given up on (dead).", ["crm"])
UNUSABLE_OPT_OUTS = Counter(
    "receiver_unusable_opt_outs",
    "ESP opt-outs (SendGrid unsubscribe, spam report) recorded as ignored: their address is unusable.", ["source"])
BACKFILL_RECOVERED = Counter(
    "receiver_backfill_recovered",
    "Opt-outs found by `receiver backfill` in a provider's own record that changed a state: the webhook lost them.",
    ["source"])
DELIVERY_LATENCY = Histogram(
    "receiver_delivery_latency_seconds", "From receiving the opt-out to the CRM confirming it.", ["crm"],
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))


class QueueCollector:
    """Gauges computed from the database at each scrape, whichever process did the work."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self):
        up = GaugeMetricFamily("receiver_database_up", "1 when the queue could be read from the database.")
        try:
            health = queue_health(self.engine)
        except Exception as exc:  # a scrape must still answer, with the process's own metrics
            log.warning("metrics: queue not readable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("receiver_queue_depth", "Pending deliveries.", value=health.queue_depth)
        yield GaugeMetricFamily("receiver_queue_oldest_pending_age_seconds",
                                "Age of the oldest pending delivery (0 when none).",
                                value=health.oldest_pending_age_seconds)
        yield GaugeMetricFamily("receiver_deliveries_dead", "Deliveries in the dead-letter state.",
                                value=health.dead)
        gauge = GaugeMetricFamily("receiver_clocks", "Compliance clocks by tenant, regime and stored status.",
                                  labels=["tenant", "regime", "status"])
        for tenant, regime, status, count in clocks.counts(self.engine):
            gauge.add_metric([tenant, regime, status], count)
        yield gauge


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def exposition(engine: Engine) -> bytes:
    """The text exposition of every process's metrics plus the queue gauges."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_InProcess())
    registry.register(QueueCollector(engine))
    return generate_latest(registry)


class _InProcess:
    """The default registry's metrics, without registering it inside another registry."""

    def collect(self):
        return REGISTRY.collect()


# A worker dyno given the variable has no gunicorn to create the directory, and writing a value
# into a missing directory would fail the delivery that counted it.
if multiprocess_dir():
    os.makedirs(multiprocess_dir(), exist_ok=True)
