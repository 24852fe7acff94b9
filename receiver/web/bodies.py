"""Request bodies: read once, within their cap, before any view; JSON parsed with a nesting limit.

The cap is the source kind's own (``Source.max_body``) for ``/hooks/<name>``, else ``MAX_BODY``.
A body over it is 413 whether it came with ``Content-Length`` or chunked: werkzeug's own limit on
a chunked stream silently cuts the body at the cap, so the body is read here to one byte past the
cap and refused when that byte exists. Views then read ``request.get_data()``, the cached bytes.
"""

from flask import Blueprint, request
from flask.json.provider import DefaultJSONProvider

from ..errors import BadRequest, PayloadTooLarge
from ..services import services
from ..sources.base import MAX_BODY, InvalidJson, parse_json

bp = Blueprint("bodies", __name__)
DRAIN_LIMIT = 4 * MAX_BODY
_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")


def body_cap() -> int:
    """This request's cap: its source kind's for a hook, the default for everything else."""
    if request.endpoint == "hooks.hook":
        source = services().sources.get((request.view_args or {}).get("name", ""))
        if source is not None:
            return source.max_body
    return MAX_BODY


@bp.before_app_request
def read_body() -> None:
    """Read and cache the body, or refuse it with 413 (``before_request``)."""
    if request.method not in _WITH_BODY:
        return
    cap = body_cap()
    length = request.content_length
    if length is not None and length > cap:
        _drain(request.environ["wsgi.input"], length)
        raise PayloadTooLarge(f"body over {_size(cap)}")
    request.max_content_length = cap + 1  # one byte past the cap tells an over-long chunked body
    if len(request.get_data(cache=True)) > cap:
        _drain(request.environ["wsgi.input"], DRAIN_LIMIT)
        raise PayloadTooLarge(f"body over {_size(cap)}")


def _size(cap: int) -> str:
    return f"{cap // (1024 * 1024)} MiB" if cap % (1024 * 1024) == 0 else f"{cap // 1024} KiB"


def _drain(stream, length: int) -> None:
    """Read and drop a refused body of moderate size, so the kept-alive connection stays usable.

    Left unread, the server may close the connection under the client's next request.
    """
    left = min(length, DRAIN_LIMIT)
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def json_body():
    """The request's JSON body by the sources' parsing rules, or BadRequest naming the field at fault
    (``get_json(silent=True)`` would say only that it is not JSON)."""
    try:
        return parse_json(request.get_data(cache=True))
    except InvalidJson as exc:
        raise BadRequest(str(exc), field=exc.field) from None


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON with the sources' parsing rules, so ``get_json`` refuses what they refuse."""

    sort_keys = False

    def loads(self, s, **kwargs):
        return parse_json(s)


@bp.record_once
def _use_json_provider(state) -> None:
    state.app.json = JsonProvider(state.app)
