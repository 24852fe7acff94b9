"""The HTTP layer: blueprints, and the one place errors become HTTP answers."""

import logging

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from marshmallow import Schema, fields
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from ..errors import ReceiverError

log = logging.getLogger(__name__)


def register_blueprints(app: Flask) -> None:
    from . import bodies, forms, headers, health, hooks, openapi, requestlog, unsubscribe, v1
    from .console import bp as console_bp

    app.register_blueprint(requestlog.bp)  # first, so its clock starts before any other hook runs
    app.register_blueprint(bodies.bp)  # then the body, read within its cap before any view
    app.register_blueprint(headers.bp)
    app.register_blueprint(v1.bp)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(unsubscribe.bp)
    app.register_blueprint(forms.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console_bp)


class ErrorAnswer(Schema):
    error = fields.String(required=True, metadata={"description": "what is wrong, naming the field first"})
    field = fields.String(metadata={"description": "the field at fault, when there is one"})


def _error(status: int, message: str, field: str | None = None):
    if _wants_html():
        return _error_page(status, message), status
    body = {"error": message}
    if field:
        body["field"] = field
    return jsonify(ErrorAnswer().dump(body)), status


def _wants_html() -> bool:
    """The guest's pages answer errors as pages; the plain form as the client prefers; the rest JSON."""
    from .forms import prefers_html

    if request.blueprint in ("unsubscribe", "console") or request.path.startswith("/u/"):
        return True
    return request.blueprint == "forms" and prefers_html()


def _error_page(status: int, message: str) -> str:
    from .answers import page_language

    if status == 404:
        heading, message = _("Link not found"), _(
            "This link is not valid. If you copied it from an email, check that it is complete.")
    elif status >= 500:
        heading, message = _("Please try again"), _(
            "We could not save your choice just now. Nothing was changed; please try again in a minute.")
    else:
        heading = _("Something is not right")
    return render_template("message.html", lang=page_language(), heading=heading, message=message, problem=True)


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(ReceiverError)
    def receiver_error(exc: ReceiverError):
        if exc.status >= 500:
            log.warning("refused with %s: %s (cause: %r)", exc.status, exc.message, exc.__cause__)
        body, status = _error(exc.status, exc.message, exc.field)
        return body, status, exc.headers

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
