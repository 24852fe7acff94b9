"""The open unsubscribe form on a hotel's website as signals of source ``web-form``.

Anyone can post it (no token), so it only ever adds ``marketing_decline`` and/or
``marketing_decline_sms``, never a ban, and never links an email to a phone. Unknown fields are
ignored (websites add their own). Each post is its own event: there is no sender id.
"""

import uuid

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from ..errors import BadRequest, NotFound
from ..identities import normalize_contact
from ..schemas import MAX_EMAIL, MAX_PHONE_INPUT, MAX_TENANT, TEXT_ERRORS, load, text
from ..settings import TenantConfig
from ..signals import OPT_OUT, Inbound, Signal
from ..states import MARKETING_DECLINE, MARKETING_DECLINE_SMS

NAME = "web-form"


class Checkbox(fields.Field):
    """A checkbox as browsers and scripts send it: on / true / 1 / JSON true; anything else is off."""

    def _deserialize(self, value, attr, data, **kwargs) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value.strip().lower() in ("on", "true", "1", "yes")
        if isinstance(value, int):
            return value == 1
        raise ValidationError("must be a checkbox value (on, true, 1)")


CHECKBOX_DOC = {"oneOf": [{"type": "boolean"}, {"type": "string"}],
                "description": "ticked: on, true, 1 or JSON true; neither box sent: both apply"}


class UnsubscribeFormSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    tenant = text(1, MAX_TENANT, required=True)
    email = text(0, MAX_EMAIL, load_default=None, allow_none=True)
    phone = text(0, MAX_PHONE_INPUT, load_default=None, allow_none=True)
    email_marketing = Checkbox(load_default=None, allow_none=True, error_messages=TEXT_ERRORS, metadata=CHECKBOX_DOC)
    sms_marketing = Checkbox(load_default=None, allow_none=True, error_messages=TEXT_ERRORS, metadata=CHECKBOX_DOC)


def parse(data, tenants: dict[str, TenantConfig], origin: str) -> tuple[TenantConfig, Inbound]:
    """The posted fields (a form's or a JSON object's) as the tenant they name and its one signal."""
    data = load(UnsubscribeFormSchema(), data)
    tenant = tenants.get(data["tenant"])
    if tenant is None:
        raise NotFound(f"tenant: unknown tenant {data['tenant']!r}", field="tenant")
    email, phone = normalize_contact(data["email"], data["phone"])
    if not email and not phone:
        raise BadRequest("email: give an email or a phone (or both)", field="email")
    boxes = {MARKETING_DECLINE: data["email_marketing"], MARKETING_DECLINE_SMS: data["sms_marketing"]}
    if not any(boxes.values()):
        if any(value is not None for value in boxes.values()):
            raise BadRequest("email_marketing: tick email_marketing or sms_marketing", field="email_marketing")
        boxes = dict.fromkeys(boxes, True)  # neither box sent: both apply
    event_id = uuid.uuid4().hex
    signal = Signal(
        event_id=event_id, kind=OPT_OUT, email=email, phone=phone,
        add=frozenset(state for state, ticked in boxes.items() if ticked), keyword="form",
        links_identities=False, detail={"origin": origin} if origin else {},
    )
    return tenant, Inbound(request_key=event_id, signals=[signal])
