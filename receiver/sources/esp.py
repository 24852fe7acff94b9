"""What the email-provider sources share: the complaint option and the email signal rule."""

from datetime import UTC, datetime

from marshmallow import fields, validate

from ..errors import BadRequest
from ..identities import normalize_email, valid_or_none
from ..signals import IGNORED_KIND, OPT_IN, OPT_OUT, Signal
from ..states import MAIL_BAN, MARKETING_DECLINE
from .base import OptionsSchema

# In a source's mapping table (event → state), the state its `complaint` option names.
COMPLAINT = "complaint"


class EspOptions(OptionsSchema):
    # A spam complaint means "no marketing" by default; a source may treat it as "no email at all".
    complaint = fields.String(load_default=MARKETING_DECLINE, validate=validate.OneOf([MARKETING_DECLINE, MAIL_BAN]))


def mapped_state(rule: str | None, options: dict) -> str | None:
    """A mapping table's entry as the state it adds: COMPLAINT becomes the source's option."""
    return options["complaint"] if rule == COMPLAINT else rule


def email_signal(event_id: str, email, *, add=(), remove=(), keyword: str | None = None,
                 occurred_at: datetime | None = None, detail: dict | None = None, field: str = "email") -> Signal:
    """An ESP event about one recipient; no states to add or remove means it is only recorded.

    An event that changes something needs a valid address (else 400 naming ``field``). One that
    changes nothing keeps its address when valid and is never refused for it: the provider would
    resend the whole batch, opt-outs included, for hours.
    """
    kind = OPT_OUT if add else OPT_IN if remove else IGNORED_KIND
    if kind == IGNORED_KIND:
        address = valid_or_none(normalize_email, email)
    elif email is None or email == "":
        raise BadRequest(f"{field}: missing", field=field)
    elif not isinstance(email, str):
        raise BadRequest(f"{field}: not a string", field=field)
    else:
        address = normalize_email(email, field=field)
    return Signal(event_id=event_id, kind=kind, email=address, add=frozenset(add), remove=frozenset(remove),
                  keyword=keyword, occurred_at=occurred_at, detail=detail or {})


def unix_time(value) -> datetime | None:
    """An event's Unix time; informational, so a strange value is dropped rather than refused."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None
