"""Addresses the service accepts never reach a log line whole, error paths included."""

import pytest

from receiver.identities import normalize_email, normalize_phone
from receiver.logs import mask_text


@pytest.mark.parametrize("value, masked", [
    ("first/last&x=1?y#z@example.com", "f***@example.com"),  # every URL delimiter is allowed in a local part
    ("guest@mail.a.b.c.d.e.f.g.h.i.j.example.com", "g***@mail.a.b.c.d.e.f.g.h.i.j.example.com"),
    ("+44 20 7946 0958", "+4420***0958"),  # a UK number as people write it
    ("+33 (0)1 23 45 67 89", "+3301***6789"),
])
def test_values_the_service_accepts_are_masked_on_its_error_answers(client, receiver_log, value, masked):
    normalize = normalize_email if "@" in value else normalize_phone
    assert normalize(value)  # the service takes it as an identity, so it must be masked like one

    answer = client.post("/forms/unsubscribe", json={"tenant": value, "email": "guest@example.com"})

    assert answer.status_code == 404 and value in answer.get_json()["error"]  # the sender sees its own input
    [line] = [line for line in receiver_log().splitlines() if '"status": 404' in line]
    assert f"unknown tenant '{masked}'" in line
    assert value not in line and value.partition("@")[0] not in line


@pytest.mark.parametrize("typed", [
    "555 1234567", "555-1234567", "555.1234567", "555123-4567", "(555)1234567", "(555) 1234567",
    "(555)-123-4567", "555 - 123 - 4567", "555/123/4567", "[555] 123-4567", "1 555 1234567",
    "555\u00a0123\u00a04567", "555\u2011123\u20114567", "555\u2013123\u20134567",
])
def test_us_numbers_the_service_accepts_however_typed_are_masked(typed):
    assert normalize_phone(typed) == "+15551234567"  # the service takes it as this guest's number

    masked = mask_text(f"refused phone {typed} for tenant x")

    assert "1234567" not in "".join(char for char in masked if char.isdigit())
    assert "4567" in masked  # its last four stay, as for every masked number
