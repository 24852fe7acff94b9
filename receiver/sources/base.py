"""The base every source kind builds on: read the body, check it is ours, parse it into signals.

A source verifies and parses; it does not touch the database or build HTTP answers. The fixed
``handle`` runs every ``verify`` defined along the class chain (a mixin's check can never be
skipped), then ``parse``.
"""

import hmac
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar
from urllib.parse import parse_qsl

from marshmallow import RAISE, Schema, ValidationError, fields
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.formparser import MultiPartParser
from werkzeug.http import parse_options_header

from ..errors import BadRequest, BadSignature, UnsupportedMediaType
from ..rotation import secret_list
from ..settings import Settings, SourceConfig
from ..signals import Inbound

MAX_BODY = 256 * 1024  # a kind's default cap on its request body
MAX_DEPTH = 32  # of JSON bodies: providers nest a few levels; more is an attack on the parser
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
# A signed Unix-seconds timestamp, exactly as signed: Python's int() and float() also take signs,
# spaces, underscores and fractions, which would let one signature stand for several headers.
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class HttpRequest:
    """The parts of a request a source may look at; ``body`` is the exact bytes received."""

    method: str
    path: str
    query_string: str
    headers: Headers
    body: bytes
    mimetype: str
    args: MultiDict

    @classmethod
    def from_flask(cls, request) -> "HttpRequest":
        """The request as received; the web layer has already read its body within the kind's cap."""
        return cls(
            method=request.method,
            path=request.path,
            query_string=request.query_string.decode("latin-1"),
            headers=request.headers,
            body=request.get_data(cache=True),
            mimetype=request.mimetype,
            args=request.args,
        )

    @cached_property
    def json(self):
        """The body as JSON (parsed once from the exact bytes the signature covered: treat it as
        read-only), or BadRequest naming the field at fault. Strings holding a lone surrogate are kept:
        a sender's free text may hold one (a subject cut mid-emoji), and refusing the body would lose
        its opt-out; the fields a source uses refuse them (identifiers and addresses)."""
        try:
            return parse_json(self.body, lone_surrogates=True)
        except InvalidJson as exc:
            raise BadRequest(str(exc), field=exc.field) from None

    @cached_property
    def form(self) -> MultiDict:
        """The body as form fields, blanks kept (Twilio signs them too); parsed once."""
        try:
            return MultiDict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            raise BadRequest("body: not UTF-8", field="body") from None

    @cached_property
    def multipart(self) -> MultiDict:
        """The fields of a multipart/form-data body (files dropped); parsed once."""
        boundary = parse_options_header(self.headers.get("Content-Type", ""))[1].get("boundary")
        if not boundary:
            raise BadRequest("body: multipart without a boundary", field="body")
        try:
            fields, _ = MultiPartParser(max_form_memory_size=len(self.body)).parse(
                io.BytesIO(self.body), boundary.encode("latin-1"), len(self.body))
        except (ValueError, UnicodeEncodeError):
            raise BadRequest("body: malformed multipart", field="body") from None
        return fields


class InvalidJson(ValueError):
    """A body that is not JSON the ledger can store; ``field`` names where (``body``: the text itself)."""

    def __init__(self, reason: str, field: str = "body"):
        super().__init__(f"{field}: {reason}")
        self.field = field


def _not_a_number(name: str):
    raise InvalidJson(f"not valid JSON ({name} is not a JSON number)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise InvalidJson("not valid JSON (a number out of range)")
    return value


def parse_json(data: bytes | str, *, lone_surrogates: bool = False):
    """JSON of a request body, or InvalidJson (a ValueError) naming the field at fault.

    Strict where Python's json module is lenient, so that what is parsed can be stored and answered:
    ``NaN``, ``Infinity`` and numbers that overflow to infinity are not JSON (RFC 8259) and
    PostgreSQL refuses them in a JSON column (a 503 the sender retries forever); a lone surrogate
    (``"\\ud800"`` escaped, or its raw bytes) is not Unicode and cannot be encoded to store or log
    (a 500 before this rule). Nesting deeper than MAX_DEPTH is refused too, so it never reaches
    Python's recursion limit, here or in code that later walks the value. ``lone_surrogates=True``
    keeps strings that hold them (still escaped when stored as JSON; never usable as ids or addresses).
    """
    try:
        value = json.loads(data, parse_constant=_not_a_number, parse_float=_finite)
    except InvalidJson:
        raise
    except (RecursionError, ValueError):  # ValueError: bad syntax, bad UTF-8, an int of over 4300 digits
        raise InvalidJson("not valid JSON") from None
    pending = [(value, 1, "")]
    while pending:
        item, depth, path = pending.pop()
        if isinstance(item, dict):
            children = [(child, f"{path}.{key}" if path else key) for key, child in item.items()]
            if not lone_surrogates:
                _unicode(item.keys(), path or "body", "a key")
        elif isinstance(item, list):
            children = [(child, f"{path}[{n}]") for n, child in enumerate(item)]
        else:
            children = []
        for child, where in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise InvalidJson("not valid JSON")
                pending.append((child, depth + 1, where))
            elif isinstance(child, str) and not lone_surrogates:
                _unicode((child,), where, "the value")
    if isinstance(value, str) and not lone_surrogates:
        _unicode((value,), "body", "the value")
    return value


def _unicode(texts, field: str, what: str) -> None:
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson(f"{what} holds a lone surrogate (\\ud800-\\udfff escape), not Unicode", field) from None


class OptionsSchema(Schema):
    """A source kind's config options; unknown keys are a config error."""

    class Meta:
        unknown = RAISE


class Secrets(fields.Field):
    """One secret, or a non-empty list of them while rotating, loaded as a list; a wrong one fails at start-up.

    A kind whose secrets need decoding overrides ``convert``, which names a bad entry by its position.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        try:
            values = secret_list(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return [self.convert(text, position) for position, text in enumerate(values, start=1)]

    def convert(self, text: str, position: int):
        return text


def unix_seconds(value) -> int | None:
    """A timestamp header or field as signed (``[0-9]{1,12}``) in seconds, else None."""
    return int(value) if isinstance(value, str) and UNIX_SECONDS.fullmatch(value) else None


def secret_matches(given: str | None, expected: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted secret (rotation)."""
    if not given:
        return False
    found = False
    for candidate in expected:
        found |= hmac.compare_digest(given.encode(), candidate.encode())
    return found


class Source:
    kind: ClassVar[str]
    options_schema: ClassVar[type[Schema]] = OptionsSchema
    content_types: ClassVar[tuple[str, ...]] = (FORM,)
    answer: ClassVar[str] = "json"  # "twiml" for Twilio
    max_body: ClassVar[int] = MAX_BODY  # bytes; the web layer refuses a longer body with 413

    def __init__(self, config: SourceConfig, settings: Settings):
        self.config = config
        self.settings = settings
        self.options = config.options

    def handle(self, request: HttpRequest) -> Inbound:
        if request.mimetype not in self.content_types:
            raise UnsupportedMediaType(f"content type must be {' or '.join(self.content_types)}")
        for cls in reversed(type(self).__mro__):
            verify = cls.__dict__.get("verify")
            if verify is not None:
                verify(self, request)
        return self.parse(request)

    def verify(self, request: HttpRequest) -> None:
        if request.method != "POST":
            raise BadSignature("only POST is accepted")

    def parse(self, request: HttpRequest) -> Inbound:
        raise NotImplementedError

    def hmac_secrets(self) -> list[bytes]:
        """Secrets shared with the sender, to add a ``v1`` HMAC to the receipt (none by default)."""
        return []

    def help_text(self) -> str | None:
        return None
