"""Email and phone normalization, the US-number rule for CRM Text, and masking for logs.

Rules (contract, "Precise rules"): phones are stored in E.164 and go to CRM Text only when
they are NANP numbers (+1 and 10 digits), without a validity check (555 numbers are fine), but
a number must be complete for its country: a 7-digit local ``555-1234`` is refused, never
stored as a guessed ``+15551234``. Emails are checked for syntax only, no DNS, and stored
lower-cased as a whole, because identities compare case-insensitively. Neither may carry
invisible (zero-width, bidirectional-control) characters, and a phone no letters: such input
would make look-alike guests (a zero-width space inside ``guest@…``) or a guessed number
(``1-800-FLOWERS``).
"""

import re
import unicodedata

import phonenumbers

from .errors import BadRequest
from .schemas import MAX_EMAIL, join

_EMAIL = re.compile(r"^[^\s\x00-\x1f\x7f@\"<>(),;:\\\[\]]{1,64}@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CHANNEL_PREFIX = re.compile(r"^(sms|mms|tel):", re.I)
_NANP = re.compile(r"^\+1(\d{10})$")


def normalize_phone(raw: str, *, field: str = "phone", region: str = "US") -> str:
    """Return ``raw`` as E.164, or raise BadRequest naming ``field``."""
    text = _CHANNEL_PREFIX.sub("", (raw or "").strip())
    _refuse_invisible(text, field)
    if any(char.isalpha() for char in text):  # phonenumbers would turn letters into keypad digits
        raise BadRequest(f"{field}: letters are not allowed in a phone number", field=field)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise BadRequest(f"{field}: not a phone number", field=field) from None
    # Only a number complete for its country: is_possible_number also passes a local-only
    # 7-digit US number, which E.164 formatting would turn into a number nobody has.
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise BadRequest(f"{field}: not a full phone number (area code or country code missing, "
                         "or a wrong number of digits)", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def us_ten_digits(e164: str) -> str | None:
    """The 10 digits CRM Text wants for a NANP number, else None."""
    match = _NANP.match(e164 or "")
    return match.group(1) if match else None


def normalize_email(raw: str, *, field: str = "email") -> str:
    """Return ``raw`` as its identity (:func:`fold_email`), or raise BadRequest naming ``field``."""
    text = (raw or "").strip()
    _refuse_invisible(text, field)
    candidate = fold_email(text)
    if len(text) > MAX_EMAIL or not _EMAIL.match(candidate):
        raise BadRequest(f"{field}: not a valid email address", field=field)
    return candidate


def fold_email(address: str) -> str:
    """The form emails are stored and compared in: the whole address lower-cased.

    RFC 5321 lets a mailbox's local part be case-sensitive, but no real provider makes
    ``Guest@`` and ``guest@`` two people, and an opt-out must hold whichever way it is typed.
    """
    return address.lower()


def _refuse_invisible(text: str, field: str) -> None:
    """Zero-width and bidirectional-control characters (Unicode "format", Cf) show as nothing; a lone
    surrogate (Cs, from a JSON ``\\ud800`` escape) is not a character at all and cannot be stored."""
    categories = {unicodedata.category(char) for char in text}
    if "Cs" in categories:
        raise BadRequest(f"{field}: not valid Unicode (a lone surrogate)", field=field)
    if "Cf" in categories:
        raise BadRequest(f"{field}: invisible or direction-control characters are not allowed", field=field)


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
