"""Log masking: no full email address or phone number survives into a log line."""

import io
import logging

import pytest

from receiver import logs
from receiver.logs import MaskingFilter, configure_logging, mask_text


@pytest.mark.parametrize(
    "text, masked",
    [
        ("opt-out for guest@example.com", "opt-out for g***@example.com"),
        # What may precede an address in a URL may be part of it too: masked with it.
        ("to=Guest.Name+tag@Mail.Example.co.uk;", "t***@Mail.Example.co.uk;"),
        ("email=guest%40example.com&x=1", "e***%40example.com&x=1"),
        ("refused a&b#c=d/e?f@example.com:", "refused a***@example.com:"),
        ("for guest@mail.a.b.c.d.e.f.g.h.i.j.example.com.", "for g***@mail.a.b.c.d.e.f.g.h.i.j.example.com."),
        ("From +44 20 7946 0958 said STOP", "From +4420***0958 said STOP"),
        ("tel +44 (0)20 7946-0958, +33 1 23 45 67 89", "tel +4402***0958, +3312***6789"),
        ("dialled 011 44 20 7946 0958", "dialled +4420***0958"),
        ("From +15551234567 said STOP", "From +1555***4567 said STOP"),
        ("From=%2B15551234567&Body=STOP", "From=%2B1555***4567&Body=STOP"),
        ("From=%2b15551234567", "From=%2b1555***4567"),
        ("phone_number=5551234567", "phone_number=555***4567"),
        ('"phone": "15551234567"', '"phone": "155***4567"'),
        ("To=%205551234567", "To=%20555***4567"),
        ("call (555) 123-4567 now", "call 555***4567 now"),
        ("to josé@example.com and o'brien@example.com", "to j***@example.com and o***@example.com"),
        ('"POST /u/WyJncmFuZCIsImd1ZXN0QGV4YW1wbGUuY29tIl0.2PDSZPvEt03g7iaW23QzdI58KYl3xX2mLsj_Sl6ID0s?lang=fr" 200',
         '"POST /u/WyJncm…?lang=fr" 200'),
        ("call +1 555-123-4567 now", "call +1555***4567 now"),
        ("Authorization: Bearer rcv_Q2x8-_aZ0ptkB3dYvPq4WmE7nRt1LsKc9uJhGf6oXyA", "Authorization: Bearer rcv_…"),
        # Documented trade-off: a 10-digit Unix timestamp is masked too.
        ("webhook-timestamp 1795515300", "webhook-timestamp 179***5300"),
    ],
)
def test_mask_text(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "",
        "worker drained 250 deliveries in 1.5 s",
        "2026-11-22T10:15:00Z 2026-11-22 10:15:00,123",
        "ms 1795515300123 and short 555-1234",
        "sid SM1234567890abcdef1234567890abcdef",
        "receipt rcpt_01KAZ8Q1234567890ABCDEFGHJ status accepted",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "GET /u/abc.def HTTP/1.1 200",
    ],
)
def test_text_without_contacts_is_unchanged(text):
    assert mask_text(text) == text


def test_masking_is_idempotent():
    once = mask_text("guest@example.com +15551234567 %2B15551234567 5551234567")
    assert mask_text(once) == once


@pytest.fixture
def masked_logger():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("tests.masked")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_filter_masks_formatted_arguments(masked_logger):
    logger, stream = masked_logger
    logger.info("opt-out %s from %s", "guest@example.com", "+15551234567")
    logger.debug("access %(path)s", {"path": "/hooks/twilio?From=%2B15551234567"})

    out = stream.getvalue()
    assert "guest@example.com" not in out and "15551234567" not in out
    assert "INFO opt-out g***@example.com from +1555***4567" in out
    assert "DEBUG access /hooks/twilio?From=%2B1555***4567" in out


def test_filter_masks_exception_text(masked_logger):
    logger, stream = masked_logger
    try:
        raise RuntimeError("could not deliver guest@example.com / +15551234567")
    except RuntimeError:
        logger.exception("delivery failed for %s", "guest@example.com")

    out = stream.getvalue()
    assert "guest@example.com" not in out and "15551234567" not in out
    assert "RuntimeError: could not deliver g***@example.com / +1555***4567" in out
    assert "Traceback" in out


def test_filter_survives_a_bad_format_string(masked_logger):
    logger, stream = masked_logger
    logger.info("two %s %s", "guest@example.com")
    out = stream.getvalue()
    assert "guest@example.com" not in out and "g***@example.com" in out


@pytest.fixture
def clean_root():
    """The root logger without the receiver's handler (an app made by another test may have added it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = [h for h in handlers if h.get_name() == logs._HANDLER_NAME]
    for handler in ours:
        root.removeHandler(handler)
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in ours:
        root.addHandler(handler)
    root.setLevel(level)


def test_configure_logging_is_idempotent_and_masks_every_logger(clean_root, capsys):
    before = len(clean_root.handlers)
    configure_logging("debug")
    configure_logging("INFO")
    assert len(clean_root.handlers) == before + 1
    assert clean_root.level == logging.INFO

    handler = clean_root.handlers[-1]
    assert any(isinstance(f, MaskingFilter) for f in handler.filters)
    logging.getLogger("gunicorn.access").info('"POST /forms/unsubscribe?email=%s"', "g%40x.org")
    logging.getLogger("receiver.worker").warning("retrying guest@example.com 5551234567")

    err = capsys.readouterr().err
    assert "g%40x.org" not in err and "guest@example.com" not in err and "5551234567" not in err
    assert "INFO gunicorn.access" in err and "/***%40x.org" in err
    assert "WARNING receiver.worker retrying g***@example.com 555***4567" in err
