"""POST /hooks/<source>: verify, parse, record, then answer with a signed acknowledgement."""

from flask import Blueprint, Response, request

from .. import metrics
from ..errors import NotFound
from ..ledger.record import Outcome
from ..services import services
from ..signals import HELP, Inbound
from ..sources.base import HttpRequest, Source
from .answers import answer_json, counted, receipt_headers

bp = Blueprint("hooks", __name__)


def answer_twiml(source: Source, inbound: Inbound, outcome: Outcome) -> bytes:
    text = source.help_text() if HELP in outcome.kinds and not inbound.sender_replied else None
    if not text:
        return b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    from xml.sax.saxutils import escape

    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(text)}</Message></Response>'.encode()


def signed(body: bytes, content_type: str, outcome: Outcome, source: Source) -> Response:
    headers = receipt_headers(body, outcome, source.hmac_secrets())
    return Response(body, 200, content_type=content_type, headers=headers)


@bp.post("/hooks/<name>")
def hook(name: str):
    source = services().sources.get(name)
    if source is None:
        raise NotFound(f"unknown source {name!r}")
    inbound_request = HttpRequest.from_flask(request)
    inbound = source.handle(inbound_request)
    outcome = services().ledger.record(source.config, inbound, inbound_request.body)
    counted(name, source.config.kind, outcome)
    if source.answer == "twiml":
        return signed(answer_twiml(source, inbound, outcome), "text/xml; charset=utf-8", outcome, source)
    return signed(answer_json(name, outcome), "application/json", outcome, source)


@bp.after_request
def count_signature_failures(response: Response) -> Response:
    """Error answers pass here too: a 401 of a configured source is a signature or token failure."""
    name = (request.view_args or {}).get("name")
    if response.status_code == 401 and name in services().sources:
        metrics.SIGNATURE_FAILURES.labels(name).inc()
    return response
