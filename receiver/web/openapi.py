"""GET /openapi.json: the OpenAPI 3 document, built by apispec from the endpoints' own marshmallow schemas.

Inputs are described by the schemas the endpoints load, answers by the schemas they dump (web/v1/,
web/answers.py, web/health.py, web/forms.py, sources/standard_webhooks.py), so the document
cannot drift from what is enforced and answered. The suite runs schemathesis against it, on a
ledger holding data (tests/unit/web/test_openapi.py).
"""

from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, fields, validate

from ..sources.staff import StaffOptOutSchema
from ..sources.standard_webhooks import EventSchema
from ..sources.web_form import UnsubscribeFormSchema
from ..states import STATES
from . import ErrorAnswer
from .answers import ReceiptAnswer
from .health import HealthAnswer, JwkSet, ReadyAnswer
from .v1.clocks import ChainHead, ChainQuery, ClocksPage, ClocksQuery
from .v1.consent import CheckAnswer, ConsentAnswer, ConsentCheckSchema, ConsentQuery
from .v1.deliveries import DeliveriesPage, DeliveriesQuery, ReplayAnswer
from .v1.erasure import ErasureAnswer, ErasureSchema
from .v1.events import EventsPage, EventsQuery
from .v1.export import ExportQuery
from .v1.links import LinkAnswer, LinksAnswer, LinksBatchSchema, LinkSchema
from .v1.proof import ProofAnswer, ProofQuery
from .v1.review import DecisionAnswer, DecisionSchema, ReviewPage, ReviewQuery

bp = Blueprint("openapi", __name__)
VERSION = "1.0.0"


class EventsBatch(Schema):
    events = fields.List(fields.Nested(EventSchema), required=True, validate=validate.Length(1, 1000))


# -- the document ----------------------------------------------------------------------------------

RECEIPT_HEADERS = {
    "webhook-id": {"description": "the receipt id", "schema": {"type": "string"}},
    "webhook-timestamp": {"description": "Unix seconds", "schema": {"type": "string"}},
    "webhook-signature": {"description": "`v1a,<Ed25519>` (keys at /.well-known/receipt-keys); partners of "
                                         "kind standard-webhooks also get `v1,<HMAC-SHA256>`",
                          "schema": {"type": "string"}},
}
HTML = {"text/html": {"schema": {"type": "string"}}}


def _json(schema, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int, html: bool = False) -> dict:
    texts = {400: "bad input (the field is named)", 401: "missing or wrong signature or credential",
             403: "this role may not do this", 404: "not found", 405: "method not allowed", 409: "conflict",
             413: "body over its cap (256 KiB; 2 MiB for sendgrid sources)",
             415: "wrong content type", 429: "too many posts from this address (see Retry-After)",
             503: "not stored: the database is unavailable; retry"}
    answers = {}
    for status in statuses:
        content = {**HTML, "application/json": {"schema": ErrorAnswer}} if html else {
            "application/json": {"schema": ErrorAnswer}}
        answers[str(status)] = {"description": texts[status], "content": content}
    return answers


