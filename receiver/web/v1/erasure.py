"""POST /v1/erasure: a guest's email or phone removed from every row; their opt-outs kept under its keyed hash."""

from flask import jsonify
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema

from ...access.roles import Permission
from ...identities import normalize_contact
from ...ledger.erasure import erase
from ...schemas import MAX_EMAIL, MAX_PHONE_INPUT, MAX_TENANT, load, text
from ...services import services
from .common import allow, bp, json_body, known_tenant, principal


class ErasureSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, MAX_TENANT, required=True)
    email = text(3, MAX_EMAIL)
    phone = text(3, MAX_PHONE_INPUT)

    @validates_schema
    def one_address(self, data, **kwargs):
        if bool(data.get("email")) == bool(data.get("phone")):
            raise ValidationError("give one of email or phone", field_name="email")


class ErasureAnswer(Schema):
    tenant = fields.String(required=True)
    receipt_id = fields.String(required=True, metadata={"description": "the erasure's own signal in the chain"})
    rows_changed = fields.Integer(required=True)


@bp.post("/erasure")
@allow(Permission.ERASURE)
def erasure():
    data = load(ErasureSchema(), json_body())
    tenant = known_tenant(data["tenant"])
    email, phone = normalize_contact(data.get("email"), data.get("phone"))
    done = erase(services().ledger, tenant, email=email, phone=phone, operator=principal().name)
    return jsonify(ErasureAnswer().dump({"tenant": tenant, **done}))
