"""GET /v1/consent (one guest's states in force) and POST /v1/consent/check (who may receive what)."""

from flask import jsonify, request
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from ...access.roles import Permission
from ...identities import normalize_contact
from ...ledger import queries
from ...schemas import MAX_EMAIL, MAX_PHONE_INPUT, MAX_TENANT, EmailOrPhone, load, text
from ...services import services
from ...states import STATES, may_receive
from ..answers import Time
from .common import allow, bp, json_body, known_tenant

MAX_RECIPIENTS = 1000


class ConsentQuery(EmailOrPhone):
    class Meta:
        unknown = RAISE

    identity_error_field = "email"
    tenant = text(1, MAX_TENANT, required=True)
    email = text(3, MAX_EMAIL)
    phone = text(3, MAX_PHONE_INPUT)


class RecipientSchema(EmailOrPhone):
    class Meta:
        unknown = EXCLUDE

    identity_error_field = "email"
    email = text(3, MAX_EMAIL, allow_none=True)
    phone = text(3, MAX_PHONE_INPUT, allow_none=True)


class ConsentCheckSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, MAX_TENANT, required=True)
    recipients = fields.List(fields.Nested(RecipientSchema), required=True, validate=validate.Length(
        1, MAX_RECIPIENTS, error=f"must be a list of 1 to {MAX_RECIPIENTS} recipients"),
        error_messages={"required": "missing", "invalid": "must be a list"})


class ConsentAnswer(Schema):
    tenant = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    states = fields.Dict(keys=fields.String(validate=validate.OneOf(STATES)), values=Time(), required=True,
                         metadata={"description": "state → the time it was set (UTC)"})


class CheckedRecipient(ConsentAnswer):
    tenant = None
    marketing_email = fields.Boolean(required=True)
    transactional_email = fields.Boolean(required=True)
    marketing_sms = fields.Boolean(required=True)
    transactional_sms = fields.Boolean(required=True)


class CheckAnswer(Schema):
    tenant = fields.String(required=True)
    recipients = fields.List(fields.Nested(CheckedRecipient), required=True)


# Made once (a schema instance holds no request's data): GET /v1/consent is asked before every
# send, and making them per request cost a fifth of its time.
CONSENT_QUERY, CONSENT_ANSWER = ConsentQuery(), ConsentAnswer()


@bp.get("/consent")
@allow(Permission.READ)
def consent():
    data = load(CONSENT_QUERY, request.args.to_dict())
    tenant = known_tenant(data["tenant"])
    email, phone = normalize_contact(data.get("email"), data.get("phone"))
    states = queries.guest_states(services().engine, tenant, email, phone, key=services().settings.identity_key)
    return jsonify(CONSENT_ANSWER.dump({"tenant": tenant, "email": email, "phone": phone, "states": states}))


@bp.post("/consent/check")
@allow(Permission.READ)
def consent_check():
    data = load(ConsentCheckSchema(), json_body())
    tenant = known_tenant(data["tenant"])
    people = [normalize_contact(r.get("email"), r.get("phone"), path=f"recipients[{n}]")
              for n, r in enumerate(data["recipients"])]
    found = queries.states_by_identity(services().engine, tenant, [i for pair in people for i in pair],
                                       services().settings.identity_key)
    recipients = []
    for email, phone in people:
        states = queries.merge_states(found, email, phone)
        recipients.append({"email": email, "phone": phone, "states": states, **may_receive(states)})
    return jsonify(CheckAnswer().dump({"tenant": tenant, "recipients": recipients}))
