"""The HTTP layer: blueprints, and the one place errors become HTTP answers."""

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from ..errors import ReceiverError

log = logging.getLogger(__name__)


def register_blueprints(app: Flask) -> None:
    from . import hooks, ops

    app.register_blueprint(hooks.bp)
    app.register_blueprint(ops.bp)


def _error(status: int, message: str, field: str | None = None):
    body = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(ReceiverError)
    def receiver_error(exc: ReceiverError):
        if exc.status >= 500:
            log.warning("refused with %s: %s (cause: %r)", exc.status, exc.message, exc.__cause__)
        return _error(exc.status, exc.message, exc.field)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        body, status = _error(exc.code or 500, exc.description or exc.name)
        # Keep werkzeug's own headers (Allow on a 405 is required by RFC 9110), not its HTML type.
        headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
        return body, status, headers

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError):
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return _error(503, "the database is unavailable; retry later")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return _error(500, "internal error")
