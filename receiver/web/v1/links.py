"""POST /v1/links: unsubscribe links and their List-Unsubscribe headers, one or a batch."""

from flask import jsonify
from marshmallow import RAISE, Schema, fields, validate

from ...access.roles import Permission
from ...errors import BadRequest
from ...links import SCOPES, make_link
from ...schemas import MAX_EMAIL, MAX_PHONE_INPUT, TEXT_ERRORS, join, load, text
from ...services import services
from .common import allow, bp, json_body

MAX_LINKS = 1000
ONE_CLICK = "List-Unsubscribe=One-Click"


class LinkSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, 100, required=True)
    email = text(3, MAX_EMAIL, required=True)
    phone = text(0, MAX_PHONE_INPUT, load_default=None, allow_none=True)
    scope = fields.String(load_default="marketing", error_messages=TEXT_ERRORS, validate=validate.OneOf(
        SCOPES, error="must be marketing or all"))
    campaign = text(0, 64, load_default=None, allow_none=True)


class LinksBatchSchema(Schema):
    class Meta:
        unknown = RAISE

    links = fields.List(fields.Nested(LinkSchema), required=True, validate=validate.Length(
        1, MAX_LINKS, error=f"must be a list of 1 to {MAX_LINKS} links"),
        error_messages={"required": "missing", "invalid": "must be a list"})


class ListUnsubscribeHeaders(Schema):
    list_unsubscribe = fields.String(required=True, data_key="List-Unsubscribe")
    list_unsubscribe_post = fields.String(required=True, data_key="List-Unsubscribe-Post")


class LinkAnswer(Schema):
    url = fields.String(required=True)
    headers = fields.Nested(ListUnsubscribeHeaders, required=True)


class LinksAnswer(Schema):
    links = fields.List(fields.Nested(LinkAnswer), required=True)


@bp.post("/links")
@allow(Permission.LINKS)
def issue_links():
    body = json_body()
    if isinstance(body, dict) and "links" in body:
        entries = load(LinksBatchSchema(), body)["links"]
        links = [_link(entry, f"links[{n}]") for n, entry in enumerate(entries)]
        return jsonify(LinksAnswer().dump({"links": links})), 201
    return jsonify(LinkAnswer().dump(_link(load(LinkSchema(), body), ""))), 201


def _link(data: dict, path: str) -> dict:
    if data["tenant"] not in services().settings.tenants:
        where = join(path, "tenant")
        raise BadRequest(f"{where}: unknown tenant {data['tenant']!r}", field=where)
    link = make_link(data["tenant"], data["email"], data["phone"] or None, data["scope"], data["campaign"],
                     path=path)
    url = services().links.url(link)
    return {"url": url, "headers": {"list_unsubscribe": f"<{url}>", "list_unsubscribe_post": ONE_CLICK}}
