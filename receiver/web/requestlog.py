"""One JSON log line per request, and the request id echoed as ``X-Request-ID``.

Heroku's router gives every request an ``X-Request-ID`` and logs it too, so its line and ours can be
matched; without one (or with one we would not want in a log) an id is generated. The path is logged
without its query string (CRM Text's callback token travels there) and with any ``/u/<token>``
masked; bodies are never logged.
"""

import logging
import re
import time
import uuid

from flask import Blueprint, Response, g, request

from ..logs import mask_text

bp = Blueprint("requestlog", __name__)
log = logging.getLogger("receiver.requests")

HEADER = "X-Request-ID"
_USABLE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,200}")


def note_outcome(outcome: str, source: str | None = None) -> None:
    """What the request came to (accepted, duplicate, ignored), and the channel when not a hook."""
    g.request_outcome = outcome
    if source:
        g.request_source = source


@bp.before_app_request
def start() -> None:
    g.request_started = time.perf_counter()
    given = request.headers.get(HEADER, "")
    g.request_id = given if _USABLE_ID.fullmatch(given) else uuid.uuid4().hex


@bp.after_app_request
def finish(response: Response) -> Response:
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[HEADER] = request_id
    fields = {"request_id": request_id, "method": request.method, "path": mask_text(request.path)}
    if request.url_rule is not None and request.url_rule.endpoint == "hooks.hook":
        fields["source"] = str((request.view_args or {}).get("name", ""))[:64]
    elif g.get("request_source"):
        fields["source"] = g.request_source
    fields["status"] = response.status_code
    outcome = g.get("request_outcome") or _error_of(response)
    if outcome:
        fields["outcome"] = outcome
    started = g.get("request_started")
    if started is not None:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    log.log(logging.WARNING if response.status_code >= 500 else logging.INFO, "request", extra={"fields": fields})
    return response


def _error_of(response: Response) -> str | None:
    """The ``error`` of a JSON failure answer (the guest's pages answer errors as HTML: status only)."""
    if response.status_code < 400 or not response.is_json or response.is_streamed:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:200] if error else None
