"""The tamper-evident hash chain over each tenant's signals: keyed identity hashes, canonical form, verify.

Pure functions, no storage (contract, "Compliance clocks and proof"; docs/compliance.md).

- ``identity_hash(key, value)``: HMAC-SHA256 (key ``RECEIVER_IDENTITY_KEY``) of the normalized
  email or phone, lower-case hex. The chain holds only these, so erasing the address from a row
  leaves the chain intact, and without the key nobody can test guessed addresses against it.
- ``canonical(fields)``: the signal's ``FIELDS`` as JSON with sorted keys, no spaces, UTF-8 (not
  ``\\u`` escapes); sets (``add``, ``remove``) as sorted lists; instants as UTC
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six digits). Every value is a string, a list of strings
  or null, so these bytes are also the RFC 8785 (JCS) form, reproducible in any language.
- ``link(previous, canonical)``: ``SHA-256(previous ‖ canonical)`` where ``previous`` is the 32
  raw bytes of the previous row's ``chain_sha256`` (not its hex text) and, for a tenant's first
  row, ``GENESIS`` (32 zero bytes). In Python:
  ``hashlib.sha256(bytes.fromhex(previous) + canonical_bytes).hexdigest()``.
- ``verify(rows)``: streams rows in each tenant's chain order (tenants may interleave), keeps only
  each tenant's last hash, and returns the first row that does not match. A row deleted or
  reordered shows as a mismatch at the next row; rows cut off the *end* do not, which is what the
  signed head of ``GET /v1/chain`` kept elsewhere is for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..identities import fold_email

GENESIS = "0" * 64
FIELDS = ("tenant", "source", "event_id", "kind", "add", "remove", "occurred_at", "received_at",
          "evidence_sha256", "receipt_id", "operator", "email_hash", "phone_hash")
_SETS = ("add", "remove")
_INSTANTS = ("occurred_at", "received_at")
_REQUIRED = ("tenant", "source", "event_id", "kind", "received_at", "evidence_sha256", "receipt_id")
_MIN_KEY_BYTES = 16  # a short key makes the hashes a dictionary lookup of likely addresses


def identity_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 hex of an email (case-folded like ``identities.fold_email``) or an E.164 phone."""
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"identity key: at least {_MIN_KEY_BYTES} bytes are needed")
    normalized = (value or "").strip()
    if not normalized:
        raise ValueError("identity_hash: an empty identity has no hash")
    if "@" in normalized:
        normalized = fold_email(normalized)
    return hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()


def erased_identity(key: bytes, value: str) -> str:
    """What an erased email or phone becomes where it was an identity (consent, deliveries): its keyed hash."""
    return f"erased:{identity_hash(key, value)}"


def canonical(fields: Mapping) -> bytes:
    """The canonical bytes of one signal; ``fields`` has exactly ``FIELDS`` (ValueError names a wrong one)."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:  # a raw "email" here would put the address itself into the chain
        raise ValueError(f"canonical: unknown field {unknown[0]!r} (identities go in as email_hash / phone_hash)")
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise ValueError(f"canonical: missing field {missing[0]!r}")
    document = {}
    for name in FIELDS:
        value = fields[name]
        if name in _SETS:
            value = sorted(value or ())
        elif name in _INSTANTS:
            value = _instant(name, value)
        elif value is not None and not isinstance(value, str):
            raise ValueError(f"canonical: {name} must be text or null")
        if value is None and name in _REQUIRED:
            raise ValueError(f"canonical: {name} is required")
        document[name] = value
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _instant(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"canonical: {name} must be an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def link(previous: str | None, canonical_bytes: bytes) -> str:
    """This row's ``chain_sha256``: SHA-256 of the previous row's hash (raw bytes) and its canonical form."""
    return hashlib.sha256(bytes.fromhex(previous or GENESIS) + canonical_bytes).hexdigest()


@dataclass(frozen=True)
class Mismatch:
    """The first row that does not match, and why (``reason`` is safe to print: no addresses)."""

    row_id: object
    tenant: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row_id} (tenant {self.tenant}): {self.reason}"


def verify(rows: Iterable[Mapping], key: bytes | None = None) -> Mismatch | None:
    """Recompute every tenant's chain over ``rows``; the first mismatch, or None when all match.

    Each row is a mapping (a database row's ``._mapping``) with ``id``, ``chain_sha256`` and
    ``FIELDS``; other keys are ignored. Given ``key``, a row that still holds its ``email`` or
    ``phone`` is also checked against its hash: the chain covers only the hash, so without this an
    address edited in place would go unnoticed. Memory: one hash per tenant, whatever the row count.
    """
    heads: dict[str, str] = {}
    for row in rows:
        tenant = row["tenant"]
        try:
            expected = link(heads.get(tenant), canonical({name: row[name] for name in FIELDS}))
        except ValueError as error:
            return Mismatch(row["id"], tenant, f"cannot be read: {error}")
        if not _same(expected, row["chain_sha256"]):
            return Mismatch(row["id"], tenant, "chain_sha256 does not match the row and the one before it")
        if key is not None:
            for name in ("email", "phone"):
                if row.get(name) and not _same(identity_hash(key, row[name]), row[f"{name}_hash"]):
                    return Mismatch(row["id"], tenant, f"{name} does not match {name}_hash")
        heads[tenant] = expected
    return None


def _same(expected: str, stored: str | None) -> bool:
    # As bytes: a tampered value may hold characters compare_digest refuses in a str.
    return hmac.compare_digest(expected.encode(), (stored or "").encode("utf-8", "replace"))
