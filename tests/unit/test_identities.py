"""Identities: E.164 phones, the NANP rule for CRM Text, syntax-only emails, masks for logs."""

import pytest

from receiver.errors import BadRequest
from receiver.identities import (
    mask_email,
    mask_phone,
    normalize_email,
    normalize_phone,
    us_ten_digits,
)


@pytest.mark.parametrize("raw, e164", [
    ("+15551234567", "+15551234567"),
    ("5551234567", "+15551234567"),  # 10-digit US, as CRM Text sends it
    ("(555) 123-4567", "+15551234567"),
    ("1-555-123-4567", "+15551234567"),
    ("  +1 555 123 4567 ", "+15551234567"),
    ("sms:+15551234567", "+15551234567"),
    ("tel:+1-555-123-4567", "+15551234567"),
    ("+14165550123", "+14165550123"),  # Canada is NANP too
    ("+442071838750", "+442071838750"),
    ("+33 6 12 34 56 78", "+33612345678"),
])
def test_normalize_phone_to_e164(raw, e164):
    assert normalize_phone(raw) == e164


def test_555_numbers_are_accepted_without_a_validity_check():
    assert normalize_phone("+15550000000") == "+15550000000"


@pytest.mark.parametrize("raw", [
    "", "   ", "hello", "12", "+1555", "+999123456789012345",
    "555-1234", "+15551234", "tel:555-1234",  # a local number: the area code is missing
    "+3912345",  # too few digits for its country
    "1-800-FLOWERS", "+1 800 FLOWERS", "+1 555 123 4567 ext. 12",  # letters become keypad digits
    "+1555\u200b1234567", "\u202d+15551234567",  # invisible characters
])
def test_bad_phone_is_refused_naming_the_field(raw):
    with pytest.raises(BadRequest) as caught:
        normalize_phone(raw, field="From")

    assert caught.value.field == "From"
    assert caught.value.message.startswith("From:")
    assert caught.value.status == 400


@pytest.mark.parametrize("e164, ten", [
    ("+15551234567", "5551234567"),
    ("+14165550123", "4165550123"),
    ("+442071838750", None),
    ("+33612345678", None),
    ("+1555123456", None),
    ("", None),
    (None, None),
])
def test_us_ten_digits(e164, ten):
    assert us_ten_digits(e164) == ten


@pytest.mark.parametrize("raw, stored", [
    ("guest@example.com", "guest@example.com"),
    ("Guest.Name@EXAMPLE.COM", "guest.name@example.com"),  # identities compare case-insensitively
    ("  guest+tag@Mail.Example.Org ", "guest+tag@mail.example.org"),
    ("guest@hotel.test", "guest@hotel.test"),  # reserved domains are fine, no DNS
    ("o'brien@example.co.uk", "o'brien@example.co.uk"),
])
def test_normalize_email(raw, stored):
    assert normalize_email(raw) == stored


@pytest.mark.parametrize("raw", [
    "", "guest", "guest@", "@example.com", "guest@example", "guest@@example.com",
    "gu est@example.com", "guest@exa mple.com", "<guest@example.com>", "guest@-example.com",
    "a" * 65 + "@example.com", "guest@" + "a" * 250 + ".com",
    "gu\u200best@example.com", "guest\u200d@example.com", "\ufeffguest@example.com",  # zero-width
    "guest\u202e@example.com", "\u2066guest@example.com\u2069", "guest@exam\u200eple.com",  # bidi controls
])
def test_bad_email_is_refused_naming_the_field(raw):
    with pytest.raises(BadRequest) as caught:
        normalize_email(raw, field="customer.email")

    assert caught.value.field == "customer.email"
    assert "customer.email" in caught.value.message


def test_masking_hides_the_address():
    assert mask_email("guest@example.com") == "g***@example.com"
    assert mask_phone("+15551234567") == "+1555***4567"
    assert mask_phone("+442071838750") == "+4420***8750"
    assert mask_phone("+1234") == "***"
    assert "guest" not in mask_email("guest@example.com")
    assert "123" not in mask_phone("+15551234567")
