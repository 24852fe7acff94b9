"""Receipts: Standard Webhooks signatures over our exact answers, and the public key set."""

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import clock

RECEIPT_PREFIX = "rcpt_"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_receipt_id() -> str:
    """``rcpt_`` + a ULID: 48-bit millisecond time then 80 random bits, in Crockford base32.

    The time comes first so ids sort by creation time (to the millisecond) as plain strings.
    """
    value = (clock.now_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return RECEIPT_PREFIX + "".join(reversed(chars))


def generate_signing_key() -> str:
    """A new Ed25519 seed for ``RECEIPT_SIGNING_KEY``: 32 random bytes, standard base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_seed(key: str, position: int = 1) -> bytes:
    """The 32-byte seed of a key given as base64 (the contract's form) or as 64 hex digits.

    Hex is accepted too because a platform's "generate a secret" button (app.json) makes
    64 hex digits; 64 hex digits read as base64 would be 48 bytes, so the forms never clash.
    The message names the key's position, never its value: it is a secret.
    """
    key = key.strip()
    if len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key):
        return bytes.fromhex(key)
    try:
        seed = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"receipt signing key #{position} is not valid base64") from None
    if len(seed) != 32:
        raise ValueError(
            f"receipt signing key #{position} decodes to {len(seed)} bytes; "
            "expected a 32-byte Ed25519 seed"
        )
    return seed


def _load_key(key: str, position: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(decode_seed(key, position))


class ReceiptSigner:
    """Signs answers with the first key; publishes every key so rotation never breaks a partner."""

    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise ValueError("at least one receipt signing key is required")
        self._private = [_load_key(key, n) for n, key in enumerate(keys, start=1)]
        self._public = [
            k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in self._private
        ]

    def headers(
        self,
        body: bytes,
        *,
        receipt_id: str | None = None,
        timestamp: int | None = None,
        hmac_secrets: Sequence[bytes] = (),
    ) -> dict[str, str]:
        """The ``webhook-*`` headers for ``body``, the exact bytes sent.

        ``hmac_secrets`` are a standard-webhooks source's raw secrets; each adds a ``v1``
        entry so the partner can check the answer with its usual library.
        """
        receipt_id = receipt_id or new_receipt_id()
        if "." in receipt_id:
            # The full stop separates the signed fields; one inside the id would be ambiguous.
            raise ValueError("receipt id must not contain '.'")
        stamp = str(int(clock.now() if timestamp is None else timestamp))
        content = f"{receipt_id}.{stamp}.".encode() + body
        entries = ["v1a," + base64.b64encode(self._private[0].sign(content)).decode()]
        for secret in hmac_secrets:
            digest = hmac.new(secret, content, hashlib.sha256).digest()
            entries.append("v1," + base64.b64encode(digest).decode())
        return {
            "webhook-id": receipt_id,
            "webhook-timestamp": stamp,
            "webhook-signature": " ".join(entries),
        }

    def jwks(self) -> dict:
        """The public keys as a JWK Set (RFC 8037 OKP), the signing key first."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(public),
                    "kid": key_id(public),
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for public in self._public
            ]
        }


def key_id(public_key: bytes) -> str:
    """A stable id for a raw Ed25519 public key: the first 16 characters of its base64url SHA-256."""
    return _b64url(hashlib.sha256(public_key).digest())[:16]
