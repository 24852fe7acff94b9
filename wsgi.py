"""The WSGI entry point for gunicorn (``web: gunicorn wsgi:app``)."""

import sys

from receiver import create_app
from receiver.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"receiver: configuration error: {exc}\n")
    sys.exit(2)
