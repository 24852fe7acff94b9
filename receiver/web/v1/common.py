"""What every /v1 endpoint shares: the blueprint and its bearer check, the JSON body, tenant names, pages."""

import hmac
from datetime import UTC, datetime, time

from flask import Blueprint, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ...errors import BadRequest, BadSignature, NotFound, UnsupportedMediaType
from ...schemas import text
from ...services import services

bp = Blueprint("v1", __name__, url_prefix="/v1")


@bp.before_request
def require_admin_token():
    expected = services().settings.admin_token
    if not expected:
        raise NotFound("the operator API is off (RECEIVER_ADMIN_TOKEN is not set)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise BadSignature("Authorization: a bearer token (RECEIVER_ADMIN_TOKEN) is required",
                           headers={"WWW-Authenticate": 'Bearer realm="receiver"'})


def json_body() -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("content type must be application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("body: not valid JSON", field="body")
    return body


def known_tenant(name: str | None, field: str = "tenant") -> str | None:
    if name is not None and name not in services().settings.tenants:
        raise BadRequest(f"{field}: unknown tenant {name!r}", field=field)
    return name


class Since(fields.Field):
    """A date (``2026-11-01``) or an ISO 8601 time with a zone; read as UTC midnight for a date."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"type": "string", "description": "YYYY-MM-DD or an ISO 8601 time with a zone"},
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            moment = fields.AwareDateTime(format="iso", default_timezone=None).deserialize(value)
        except ValidationError:
            try:
                moment = datetime.combine(fields.Date().deserialize(value), time(), UTC)
            except ValidationError:
                raise ValidationError("must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone") from None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("out of range") from None


class ListQuery(Schema):
    class Meta:
        unknown = RAISE

    cursor = text(1, 200)
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000, error="must be 1 to 1000"),
                           error_messages={"invalid": "not a number"})


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The answer schema of a list: ``{"items": [item...], "next_cursor": "..." | null}``."""
    return Schema.from_dict({
        "items": fields.List(fields.Nested(item), required=True),
        "next_cursor": fields.String(required=True, allow_none=True),
    }, name=name)
