"""Email and phone normalization, the US-number rule for CRM Text, and masking for logs.

Rules (contract, "Precise rules"): phones are stored in E.164 and go to CRM Text only when
they are NANP numbers (+1 and 10 digits), without a validity check (555 numbers are fine);
emails are checked for syntax only, no DNS, and stored with the domain lower-cased.
"""

import re

import phonenumbers

from .errors import BadRequest
from .schemas import join

_EMAIL = re.compile(r"^[^\s\x00-\x1f\x7f@\"<>(),;:\\\[\]]{1,64}@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CHANNEL_PREFIX = re.compile(r"^(sms|mms|tel):", re.I)
_NANP = re.compile(r"^\+1(\d{10})$")


def normalize_phone(raw: str, *, field: str = "phone", region: str = "US") -> str:
    """Return ``raw`` as E.164, or raise BadRequest naming ``field``."""
    text = _CHANNEL_PREFIX.sub("", (raw or "").strip())
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise BadRequest(f"{field}: not a phone number", field=field) from None
    if not phonenumbers.is_possible_number(number):
        raise BadRequest(f"{field}: not a possible phone number", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def us_ten_digits(e164: str) -> str | None:
    """The 10 digits CRM Text wants for a NANP number, else None."""
    match = _NANP.match(e164 or "")
    return match.group(1) if match else None


def normalize_email(raw: str, *, field: str = "email") -> str:
    """Return ``raw`` with its domain lower-cased, or raise BadRequest naming ``field``."""
    text = (raw or "").strip()
    local, at, domain = text.rpartition("@")
    candidate = f"{local}@{domain.lower()}"
    if not at or len(text) > 254 or not _EMAIL.match(candidate):
        raise BadRequest(f"{field}: not a valid email address", field=field)
    return candidate


def normalize_contact(email: str | None, phone: str | None, *, path: str = "") -> tuple[str | None, str | None]:
    """An optional email and phone, each normalized when given; BadRequest names ``path.email`` / ``path.phone``."""
    return (normalize_email(email, field=join(path, "email")) if email else None,
            normalize_phone(phone, field=join(path, "phone")) if phone else None)


def valid_or_none(normalize, value) -> str | None:
    """``normalize(value)`` for informational addresses: anything unusable is None, never a refusal."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return normalize(value)
    except BadRequest:
        return None


def mask_email(email: str) -> str:
    """``guest@example.com`` → ``g***@example.com``."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """``+15551234567`` → ``+1555***4567``."""
    digits = phone.lstrip("+")
    return f"+{digits[:4]}***{digits[-4:]}" if len(digits) > 8 else "***"
