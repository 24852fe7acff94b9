"""Receipts: checked the way a partner would, with cryptography alone (and standardwebhooks if present)."""

import base64
import hashlib
import hmac
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from receiver.receipts import ReceiptSigner, generate_signing_key, new_receipt_id
from tests.helpers import pin_clock

BODY = b'{"receipt_id":"rcpt_x","status":"accepted"}\n'
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _entries(signature_header: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in signature_header.split(" "):
        version, _, value = entry.partition(",")
        found.setdefault(version, []).append(value)
    return found


def _partner_verifies(jwks: dict, headers: dict[str, str], body: bytes) -> bool:
    """What a partner does: try every published key against every v1a entry."""
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for jwk in jwks["keys"]:
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
        public = Ed25519PublicKey.from_public_bytes(_b64url_decode(jwk["x"]))
        for signature in _entries(headers["webhook-signature"]).get("v1a", []):
            try:
                public.verify(base64.b64decode(signature), content)
                return True
            except InvalidSignature:
                continue
    return False


def test_receipt_verifies_with_the_published_key():
    signer = ReceiptSigner([generate_signing_key()])
    headers = signer.headers(BODY)

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"].startswith("rcpt_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert list(_entries(headers["webhook-signature"])) == ["v1a"]
    assert _partner_verifies(signer.jwks(), headers, BODY)


def test_tampered_body_id_or_timestamp_fails():
    signer = ReceiptSigner([generate_signing_key()])
    headers = signer.headers(BODY, receipt_id="rcpt_fixed", timestamp=1795515300)
    jwks = signer.jwks()

    assert _partner_verifies(jwks, headers, BODY)
    assert not _partner_verifies(jwks, headers, BODY.replace(b"accepted", b"ignored"))
    assert not _partner_verifies(jwks, {**headers, "webhook-id": "rcpt_other"}, BODY)
    assert not _partner_verifies(jwks, {**headers, "webhook-timestamp": "1795515301"}, BODY)


def test_given_id_and_timestamp_are_used():
    signer = ReceiptSigner([generate_signing_key()])
    headers = signer.headers(BODY, receipt_id="rcpt_01ABC", timestamp=1795515300)
    assert headers["webhook-id"] == "rcpt_01ABC"
    assert headers["webhook-timestamp"] == "1795515300"


def test_receipt_id_with_a_full_stop_is_refused():
    signer = ReceiptSigner([generate_signing_key()])
    with pytest.raises(ValueError):
        signer.headers(BODY, receipt_id="rcpt_a.b")


def test_v1_entries_are_plain_hmac_sha256_one_per_secret():
    signer = ReceiptSigner([generate_signing_key()])
    secrets_ = [b"first-secret-bytes-0123456789", b"second-secret-bytes-987654321"]
    headers = signer.headers(BODY, hmac_secrets=secrets_)

    entries = _entries(headers["webhook-signature"])
    assert headers["webhook-signature"].startswith("v1a,")
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + BODY
    expected = [
        base64.b64encode(hmac.new(s, content, hashlib.sha256).digest()).decode() for s in secrets_
    ]
    assert entries["v1"] == expected
    assert _partner_verifies(signer.jwks(), headers, BODY)


def test_v1_matches_the_documented_standard_webhooks_vector():
    # inbound-formats.md, Appendix B (produced with standardwebhooks 1.1.0's Webhook.sign).
    secret = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signer = ReceiptSigner([generate_signing_key()])
    headers = signer.headers(
        b'{"test": 2432232314}',
        receipt_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1674087231,
        hmac_secrets=[secret],
    )
    assert _entries(headers["webhook-signature"])["v1"] == [
        "AQG81rX2n4rTN1fkXoqILSHO9gAOcwya9dP41rhrQDI="
    ]


def test_v1_verifies_with_the_standardwebhooks_library():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    secret = b"a-partner-secret-of-24-bytes-or-more"
    signer = ReceiptSigner([generate_signing_key()])
    headers = signer.headers(BODY, hmac_secrets=[secret])

    assert standardwebhooks.Webhook(secret).verify(BODY, headers) is not None


def test_rotation_publishes_both_keys_and_signs_with_the_new_one():
    old, new = generate_signing_key(), generate_signing_key()
    before = ReceiptSigner([old])
    during = ReceiptSigner([new, old])

    keys = during.jwks()["keys"]
    assert len(keys) == 2
    assert keys[1] == before.jwks()["keys"][0]
    assert keys[0]["kid"] != keys[1]["kid"]

    headers = during.headers(BODY)
    assert _partner_verifies({"keys": [keys[0]]}, headers, BODY)
    assert not _partner_verifies({"keys": [keys[1]]}, headers, BODY)


def test_key_ids_are_stable_and_derived_from_the_public_key():
    key = generate_signing_key()
    first, second = ReceiptSigner([key]).jwks(), ReceiptSigner([key]).jwks()
    assert first == second
    jwk = first["keys"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(_b64url_decode(jwk["x"])).digest())
    assert jwk["kid"] == digest.decode()[:16]
    assert "=" not in jwk["x"] and len(_b64url_decode(jwk["x"])) == 32


def test_generated_key_is_a_base64_32_byte_seed():
    key = generate_signing_key()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert key != generate_signing_key()


@pytest.mark.parametrize(
    "bad, words",
    [
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(b"x" * 16).decode(), "16 bytes"),
        (base64.b64encode(b"x" * 64).decode(), "64 bytes"),
        ("", "0 bytes"),
    ],
)
def test_bad_key_raises_a_clear_value_error_without_the_key(bad, words):
    with pytest.raises(ValueError, match=words) as info:
        ReceiptSigner([generate_signing_key(), bad])
    assert "#2" in str(info.value)
    if bad:
        assert bad not in str(info.value)


def test_no_keys_is_refused():
    with pytest.raises(ValueError):
        ReceiptSigner([])


def test_receipt_ids_are_31_char_ulids():
    ids = {new_receipt_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        assert len(rid) == 31 and rid.startswith("rcpt_")
        assert set(rid[5:]) <= set(_CROCKFORD)


def test_receipt_id_carries_the_millisecond_time(monkeypatch):
    ms = 1_795_515_300_123
    pin_clock(monkeypatch, ms / 1000 + 0.0005)  # mid-millisecond
    encoded = new_receipt_id()[5:15]
    value = 0
    for char in encoded:
        value = value * 32 + _CROCKFORD.index(char)
    assert value == ms


def test_receipt_ids_sort_by_time(monkeypatch):
    clock = iter([1_795_515_300_000, 1_795_515_300_001, 1_795_515_301_000, 1_900_000_000_000])
    pin_clock(monkeypatch, lambda: next(clock) / 1000 + 0.0005)
    made = [new_receipt_id() for _ in range(4)]
    assert sorted(made) == made


def test_receipt_ids_sort_by_real_time():
    first = new_receipt_id()
    time.sleep(0.002)
    assert new_receipt_id() > first
