"""Logging set-up: one stderr handler whose filter masks every email address and phone number.

Unsubscribe-link tokens are masked too (``/u/WyJncm…``): a token is signed, not encrypted, so its
base64 payload spells out the guest's email and phone.

The contract allows no full email or phone in any log line, access logs included, so the
mask sits on the handler and sees every record that reaches it, whichever logger made it.
Masking is deliberately greedy: every bare run of 10–11 digits is masked, so Unix
timestamps such as 1795515300 come out as ``179***5300`` too. Privacy beats pretty logs.

Structured lines (one per request, one per delivery attempt) are logged with
``extra={"fields": {...}}``: the filter masks every string in ``fields`` too, and the handler's
formatter writes such a record as one JSON object per line; other records stay plain text.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime

from gunicorn import glogging

from .identities import mask_email, mask_phone

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_HANDLER_NAME = "receiver-masked-stderr"

# Masked by what the service accepts (identities.normalize_email): a local part of up to 64 of any
# characters but spaces, controls and ``@ " < > ( ) , ; : \ [ ]`` (URL delimiters such as
# ``= / ? & #`` included: a ``to=`` before an address is masked with it rather than leaving part of
# an address like ``a&b@…`` readable), and a domain of any number of labels. A quote may not open
# the local part, so ``'guest@…'`` keeps its quote. ``%40`` is the URL-encoded ``@`` of query
# strings and form bodies. Bounded lengths keep the search linear on long lines.
_EMAIL = re.compile(
    r"(?P<local>[^\s\x00-\x1f\x7f@\"<>(),;:\\\[\]'][^\s\x00-\x1f\x7f@\"<>(),;:\\\[\]]{0,63}?)"
    r"(?P<at>@|%40)"
    r"(?P<domain>(?:[A-Za-z0-9\-]{1,63}\.){1,127}[A-Za-z]{2,63})"
)
# ``%2B`` (and double-encoded ``%252B``) is the ``+`` of an E.164 number inside a URL or form body.
_ENCODED_E164 = re.compile(r"(?P<plus>%(?:25)?2B)(?P<digits>\d{8,15})(?!\d)", re.IGNORECASE)
# Any country's number as people write it (``+44 20 7946 0958``, ``+33 (0)1 23 45 67 89``), or
# dialled from the US (``011 44 …``): 8 to 15 digits, the most E.164 allows.
_INTERNATIONAL = re.compile(
    r"(?<![0-9A-Za-z])(?P<prefix>\+|011[ .\-]?)\d(?:[ .\-]?(?:\(\d{1,4}\)|\d)){7,14}(?!\d)"
)
# North American numbers as people type them and the service accepts them (3, 3 and 4 digits, each
# gap empty or a few separators): 555-123-4567, (555) 123-4567, (555)1234567, 555 1234567,
# 555/123/4567, [555] 123-4567, +1 555.123.4567, with no-break spaces or Unicode dashes too.
_SEP = r"[ .\-/\u00a0\u2010-\u2015]{0,3}"
_FORMATTED = re.compile(
    rf"(?<![0-9A-Za-z])(?P<plus>\+)?(?:1{_SEP})?(?:\(\d{{3}}\)|\[\d{{3}}\]|\d{{3}}){_SEP}\d{{3}}{_SEP}\d{{4}}"
    r"(?![0-9A-Za-z])"
)
# Runs glued to letters are left alone: those are ids (Twilio SIDs, ULIDs), not phone numbers.
# After ``%XX`` a run counts as bare, as in ``To=%205551234567``.
_BARE = re.compile(r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![0-9A-Za-z]))\d{10,11}(?![0-9A-Za-z])")


# The signed payload of /u/<token> (itsdangerous: base64url JSON, a dot, the signature).
_LINK_TOKEN = re.compile(r"(?P<prefix>/u/[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-.]+")
# An operator's API token (receiver.access.credentials): only its prefix is kept.
_API_TOKEN = re.compile(r"(?<![A-Za-z0-9])rcv_[A-Za-z0-9_\-]+")


def _mask_digits(digits: str) -> str:
    return f"{digits[:3]}***{digits[-4:]}"


def _email(match: re.Match) -> str:
    masked = mask_email(f"{match['local']}@{match['domain']}")
    return masked.replace("@", match["at"], 1)


def _international(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match[0].removeprefix(match["prefix"]))
    return mask_phone("+" + digits)


def _encoded_e164(match: re.Match) -> str:
    return match["plus"] + mask_phone("+" + match["digits"]).removeprefix("+")


def _formatted(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match[0])
    return mask_phone("+" + digits) if match["plus"] else _mask_digits(digits)


def mask_text(text: str) -> str:
    """``text`` with every email address and phone-like number masked.

    Emails become ``g***@example.com`` (also ``%40``-encoded ones); ``+15551234567`` and
    ``%2B15551234567`` become ``+1555***4567`` / ``%2B1555***4567``, ``+44 20 7946 0958``
    ``+4420***0958``; bare 10–11 digit runs
    and typed NANP numbers keep their first 3 and last 4 digits: ``555***4567``; a link token
    keeps its first 6 characters: ``/u/WyJncm…``; an operator's token only its prefix: ``rcv_…``.
    """
    text = _LINK_TOKEN.sub(lambda m: m["prefix"] + "…", text)
    text = _API_TOKEN.sub("rcv_…", text)
    text = _EMAIL.sub(_email, text)
    text = _ENCODED_E164.sub(_encoded_e164, text)
    text = _INTERNATIONAL.sub(_international, text)
    text = _FORMATTED.sub(_formatted, text)
    return _BARE.sub(lambda m: _mask_digits(m[0]), text)


def _mask_value(value):
    """``value`` with every string in it masked; what JSON cannot hold becomes a masked string."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, dict):
        return {key: _mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(item) for item in value]
    if isinstance(value, int):
        masked = mask_text(str(value))  # a 10–11 digit number is masked like any bare run of digits
        return value if masked == str(value) else masked
    return mask_text(str(value))


class JsonFormatter(logging.Formatter):
    """A record with ``fields`` becomes one JSON line: time, level, logger, event (the message), fields.

    Records without ``fields`` keep the plain ``_FORMAT`` line, so one handler serves both.
    """

    def __init__(self):
        super().__init__(_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            return super().format(record)
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "event": record.getMessage(), **fields}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class MaskingFilter(logging.Filter):
    """Masks a record's final message, traceback and stack in place; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string must not crash the caller: filters run outside emit's guard.
            message = f"{record.msg!r} args={record.args!r}"
        record.msg = mask_text(message)
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = _mask_value(fields)
        if record.exc_info and not record.exc_text:
            # Render the traceback now so the formatter reuses the masked copy.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records through one masked stderr handler on the root logger.

    Safe to call again (tests, app factory and gunicorn hooks may all call it): the handler
    is added once and only the level changes.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines: noise in `db upgrade`
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskingFilter())
    root.addHandler(handler)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with the masking filter on its error and access handlers."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                    handler.addFilter(MaskingFilter())
