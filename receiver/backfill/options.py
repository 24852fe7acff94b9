"""Each source kind's ``backfill = {…}`` option, checked by the kind's own options schema.

The readers these options build are in readers.py: the source kinds import this module in every
process, the web's too, which has no use for the list clients (and requests beneath them).
"""

from marshmallow import Schema, fields, validate

from ..identities import normalize_phone, valid_or_none

_BASE_URL = fields.Url(require_tld=False, schemes={"http", "https"})
_TEXT = validate.Length(1, 500)


class _Backfill(Schema):
    """Unknown keys are refused (marshmallow's default), so a misspelt credential fails at start."""

    base_url = _BASE_URL


class _Number(fields.String):
    def _deserialize(self, value, attr, data, **kwargs) -> str:
        number = valid_or_none(normalize_phone, super()._deserialize(value, attr, data, **kwargs))
        if number is None:
            raise self.make_error("invalid")
        return number

    default_error_messages = {"invalid": "not a phone number (E.164, e.g. +15550001111)"}


class TwilioBackfill(_Backfill):
    account_sid = fields.String(required=True, validate=validate.Regexp(r"^AC[0-9a-fA-F]{32}$"))
    to = fields.List(_Number(), required=True, validate=validate.Length(min=1))


class SendGridBackfill(_Backfill):
    api_key = fields.String(required=True, validate=_TEXT)


class MailgunBackfill(_Backfill):
    api_key = fields.String(required=True, validate=_TEXT)
    domain = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9.-]{1,253}$"))


class PostmarkBackfill(_Backfill):
    server_token = fields.String(required=True, validate=_TEXT)
    stream = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"))


def option(schema: type[Schema]) -> fields.Nested:
    """The ``backfill`` field a source kind's options schema declares (absent: no backfill)."""
    return fields.Nested(schema, load_default=None, allow_none=True)
