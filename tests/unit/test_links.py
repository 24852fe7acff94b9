"""Link tokens: round trip, key rotation, tampering, unknown keys and tenants, the CSRF field."""

import pytest

from receiver.errors import BadRequest, NotFound
from receiver.links import ALL, MARKETING, Link, LinkSigner, make_link

TENANTS = {"grand": object(), "small": object()}
BASE = "https://optout.example.com"


def signer(*keys: str) -> LinkSigner:
    return LinkSigner(keys or ("key-one",), TENANTS, BASE)


@pytest.mark.parametrize("link", [
    Link("grand", "guest@example.com"),
    Link("grand", "guest@example.com", "+15551234567", ALL, "nov-newsletter"),
    Link("small", "a.b+c@example.co.uk", None, MARKETING, "spring"),
    Link("grand", "guest@example.com", None, ALL),
])
def test_round_trip(link):
    s = signer()
    assert s.load(s.token(link)) == link


def test_url_is_short_enough_for_an_email():
    url = signer().url(Link("grand", "guest@example.com"))
    assert url.startswith(f"{BASE}/u/")
    assert len(url) < 130  # measured: 112 characters for a 17-character address


def test_the_first_key_signs_and_every_key_verifies():
    old = signer("old-key")
    rotated = signer("new-key", "old-key")
    link = Link("grand", "guest@example.com")
    assert rotated.load(old.token(link)) == link  # links in old emails keep working
    assert rotated.token(link) == signer("new-key").token(link)
    with pytest.raises(NotFound):
        old.load(rotated.token(link))


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature byte
    lambda t: "W" + t[1:] if t[0] != "W" else "X" + t[1:],  # payload byte
    lambda t: t.split(".")[0],  # signature cut off
    lambda t: "",
    lambda t: "not-a-token",
])
def test_a_tampered_token_is_not_found(mangle):
    s = signer()
    with pytest.raises(NotFound):
        s.load(mangle(s.token(Link("grand", "guest@example.com"))))


def test_an_unknown_key_is_not_found():
    with pytest.raises(NotFound):
        signer("mine").load(signer("someone-else").token(Link("grand", "guest@example.com")))


def test_a_tenant_no_longer_configured_is_not_found():
    other = LinkSigner(("key-one",), {**TENANTS, "gone": object()}, BASE)
    with pytest.raises(NotFound):
        signer().load(other.token(Link("gone", "guest@example.com")))


def test_csrf_is_bound_to_the_token_and_survives_rotation():
    s, link = signer("old-key"), Link("grand", "guest@example.com")
    token, other = s.token(link), s.token(Link("grand", "other@example.com"))
    field = s.csrf(token)
    assert s.csrf_ok(token, field)
    assert not s.csrf_ok(other, field)
    assert not s.csrf_ok(token, None) and not s.csrf_ok(token, "")
    assert signer("new-key", "old-key").csrf_ok(token, field)


def test_make_link_normalizes_and_names_the_bad_field():
    link = make_link("grand", "Guest@Example.COM", "(555) 123-4567")
    assert (link.email, link.phone) == ("guest@example.com", "+15551234567")
    with pytest.raises(BadRequest) as exc:
        make_link("grand", "not-an-email", path="links[3]")
    assert exc.value.field == "links[3].email"
    with pytest.raises(BadRequest) as exc:
        make_link("grand", "guest@example.com", "12", path="links[0]")
    assert exc.value.field == "links[0].phone"
