"""The base every source kind builds on: read the body, check it is ours, parse it into signals.

A source verifies and parses; it does not touch the database or build HTTP answers. The fixed
``handle`` runs every ``verify`` defined along the class chain (a mixin's check can never be
skipped), then ``parse``.
"""

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar
from urllib.parse import parse_qsl

from marshmallow import RAISE, Schema, ValidationError, fields
from werkzeug.datastructures import Headers, MultiDict

from ..errors import BadRequest, BadSignature, PayloadTooLarge, UnsupportedMediaType
from ..settings import Settings, SourceConfig
from ..signals import Inbound

MAX_BODY = 256 * 1024
DRAIN_LIMIT = 4 * MAX_BODY
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


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
        length = request.content_length
        if length is not None and length > MAX_BODY:
            _drain(request.environ["wsgi.input"], length)
            raise PayloadTooLarge(f"body over {MAX_BODY // 1024} KiB")
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"body over {MAX_BODY // 1024} KiB")
        return cls(
            method=request.method,
            path=request.path,
            query_string=request.query_string.decode("latin-1"),
            headers=request.headers,
            body=body,
            mimetype=request.mimetype,
            args=request.args,
        )

    def json(self):
        """The body as JSON (parsed from the exact bytes the signature covered)."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("body: not valid JSON", field="body") from None

    @cached_property
    def form(self) -> MultiDict:
        """The body as form fields, blanks kept (Twilio signs them too); parsed once."""
        try:
            return MultiDict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            raise BadRequest("body: not UTF-8", field="body") from None


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


class OptionsSchema(Schema):
    """A source kind's config options; unknown keys are a config error."""

    class Meta:
        unknown = RAISE


class Secrets(fields.Field):
    """One secret, or a non-empty list of them while rotating; a wrong type fails at start-up."""

    def _deserialize(self, value, attr, data, **kwargs):
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ValidationError("must be a non-empty string or a non-empty list of them")
        return value


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
