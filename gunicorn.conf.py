"""gunicorn settings: bind 0.0.0.0:$PORT with WEB_CONCURRENCY workers; logs masked; metrics across workers.

The request log is the app's own JSON line per request (receiver/web/requestlog.py: request id,
path without query string, source, status, outcome, duration), so gunicorn's access log is off.
"""

import glob
import os
import sys
import tempfile

# Prometheus multiprocess mode (receiver/metrics.py): prometheus-client chooses file-backed values
# when it is first imported, so the directory must be in the environment before anything imports it
# (the source kinds count) and before the workers fork. Set here, it survives a configuration
# reload (SIGHUP) unchanged.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="receiver-metrics-")

from receiver.errors import ConfigError  # noqa: E402
from receiver.settings import load_settings  # noqa: E402
from receiver.sources import configure  # noqa: E402

try:
    _settings = configure(load_settings())  # validated once in the master: a bad setting stops start-up here
except ConfigError as exc:
    sys.stderr.write(f"receiver: configuration error: {exc}\n")
    sys.exit(2)

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gthread"
threads = 4
timeout = 30
graceful_timeout = 25
keepalive = 5
accesslog = None
# gunicorn's control socket (one path per user) is unused here, and two instances on one machine
# (make run next to the tests or the benchmark) would fight over it.
control_socket_disable = True
logger_class = "receiver.logs.GunicornLogger"


def on_starting(server):
    """Start the counts afresh: drop the files of processes that are gone (a previous run's workers).

    Files of live processes stay: a ``receiver worker`` on this host may share the directory.
    """
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = os.path.basename(name)[:-3].rsplit("_", 1)[-1]
        if not (pid.isdigit() and _alive(int(pid))):
            os.remove(name)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