def build_spec(public_base_url: str) -> dict:
    # apispec is loaded here, on the first GET /openapi.json, not in every web worker at start.
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec(title="receiver", version=VERSION, openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   servers=[{"url": public_base_url}],
                   info={"description": "Opt-out receiver: takes guests' opt-outs from every channel, records them "
                                        "durably, answers with signed receipts and delivers them to the CRMs."})
    spec.components.security_scheme("admin", {
        "type": "http", "scheme": "bearer",
        "description": "an operator's token (receiver operator token EMAIL) or RECEIVER_ADMIN_TOKEN; /v1 is off "
                       "(404) while neither exists. A role without the call's permission: 403; another "
                       "tenant's data: 404"})
    spec.components.schema("PartnerEvent", schema=EventSchema)
    admin = [{"admin": []}]
    v1_errors = _errors(400, 401, 403, 404, 503)

    spec.path(path="/hooks/{source}", operations={"post": {
        "summary": "An inbound opt-out from a configured source (Twilio, CRM Text, partners, ESPs)",
        "parameters": [{"in": "path", "name": "source", "required": True, "schema": {"type": "string"}},
                       {"in": "query", "name": "token", "required": False, "schema": {"type": "string"},
                        "description": "CRM Text callback token"}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [EventSchema, EventsBatch, {"type": "array", "items": {}},
                                                      {"type": "object"}]}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": True}},
            "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}}}},  # Mailgun legacy
        "responses": {
            "200": {"description": "recorded (or a duplicate): the signed receipt; Twilio gets TwiML",
                    "headers": RECEIPT_HEADERS, "content": {"application/json": {"schema": ReceiptAnswer},
                                                            "text/xml": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 404, 413, 415, 503)},
    }})
    token = [{"in": "path", "name": "token", "required": True, "schema": {"type": "string"}}]
    page = {"parameters": token, "responses": {"200": {"description": "the guest's page", "content": HTML},
                                               **_errors(404, html=True)}}
    spec.path(path="/u/{token}", operations={
        "get": {"summary": "The guest's preference page; changes nothing", **page},
        "head": {"summary": "As GET, without the body; changes nothing", **page},
        "post": {
            "summary": "RFC 8058 one-click (List-Unsubscribe=One-Click) or the page's form (choice, csrf)",
            "parameters": token,
            "requestBody": {"required": True, "content": {
                media: {"schema": {"type": "object", "properties": {
                    "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
                    "choice": {"type": "array", "items": {"type": "string", "enum": list(STATES)}},
                    "csrf": {"type": "string"}}}}
                for media in ("application/x-www-form-urlencoded", "multipart/form-data")}},
            "responses": {
                "200": {"description": "one-click: the signed receipt; the page's form: the page with the new state",
                        "headers": RECEIPT_HEADERS,
                        "content": {"application/json": {"schema": ReceiptAnswer}, **HTML}},
                **_errors(400, 404, 413, 415, html=True)},
        },
    })
    form_answers = {
        "200": {"description": "the JSON receipt, or an HTML page when the client prefers HTML",
                "headers": RECEIPT_HEADERS, "content": {"application/json": {"schema": ReceiptAnswer}, **HTML}},
        "303": {"description": "stored; to the tenant's forms_return_url", "headers": RECEIPT_HEADERS},
        **_errors(400, 404, 413, 415, 429, 503, html=True)}
    spec.path(path="/forms/unsubscribe", operations={
        "post": {"summary": "A plain unsubscribe form on a hotel's site: marketing states only",
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": UnsubscribeFormSchema},
                     "application/x-www-form-urlencoded": {"schema": UnsubscribeFormSchema}}},
                 "responses": form_answers},
        "options": {"summary": "CORS preflight for the tenants' forms_origins",
                    "responses": {"204": {"description": "allowed origins get Access-Control-Allow-Origin"}}},
    })

    spec.path(path="/v1/links", operations={"post": {
        "summary": "Unsubscribe links and List-Unsubscribe headers, one or up to 1000", "security": admin,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [LinkSchema, LinksBatchSchema]}}}},
        "responses": {"201": _json({"oneOf": [LinkAnswer, LinksAnswer]}, "the links, in order"),
                      **_errors(400, 401, 403, 404, 413, 415)},
    }})
    spec.path(path="/v1/consent", operations={"get": {
        "summary": "The states in force for one guest", "security": admin,
        "parameters": [{"in": "query", "schema": ConsentQuery}],
        "responses": {"200": _json(ConsentAnswer, "states; {} when none"), **v1_errors},
    }})
    spec.path(path="/v1/consent/check", operations={"post": {
        "summary": "Who may receive marketing / transactional email and SMS (up to 1000)", "security": admin,
        "requestBody": {"required": True, "content": {"application/json": {"schema": ConsentCheckSchema}}},
        "responses": {"200": _json(CheckAnswer, "one answer per recipient, in order"),
                      **_errors(400, 401, 403, 404, 413, 415, 503)},
    }})
    spec.path(path="/v1/events", operations={"get": {
        "summary": "The audit trail: every signal, oldest first, cursor-paginated", "security": admin,
        "parameters": [{"in": "query", "schema": EventsQuery}],
        "responses": {"200": _json(EventsPage, "a page"), **v1_errors},
    }})
    spec.path(path="/v1/deliveries", operations={"get": {
        "summary": "CRM deliveries with their attempts and the CRM's last answer", "security": admin,
        "parameters": [{"in": "query", "schema": DeliveriesQuery}],
        "responses": {"200": _json(DeliveriesPage, "a page"), **v1_errors},
    }})
    spec.path(path="/v1/deliveries/{delivery_id}/replay", operations={"post": {
        "summary": "Put a dead delivery back in the queue (409 when it is owed no more, or skipped)",
        "security": admin,
        "parameters": [{"in": "path", "name": "delivery_id", "required": True,
                        "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": _json(ReplayAnswer, "queued again"), **_errors(401, 403, 404, 409, 503)},
    }})
    spec.path(path="/v1/opt-outs", operations={"post": {
        "summary": "An opt-out staff took (phone call, front desk, letter…): source staff (agent, admin)",
        "security": admin,
        "requestBody": {"required": True, "content": {"application/json": {"schema": StaffOptOutSchema}}},
        "responses": {"201": _json(ReceiptAnswer, "recorded: the signed receipt", RECEIPT_HEADERS),
                      **_errors(400, 401, 403, 404, 413, 415, 503)},
    }})
    spec.path(path="/v1/review", operations={"get": {
        "summary": "Texts flagged for review, oldest first", "security": admin,
        "parameters": [{"in": "query", "schema": ReviewQuery}],
        "responses": {"200": _json(ReviewPage, "a page"), **v1_errors},
    }})
    spec.path(path="/v1/review/{event_id}", operations={"post": {
        "summary": "Decide a flagged text: honour (records sms_ban, source review) or dismiss (agent, admin)",
        "security": admin,
        "parameters": [{"in": "path", "name": "event_id", "required": True,
                        "description": "the item's id (as in /v1/review and /v1/events)",
                        "schema": {"type": "integer", "minimum": 0}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": DecisionSchema}}},
        "responses": {"200": _json(DecisionAnswer, "decided: the signed answer", RECEIPT_HEADERS),
                      **_errors(400, 401, 403, 404, 409, 413, 415, 503)},
    }})
    spec.path(path="/v1/clocks", operations={"get": {
        "summary": "A tenant's compliance clocks, oldest deadline (honour_by) first, cursor-paginated",
        "security": admin, "parameters": [{"in": "query", "schema": ClocksQuery}],
        "responses": {"200": _json(ClocksPage, "a page"), **v1_errors},
    }})
    spec.path(path="/v1/chain", operations={"get": {
        "summary": "The head of a tenant's hash chain, signed like a receipt (keep it elsewhere)",
        "security": admin, "parameters": [{"in": "query", "schema": ChainQuery}],
        "responses": {"200": _json(ChainHead, "the head", RECEIPT_HEADERS), **v1_errors},
    }})
    spec.path(path="/v1/proof", operations={"get": {
        "summary": "One guest's proof: states, signals, deliveries with the CRMs' answers, clocks, chain hashes; "
                   "signed like a receipt (200 with empty lists for an unknown guest)",
        "security": admin, "parameters": [{"in": "query", "schema": ProofQuery}],
        "responses": {"200": _json(ProofAnswer, "the proof", RECEIPT_HEADERS), **v1_errors},
    }})
    spec.path(path="/v1/erasure", operations={"post": {
        "summary": "Remove a guest's email or phone from every row, keeping their opt-outs under its keyed hash; "
                   "the erasure is itself a signal in the chain",
        "security": admin,
        "requestBody": {"required": True, "content": {"application/json": {"schema": ErasureSchema}}},
        "responses": {"200": _json(ErasureAnswer, "erased"), **_errors(400, 401, 404, 413, 415, 503)},
    }})
    spec.path(path="/v1/export.csv", operations={"get": {
        "summary": "One row per identity and state in force, streamed", "security": admin,
        "parameters": [{"in": "query", "schema": ExportQuery}],
        "responses": {"200": {"description": "tenant,identity,state,since",
                              "content": {"text/csv": {"schema": {"type": "string"}}}}, **v1_errors},
    }})

    spec.path(path="/healthz", operations={"get": {
        "summary": "The process runs", "responses": {"200": _json(HealthAnswer, "ok")}}})
    spec.path(path="/readyz", operations={"get": {
        "summary": "The database is reachable and migrated (with the delivery queue's depth)",
        "responses": {"200": _json(ReadyAnswer, "ready"), "503": _json(ReadyAnswer, "not ready")}}})
    spec.path(path="/metrics", operations={"get": {
        "summary": "Prometheus metrics (text exposition format)",
        "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    spec.path(path="/.well-known/receipt-keys", operations={"get": {
        "summary": "The Ed25519 public keys that sign receipts (current first)",
        "responses": {"200": _json(JwkSet, "a JWK set")}}})
    spec.path(path="/openapi.json", operations={"get": {
        "summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    document = current_app.extensions.get("receiver.openapi")
    if document is None:
        from ..services import services

        document = current_app.extensions["receiver.openapi"] = build_spec(services().settings.public_base_url)
    return jsonify(document)
