"""What the email-provider sources share: the complaint option and the email signal rule."""

from datetime import datetime

from marshmallow import fields, validate

from ..identities import normalize_email
from ..signals import IGNORED_KIND, OPT_IN, OPT_OUT, Signal
from ..states import MAIL_BAN, MARKETING_DECLINE
from .base import OptionsSchema


class EspOptions(OptionsSchema):
    # A spam complaint means "no marketing" by default; a source may treat it as "no email at all".
    complaint = fields.String(load_default=MARKETING_DECLINE, validate=validate.OneOf([MARKETING_DECLINE, MAIL_BAN]))


def email_signal(event_id: str, email: str, *, add=(), remove=(), keyword: str | None = None,
                 occurred_at: datetime | None = None, detail: dict | None = None, field: str = "email") -> Signal:
    """An ESP event about one recipient; no states to add or remove means it is only recorded."""
    kind = OPT_OUT if add else OPT_IN if remove else IGNORED_KIND
    return Signal(event_id=event_id, kind=kind, email=normalize_email(email, field=field),
                  add=frozenset(add), remove=frozenset(remove), keyword=keyword,
                  occurred_at=occurred_at, detail=detail or {})
