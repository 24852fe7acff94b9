"""What every marshmallow input schema shares: short error texts and one way to name a bad field."""

import unicodedata

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .errors import BadRequest
from .ledger.models import RequestRecord, SignalRow

TEXT_ERRORS = {"required": "missing", "invalid": "not a string", "null": "missing"}


def no_nul(value: str) -> None:
    """PostgreSQL cannot store a NUL character in text: refuse it as bad input, not a 503 later."""
    if "\x00" in value:
        raise ValidationError("must not contain a NUL character")


# Limits of what a sender names, read from the ledger's columns so a rule never outgrows its column:
# the key columns a sender-chosen id goes into (event_id, request_key), and a tenant's name.
MAX_IDENTIFIER = min(SignalRow.__table__.c.event_id.type.length, RequestRecord.__table__.c.request_key.type.length)
MAX_TENANT = SignalRow.__table__.c.tenant.type.length
# What a guest's address may be as given, before it is normalized: an email within RFC 5321's 254
# characters (identities.normalize_email holds every address to it), a phone number as typed.
MAX_EMAIL = 254
MAX_PHONE_INPUT = 64
# Control characters and lone surrogates: PostgreSQL cannot store a NUL (a 503 the sender retries
# forever, where SQLite accepts it), a lone surrogate cannot be encoded at all, and the others have
# no place in an id that is echoed in answers and logs.
_UNSTORABLE = frozenset({"Cc", "Cs"})


def no_control(value: str) -> None:
    if any(unicodedata.category(ch) in _UNSTORABLE for ch in value):
        raise ValidationError("must not contain NUL or control characters")


# The rule for identifiers a sender chooses (message ids, event ids, webhook ids): used through
# ``identifier_field`` in schemas and ``identifier`` in sources that read fields by hand.
IDENTIFIER_RULES = (validate.Length(1, MAX_IDENTIFIER, error="must be {min} to {max} characters"), no_control)


def identifier_field(**kwargs) -> fields.String:
    return fields.String(validate=list(IDENTIFIER_RULES), error_messages=TEXT_ERRORS, **kwargs)


def is_identifier(value) -> bool:
    """Whether ``value`` passes the identifier rule (for senders whose odd ids are replaced, not refused)."""
    try:
        identifier(value, "id")
    except BadRequest:
        return False
    return True


def identifier(value, field: str) -> str:
    """``value`` if it is a usable sender-chosen identifier, else BadRequest naming ``field``."""
    try:
        if not isinstance(value, str):
            raise ValidationError("not a string")
        for rule in IDENTIFIER_RULES:
            rule(value)
    except ValidationError as exc:
        raise BadRequest(f"{field}: {exc.messages[0]}", field=field) from None
    return value


def text(min_length: int, max_length: int, **kwargs) -> fields.String:
    length = validate.Length(min_length, max_length, error="must be {min} to {max} characters")
    return fields.String(validate=[length, no_nul], error_messages=TEXT_ERRORS, **kwargs)


class EmailOrPhone(Schema):
    """A guest named by an email, a phone or both: at least one is required.

    The error is the whole object's (``customer: email or phone required``) unless
    ``identity_error_field`` names the field to blame.
    """

    identity_error_field: str | None = None

    @validates_schema
    def has_an_identity(self, data, **kwargs):
        if not data.get("email") and not data.get("phone"):
            raise ValidationError("email or phone required", field_name=self.identity_error_field or "_schema")


def first_error(messages, path: str = "") -> tuple[str, str]:
    """(field path, message) of marshmallow's first error: ``events[2].states[0]``, ``customer``."""
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        if isinstance(key, int):
            path += f"[{key}]"
        elif key != "_schema":
            path = f"{path}.{key}" if path else key
    return path, messages[0] if isinstance(messages, list) else str(messages)


def load(schema: Schema, data, path: str = "") -> dict:
    """``schema.load(data)``, or BadRequest naming the first bad field."""
    if not isinstance(data, dict):
        raise BadRequest(f"{path or 'body'}: must be an object", field=path or "body")
    try:
        return schema.load(data)
    except ValidationError as exc:
        where, message = first_error(exc.messages, path)
        raise BadRequest(f"{where}: {message}", field=where) from None


def join(path: str, name: str) -> str:
    """``events[2]`` + ``id`` → ``events[2].id``; at the top level just ``id``."""
    return f"{path}.{name}" if path else name
