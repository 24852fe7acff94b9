"""The operator API under /v1: bearer RECEIVER_ADMIN_TOKEN, and all of it 404 when that is unset."""

import hmac

from flask import Blueprint, jsonify, request
from marshmallow import RAISE, Schema, fields, validate

from ..errors import BadRequest, BadSignature, NotFound, UnsupportedMediaType
from ..links import SCOPES, make_link
from ..schemas import TEXT_ERRORS, join, load, text
from ..services import services

bp = Blueprint("admin", __name__, url_prefix="/v1")
MAX_LINKS = 1000
ONE_CLICK = "List-Unsubscribe=One-Click"


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


class LinkSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, 100, required=True)
    email = text(3, 254, required=True)
    phone = text(0, 64, load_default=None, allow_none=True)
    scope = fields.String(load_default="marketing", error_messages=TEXT_ERRORS, validate=validate.OneOf(
        SCOPES, error="must be marketing or all"))
    campaign = text(0, 64, load_default=None, allow_none=True)


class LinksBatchSchema(Schema):
    class Meta:
        unknown = RAISE

    links = fields.List(fields.Nested(LinkSchema), required=True, validate=validate.Length(
        1, MAX_LINKS, error=f"must be a list of 1 to {MAX_LINKS} links"),
        error_messages={"required": "missing", "invalid": "must be a list"})


@bp.post("/links")
def issue_links():
    body = json_body()
    if isinstance(body, dict) and "links" in body:
        entries = load(LinksBatchSchema(), body)["links"]
        return jsonify(links=[_link(entry, f"links[{n}]") for n, entry in enumerate(entries)]), 201
    return jsonify(_link(load(LinkSchema(), body), "")), 201


def _link(data: dict, path: str) -> dict:
    if data["tenant"] not in services().settings.tenants:
        where = join(path, "tenant")
        raise BadRequest(f"{where}: unknown tenant {data['tenant']!r}", field=where)
    link = make_link(data["tenant"], data["email"], data["phone"] or None, data["scope"], data["campaign"],
                     path=path)
    url = services().links.url(link)
    return {"url": url, "headers": {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}}
