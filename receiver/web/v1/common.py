"""What every /v1 endpoint shares: the blueprint and its bearer check, the JSON body, tenant names, pages."""

import hmac
from collections.abc import Callable
from datetime import UTC, datetime, time

from flask import Blueprint, current_app, g, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ...access.credentials import TOKEN_PREFIX
from ...access.roles import BOOTSTRAP, Permission, Principal
from ...errors import BadRequest, BadSignature, Forbidden, NotFound, UnsupportedMediaType
from ...ledger.operators import any_operator, principal_for_token
from ...schemas import text
from ...services import services
from ..bodies import json_body as parsed_json

bp = Blueprint("v1", __name__, url_prefix="/v1")


def allow(permission: Permission) -> Callable:
    """Declare the permission a /v1 view needs; a view without one is refused to everyone."""

    def declare(view):
        view.permission = permission
        return view

    return declare


@bp.before_request
def authenticate():
    """The bearer token as a Principal in ``g.principal``, then the role's check of the view's permission."""
    admin_token = services().settings.admin_token
    if not admin_token and not any_operator(services().engine):
        raise NotFound("the operator API is off (no RECEIVER_ADMIN_TOKEN and no operator)")
    g.principal = principal = _bearer(admin_token)
    view = current_app.view_functions.get(request.endpoint)
    if view is None:  # no route matched: the 404 / 405 stands
        return
    permission = getattr(view, "permission", None)
    if permission is None:
        raise Forbidden(f"{request.endpoint} declares no permission")
    principal.require(permission)


def _bearer(admin_token: str | None) -> Principal:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        if admin_token and hmac.compare_digest(given.encode(), admin_token.encode()):
            return BOOTSTRAP
        if given.startswith(TOKEN_PREFIX):
            found = principal_for_token(services().engine, given)
            if found is not None:
                return found
    raise BadSignature("Authorization: a bearer token (an operator's, or RECEIVER_ADMIN_TOKEN) is required",
                       headers={"WWW-Authenticate": 'Bearer realm="receiver"'})


def principal() -> Principal:
    return g.principal


def json_body() -> dict:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("content type must be application/json")
    return parsed_json()


def known_tenant(name: str | None, field: str = "tenant") -> str | None:
    """A tenant the request names: another's (or, for a scoped operator, an unknown one) is 404."""
    if name is not None and not principal().can_see(name):
        raise NotFound(f"{field}: {name!r} not found", field=field)
    if name is not None and name not in services().settings.tenants:
        raise BadRequest(f"{field}: unknown tenant {name!r}", field=field)
    return name


def visible_tenants() -> list[str] | None:
    """The tenants a list may hold: None for every tenant (admins), else the principal's own."""
    who = principal()
    return None if who.tenants is None else sorted(who.tenants)


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
