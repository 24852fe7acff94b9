"""gunicorn settings: bind 0.0.0.0:$PORT with WEB_CONCURRENCY workers; logs masked, no query strings."""

import sys

from receiver.errors import ConfigError
from receiver.settings import load_settings

try:
    _settings = load_settings()  # validated once in the master: a bad setting stops start-up here
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
accesslog = "-"
# %(U)s is the path without its query string: tokens in ?token= never reach the log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
logger_class = "receiver.logs.GunicornLogger"
