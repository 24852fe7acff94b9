"""Opt-outs staff take (a phone call, the front desk, a letter) as signals of source ``staff``.

Posted by an operator (``POST /v1/opt-outs``): any of the four states, for an email and/or a
phone; an email and a phone are linked only when both are given in the same entry. The signal's
detail keeps the channel, the note and the operator, for the audit trail.
"""

import uuid

from marshmallow import RAISE, Schema, fields, validate

from ..errors import BadRequest
from ..identities import normalize_contact
from ..schemas import MAX_EMAIL, MAX_PHONE_INPUT, MAX_TENANT, TEXT_ERRORS, text
from ..signals import OPT_OUT, Inbound, Signal, plausible_time
from ..states import EMAIL_STATES, SMS_STATES, STATES

NAME = "staff"
CHANNELS = ("phone-call", "front-desk", "letter", "email", "other")


class StaffOptOutSchema(Schema):
    class Meta:
        unknown = RAISE

    tenant = text(1, MAX_TENANT, required=True)
    email = text(3, MAX_EMAIL, load_default=None, allow_none=True)
    phone = text(3, MAX_PHONE_INPUT, load_default=None, allow_none=True)
    states = fields.List(
        fields.String(validate=validate.OneOf(STATES, error="must be one of {choices}"), error_messages=TEXT_ERRORS),
        required=True, validate=validate.Length(1, len(STATES), error="must list 1 to 4 states"),
        error_messages={"required": "missing", "invalid": "must be a list"})
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS, error="must be one of {choices}"),
                            error_messages=TEXT_ERRORS)
    note = text(0, 2000, load_default=None, allow_none=True)
    occurred_at = fields.AwareDateTime(format="iso", load_default=None, allow_none=True,
                                       error_messages={"invalid": "must be an ISO 8601 time with a zone",
                                                       "invalid_awareness": "must have a time zone"})


def parse(data: dict, operator: str) -> Inbound:
    """The loaded body (``StaffOptOutSchema``) as one signal; BadRequest names the field at fault."""
    email, phone = normalize_contact(data["email"], data["phone"])
    if not email and not phone:
        raise BadRequest("email: give an email or a phone (or both)", field="email")
    at = data["occurred_at"]
    if at and plausible_time(at) is None:  # a person typed it: say so, where a sender's is dropped
        raise BadRequest("occurred_at: must be between 2000-01-01 and now", field="occurred_at")
    states = frozenset(data["states"])
    # A state is the email's or the phone's: an SMS state needs a phone, an email state an email.
    if states & SMS_STATES and not phone:
        raise BadRequest("phone: needed for the SMS states", field="phone")
    if states & EMAIL_STATES and not email:
        raise BadRequest("email: needed for the email states", field="email")
    event_id = "staff_" + uuid.uuid4().hex
    detail = {"channel": data["channel"], "operator": operator}
    if data["note"]:
        detail["note"] = data["note"]
    signal = Signal(event_id=event_id, kind=OPT_OUT, email=email, phone=phone, add=states,
                    keyword=data["channel"], occurred_at=data["occurred_at"], detail=detail)
    return Inbound(request_key=event_id, signals=[signal])
